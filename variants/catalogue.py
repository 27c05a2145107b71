"""The named variants of the references, each a preset of the parts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from variants.control import Control
from variants.errors import VariantError
from variants.spec import Variant

CZARNECKI = "Czarnecki et al. 2019"
RUSU = "Rusu et al. 2016"
STUDENT = Control(kind="student")
TEACHER = Control(kind="teacher")
RUSU_CONTROL = Control(kind="teacher", teacher_tau=0.0, epsilon=0.05)


@dataclass(frozen=True)
class Entry:
    """A named variant with what the references say of it.

    Whether it may learn from a replay memory is the variant's own derived
    :attr:`Variant.replay`, so that the catalogue and the loops cannot disagree.
    """

    variant: Variant
    reference: str
    convergence: str
    preferred_when: str

    @property
    def name(self) -> str:
        """The variant's name: the catalogue's key."""
        return self.variant.name

    def to_dict(self) -> dict[str, Any]:
        """The catalogue row as plain data (what `distill variants --json` prints)."""
        v = self.variant
        return {
            "name": v.name,
            "control": v.control.describe(),
            "loss": v.loss,
            "reward": v.reward,
            "env_reward": v.env_reward,
            "v_cond": v.v_cond,
            "tau": v.tau,
            "gradient_field": v.gradient_field,
            "objective": v.objective,
            "convergence": self.convergence,
            "preferred_when": self.preferred_when,
            "replay": v.replay,
            "reference": self.reference,
            "parts": v.to_dict(),
        }


def _entry(name: str, control: Control, loss: str, reward: str, reference: str, convergence: str,
           preferred_when: str, **kwargs: Any) -> Entry:
    """A catalogue entry; ``kwargs`` are the variant's other parts."""
    variant = Variant(control=control, loss=loss, reward=reward, name=name, **kwargs)
    return Entry(variant, reference, convergence, preferred_when)


CATALOGUE: dict[str, Entry] = {
    e.name: e
    for e in [
        _entry("teacher_distill", TEACHER, "cross_entropy", "none", f"{CZARNECKI}, Table 1",
               "converges on the teacher's state distribution; states only the student visits get no signal",
               "the student can represent the teacher and teacher data is cheap"),
        _entry("on_policy_distill", STUDENT, "cross_entropy", "none", f"{CZARNECKI}, Table 1",
               "not a gradient field (Theorem 1); converges for tabular students (Proposition 1)",
               "the default: learns on the states the student itself reaches"),
        _entry("entropy_regularised", STUDENT, "none", "teacher_logp", f"{CZARNECKI}, Table 1",
               "gradient field; heads for the teacher's argmax, not pi_T; high variance as actions grow",
               "rarely: expected entropy regularised has the same objective with less variance"),
        _entry("n_distill", STUDENT, "cross_entropy", "neg_next_loss", f"{CZARNECKI}, Table 1 (new there)",
               "gradient field (Theorem 2); converges with shared parameters too",
               "students that share parameters across states, or combined with +R"),
        _entry("expected_entropy_regularised", STUDENT, "reverse_cross_entropy", "teacher_logp_next",
               f"{CZARNECKI}, Table 1 (new there)",
               "gradient field (Theorem 2); stable as the action count grows",
               "large action spaces, where entropy regularised degrades"),
        _entry("teacher_v_reward", STUDENT, "none", "teacher_v", f"{CZARNECKI}, Table 1",
               "gradient field of the environment return (V_T only shapes it); can beat a poor teacher",
               "imperfect or adversarial teachers whose values are still informative"),
        _entry("rusu_nll", RUSU_CONTROL, "nll", "none", RUSU,
               "gradient field on the teacher's (replayed) data", "labels only: the teacher's greedy action",
               tau=0.0),
        _entry("rusu_mse", RUSU_CONTROL, "mse", "none", RUSU,
               "gradient field on the teacher's (replayed) data", "matching Q-values themselves",
               tau=0.0),
        _entry("rusu_kl", RUSU_CONTROL, "forward_kl", "none", RUSU,
               "gradient field on the teacher's (replayed) data",
               "Atari-scale distillation of DQN teachers (best of Rusu et al.'s three losses)",
               tau=0.01),
        _entry("on_policy_distill_r", STUDENT, "cross_entropy", "none", CZARNECKI,
               "not a gradient field; can oscillate for ever with shared parameters (Fig. 2)",
               "imperfect teachers with a tabular student", env_reward=True),
        _entry("n_distill_r", STUDENT, "cross_entropy", "neg_next_loss", CZARNECKI,
               "gradient field; converges where on-policy distill + R oscillates (Fig. 2)",
               "imperfect teachers with shared parameters", env_reward=True),
        _entry("expected_entropy_regularised_r", STUDENT, "reverse_cross_entropy", "teacher_logp_next",
               CZARNECKI, "gradient field",
               "imperfect teachers in large action spaces", env_reward=True),
        _entry("on_policy_distill_r_vcond", STUDENT, "cross_entropy", "none", f"{CZARNECKI}, Fig. 5",
               "not a gradient field; ignores the teacher where the student is already better",
               "noisy teachers: follow them only where they know more", env_reward=True, v_cond=True),
        _entry("kl_regularised", STUDENT, "none", "log_ratio",
               f"Teh et al. 2017 (Distral); {CZARNECKI}",
               "gradient field of E[sum_t KL(pi_theta || pi_T)]; keeps the student stochastic",
               "when the student should stay close to the teacher rather than copy its argmax"),
        _entry("no_teacher", STUDENT, "none", "none", f"{CZARNECKI}, Figs. 4 and 5 (baseline)",
               "REINFORCE on the environment return; the teacher is ignored",
               "as the baseline: what the environment reward alone teaches in the same budget",
               env_reward=True),
        _entry("dagger", Control(kind="mixture", beta=1.0, schedule="exponential", decay=0.995), "nll",
               "none", "Ross et al. 2011, DAgger",
               "no-regret over the aggregated data; not a gradient field of one objective",
               "only the teacher's actions are available, and the student's own states matter",
               tau=0.0),
    ]
}


def get(name: str) -> Entry:
    """A catalogue entry by name, with the allowed names in the error."""
    try:
        return CATALOGUE[name]
    except KeyError:
        raise VariantError(f"unknown variant {name!r}; allowed: {', '.join(CATALOGUE)}") from None


def variant(preset: str, /, **overrides: Any) -> Variant:
    """A named variant, optionally with some parts changed.

    A changed variant is named after its preset and the changes
    (``on_policy_distill[tau=0.1]``) unless ``name`` is given, so tables never
    show a modified recipe under its preset's name.
    """
    base = get(preset).variant
    if not overrides:
        return base
    if "name" not in overrides:
        changes = ",".join(f"{k}={v}" for k, v in sorted(overrides.items()))
        overrides = {**overrides, "name": f"{preset}[{changes}]"}
    return base.with_(**overrides)

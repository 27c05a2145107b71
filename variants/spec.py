"""A variant: (control, per-state loss, pseudo-reward) plus modifiers.

Any combination is valid unless it is meaningless; the checks below say why.
Whether the expected update is a gradient field is derived from the parts, so
a combination nobody named still gets an honest answer.
"""

from __future__ import annotations

import json
import math
import numbers
import zlib
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from variants.control import Control
from variants.errors import VariantError
from variants.losses import LOSSES
from variants.rewards import REWARDS, RewardSpec

CRITICS: dict[str, str] = {
    "none": "Monte-Carlo returns (nothing bootstrapped)",
    "learned": "a value table trained by TD on the same n-step returns, step size critic_lr (tabular only)",
    "exact": "the exact value of the pseudo-return under the control policy: a perfectly fitted critic "
             "(tabular only)",
}

CRITIC_INITS: dict[str, str] = {
    "zero": "the learned critic starts at zero (actor-critic from scratch)",
    "teacher_v": "the learned critic starts at the teacher's values V_T (its tau and gamma) and moves by TD",
}

# the variant's real-valued fields and their ranges (checked in full below)
NUMBER_RANGES = {"tau": "tau >= 0", "jsd_beta": "0 <= jsd_beta <= 1", "gamma": "0 < gamma <= 1",
                 "critic_lr": "0 < critic_lr <= 1"}


@dataclass(frozen=True)
class Variant:
    """One distillation recipe.

    tau: temperature of the teacher's softmax (0 = argmax).
    env_reward: the +R modifier (add the environment reward to r_hat).
    v_cond: the +V cond modifier (apply the loss only where V_T(s) > V_theta(s)).
    gamma, n_step: discount and optional truncation of the returns-to-go.
    critic: what bootstraps the n-step return past its n steps (TD(n) students):
        nothing (Monte-Carlo), a learned value table, or the exact value (see CRITICS).
    critic_lr: the learned critic's TD step size: each iteration,
        V(s) += critic_lr * the mean of R_t - V(s) over the visits of s.
    critic_init: where a learned critic starts (see CRITIC_INITS).
    """

    control: Control = field(default_factory=Control)
    loss: str = "cross_entropy"
    reward: str = "none"
    env_reward: bool = False
    v_cond: bool = False
    tau: float = 1.0
    jsd_beta: float = 0.5
    gamma: float = 1.0
    n_step: int | None = None
    critic: str = "none"
    critic_lr: float = 0.3
    critic_init: str = "zero"
    name: str = ""

    def __post_init__(self) -> None:
        """Validate and normalise, so that a bad or meaningless variant fails where it is made."""
        self._check_values()
        for name in NUMBER_RANGES:  # 1 and 1.0 are one variant
            object.__setattr__(self, name, float(getattr(self, name)))
        self._check_meaning()

    def _check_values(self) -> None:
        if not isinstance(self.control, Control):
            raise VariantError(
                f"control: expected a Control, got {type(self.control).__name__} {self.control!r}; "
                "allowed: variants.Control(...) (Variant.from_dict takes plain data)"
            )
        for name in ("env_reward", "v_cond"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise VariantError(f"{name}: {value!r} is not a boolean; allowed: true or false")
        for name, allowed in NUMBER_RANGES.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise VariantError(f"{name}: {value!r} is not a number; allowed: a number with {allowed}")
        if self.n_step is not None and (isinstance(self.n_step, bool) or not isinstance(self.n_step, int)):
            raise VariantError(f"n_step: {self.n_step!r} is not a whole number; allowed: an integer >= 1 or none")
        if not isinstance(self.name, str):
            raise VariantError(f"name: {self.name!r} is not a string")
        if self.loss not in LOSSES:
            raise VariantError(f"loss: unknown loss {self.loss!r}; allowed: {', '.join(LOSSES)}")
        if self.reward not in REWARDS:
            raise VariantError(f"reward: unknown pseudo-reward {self.reward!r}; allowed: {', '.join(REWARDS)}")
        if not isinstance(self.critic, str) or self.critic not in CRITICS:
            raise VariantError(f"critic: unknown critic {self.critic!r}; allowed: {', '.join(CRITICS)}")
        if not isinstance(self.critic_init, str) or self.critic_init not in CRITIC_INITS:
            raise VariantError(f"critic_init: unknown start {self.critic_init!r}; allowed: {', '.join(CRITIC_INITS)}")
        if not (math.isfinite(self.critic_lr) and 0.0 < self.critic_lr <= 1.0):
            raise VariantError(f"critic_lr: {self.critic_lr} is out of range; allowed: 0 < critic_lr <= 1")
        if not (math.isfinite(self.tau) and self.tau >= 0):
            raise VariantError(f"tau: {self.tau} is out of range; allowed: a finite tau >= 0 (0 = argmax)")
        if not (0.0 <= self.jsd_beta <= 1.0):
            raise VariantError(f"jsd_beta: {self.jsd_beta} is out of range; allowed: 0 <= jsd_beta <= 1")
        if not (0.0 < self.gamma <= 1.0):
            raise VariantError(f"gamma: {self.gamma} is out of range; allowed: 0 < gamma <= 1")
        if self.n_step is not None and self.n_step < 1:
            raise VariantError(f"n_step: {self.n_step} is out of range; allowed: n_step >= 1 or none")

    def _check_meaning(self) -> None:
        reward = self.reward_spec
        has_loss = LOSSES[self.loss].fn is not None
        if not has_loss and reward.is_zero and not self.env_reward:
            raise VariantError(
                f"meaningless variant: loss {self.loss!r}, reward {self.reward!r} and no +R leave nothing to "
                "learn from"
            )
        if self.v_cond and not has_loss:
            raise VariantError(
                f"meaningless variant: +V cond masks the per-state loss, but the loss is {self.loss!r}"
            )
        if reward.includes_env_reward and self.env_reward:
            raise VariantError(
                f"meaningless variant: {reward.words} already contains the environment reward; drop +R"
            )
        if reward.needs_loss and not has_loss:
            raise VariantError(
                f"meaningless variant: reward {self.reward!r} is {reward.words}, "
                f"which is zero with loss {self.loss!r}"
            )
        if self.critic != "none" and self.n_step is None:
            raise VariantError(
                f"meaningless variant: critic {self.critic!r} bootstraps the return after n_step steps, but "
                "n_step is none (Monte-Carlo); allowed: n_step >= 1 with a critic, or critic 'none'"
            )
        if self.critic_init != "zero" and self.critic != "learned":
            raise VariantError(
                f"meaningless variant: critic_init {self.critic_init!r} says where a learned critic starts, but "
                f"the critic is {self.critic!r}; allowed: critic 'learned' with it, or critic_init 'zero'"
            )
        if self.tau == 0:
            if LOSSES[self.loss].needs_teacher_logp or (self.loss == "jsd" and self.jsd_beta == 1.0):
                raise VariantError(
                    f"meaningless variant: loss {self.loss!r} needs log pi_T, which is -inf off the "
                    "argmax at tau 0; allowed: tau > 0"
                )
            if reward.needs_teacher_logp:
                raise VariantError(
                    f"meaningless variant: reward {self.reward!r} needs log pi_T, which is -inf off the "
                    "argmax at tau 0; allowed: tau > 0"
                )

    # ---- derived properties -------------------------------------------------

    @property
    def reward_spec(self) -> RewardSpec:
        """The pseudo-reward's registry entry: every reward-dependent answer below reads its properties."""
        return REWARDS[self.reward]

    @property
    def gradient_field(self) -> bool:
        """Whether the expected update is the gradient of one objective.

        Derived from the reward's registry properties, never its name. Fixed
        data (teacher, uniform control): yes, unless the return itself moves
        with the student (``student_dependent``: N-distill's or KL
        regularised's reward held under stopgrad). Student control: yes when
        the reward ``completes`` the loss, i.e. accounts for how the loss
        changes the state distribution (N-distill, expected entropy
        regularised) or there is no loss at all, and only with
        whole undiscounted returns (gamma = 1, no n-step truncation): a
        discounted or truncated return drops part of the score function's
        credit. An exact critic restores the whole return in expectation, so
        its n-step truncation does not count; a learned critic's values are
        not those of the student's policy, so under student control its
        updates are not (under fixed control the critic, like the data, does
        not move with the student). Anything else, including +V cond and
        mixtures, is not.
        """
        reward = self.reward_spec
        if self.v_cond:
            return False
        if not self.control.depends_on_student:
            return not reward.student_dependent
        if self.critic == "learned":
            return False
        if not self.control.is_pure_student:
            return False
        if self.gamma != 1.0 or self.truncated:
            return False
        return reward.completes_loss(self.loss)

    @property
    def truncated(self) -> bool:
        """Whether the expected return is cut after n_step steps (an exact critic restores the rest)."""
        return self.n_step is not None and self.critic != "exact"

    @property
    def objective(self) -> str:
        """The objective whose gradient the update is, or why there is none."""
        if not self.gradient_field:
            return "none: the update is not a gradient field"
        if not self.control.depends_on_student:
            return "E_q[sum_t l(s_t) - log pi_theta(a_t|s_t) R_t] with q and R fixed"
        reward = self.reward_spec
        terms = []
        if LOSSES[self.loss].fn is not None:
            terms.append(f"{self.loss}(s_t)")
        if reward.objective_term:
            terms.append(reward.objective_term)
        if self.env_reward or reward.includes_env_reward:
            terms.append("- r_t")
        return "E_{pi_theta}[sum_t " + " ".join(terms) + "]"

    @property
    def replay(self) -> bool:
        """Whether a replay memory of the collected data is sound.

        Teacher-driven (or uniform, or any control that does not depend on the
        student) data with no pseudo-reward and no +R is a supervised problem:
        old data are as good as new, so a replay memory of it is sound, as
        Rusu et al. did.
        """
        return not self.control.depends_on_student and self.reward_spec.is_zero and not self.env_reward

    def describe(self) -> str:
        """control / loss / reward with modifiers, for tables."""
        reward = self.reward + (" +R" if self.env_reward else "") + (" +Vcond" if self.v_cond else "")
        if self.critic != "none":
            reward += f" TD({self.n_step}) {self.critic} critic" + (
                f" (lr {self.critic_lr:g})" if self.critic == "learned" else "") + (
                " from V_T" if self.critic_init == "teacher_v" else "")
        return f"{self.control.describe()} / {self.loss} / {reward}"

    def with_(self, **changes: Any) -> Variant:
        """A copy with some fields changed (validated again)."""
        unknown = set(changes) - set(self.__dataclass_fields__)
        if unknown:
            raise VariantError(
                f"unknown variant field(s) {sorted(unknown)}; allowed: {', '.join(sorted(self.__dataclass_fields__))}"
            )
        return replace(self, **changes)

    @property
    def fingerprint(self) -> int:
        """A stable 32-bit id of the variant's parts (its name excluded): seeds random
        streams, so a cell's numbers do not depend on which other variants run beside it."""
        parts = self.to_dict()
        parts.pop("name")
        return zlib.crc32(json.dumps(parts, sort_keys=True).encode())

    def to_dict(self) -> dict[str, Any]:
        """Plain data, for JSON and configs.

        Critic settings that change nothing are left out (no critic; the step
        size of a critic that is not learned), so that a recipe's fingerprint
        and cell ids do not depend on options it does not use; so is the
        default start of a learned critic, which came later.
        """
        data = asdict(self)
        if self.critic_init == "zero":
            data.pop("critic_init")
        if self.critic != "learned":
            data.pop("critic_lr")
        if self.critic == "none":
            data.pop("critic")
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Variant:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        data = dict(data)
        control = data.pop("control", {})
        allowed = set(cls.__dataclass_fields__)
        unknown = set(data) - allowed
        if unknown:
            raise VariantError(
                f"unknown variant field(s) {sorted(unknown)}; allowed: {', '.join(sorted(allowed))}"
            )
        if isinstance(control, dict):
            control_allowed = set(Control.__dataclass_fields__)
            bad = set(control) - control_allowed
            if bad:
                raise VariantError(
                    f"unknown control field(s) {sorted(bad)}; allowed: {', '.join(sorted(control_allowed))}"
                )
            control = Control(**control)
        return cls(control=control, **data)

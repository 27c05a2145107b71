"""Pseudo-rewards ``r_hat``: one registry entry each, with how it is split in time.

A pseudo-reward of step ``t`` may depend on the current state and action
(``now``, ``state``), on the environment reward, and on what happens at the
next state (``arrive``: a function of ``s_{t+1}``; ``arrive_action``: a
function of ``(s_{t+1}, a_{t+1})``). Splitting it this way serves both
engines: a sampled rollout gathers the parts at the visited states and taken
actions, and the exact tabular engine takes expectations of the same parts
over transitions and the control policy. Everything past a terminal state
contributes zero.

Each :class:`RewardSpec` also carries the properties that the rest of the
package derives its answers from (whether an update is a gradient field, its
objective, which combinations are meaningless, what an engine must supply),
so adding a reward is one entry in :data:`REWARDS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from torch import Tensor


@dataclass
class RewardParts:
    """Pseudo-reward pieces per state; ``None`` means the piece is absent.

    now:           [..., A] reward for taking ``a`` in ``s``
    state:         [...]    reward for acting in ``s`` (any action)
    arrive:        [...]    credited to the previous step when ``s`` is reached
    arrive_action: [..., A] credited to the previous step for the action taken in ``s``
    env:           weight on the environment reward of the step (0 or 1)
    """

    now: Tensor | None = None
    state: Tensor | None = None
    arrive: Tensor | None = None
    arrive_action: Tensor | None = None
    env: float = 0.0


class PartsBuilder(Protocol):
    """Builds a reward's parts from the inputs of :func:`reward_parts` (the env weight is set there)."""

    def __call__(
        self,
        *,
        gamma: float,
        teacher_logp: Tensor | None,
        student_logp: Tensor,
        loss: Tensor,
        v_teacher: Tensor | None,
    ) -> RewardParts:
        """The reward's parts on a batch of states, ``env`` left at 0."""
        ...


@dataclass(frozen=True)
class RewardSpec:
    """A pseudo-reward and the properties the variant's derived answers rest on.

    build: its parts (``None``: no pseudo-reward at all).
    completes: under pure student control with whole undiscounted returns, the
        per-state losses for which the return accounts for how the loss moves
        the state distribution, so that the update is the gradient of
        ``E_pi[sum_t l(s_t) - r_t]`` (``"any"``: every loss). A reward that
        credits nothing of the next state completes only loss ``none``.
    words: what the reward is, in words, for error messages.
    objective_term: the term it adds to that objective's summand (``""``: none;
        a reward that only completes the loss adds nothing of its own).
    needs_teacher_logp: reads log pi_T, which is -inf off the argmax at tau 0.
    needs_v_teacher: reads V_T(s).
    needs_loss: is built from the per-state loss, so it is zero with loss ``none``.
    student_dependent: its value moves with the student (held under stopgrad),
        so even fixed data give no gradient field.
    includes_env_reward: already contains r_t, so +R is meaningless.
    """

    name: str
    summary: str
    build: PartsBuilder | None
    completes: frozenset[str] | Literal["any"]
    words: str
    objective_term: str = ""
    needs_teacher_logp: bool = False
    needs_v_teacher: bool = False
    needs_loss: bool = False
    student_dependent: bool = False
    includes_env_reward: bool = False

    @property
    def is_zero(self) -> bool:
        """Whether ``r_hat`` is zero without +R: then only the loss (or +R) teaches."""
        return self.build is None and not self.includes_env_reward

    def completes_loss(self, loss: str) -> bool:
        """Whether, with this loss, student-driven whole returns give a gradient field (see ``completes``)."""
        return self.completes == "any" or loss in self.completes


def _required(value: Tensor | None, what: str, reward: str) -> Tensor:
    """``value``, or a ValueError naming what the reward needs."""
    if value is None:
        raise ValueError(f"reward {reward!r} needs {what}")
    return value


def _teacher_logp(
    *, gamma: float, teacher_logp: Tensor | None, student_logp: Tensor, loss: Tensor, v_teacher: Tensor | None
) -> RewardParts:
    """Entropy regularised: the teacher's log-probability of the action taken."""
    return RewardParts(now=_required(teacher_logp, "log pi_T (teacher_logp)", "teacher_logp"))


def _teacher_logp_next(
    *, gamma: float, teacher_logp: Tensor | None, student_logp: Tensor, loss: Tensor, v_teacher: Tensor | None
) -> RewardParts:
    """Expected entropy regularised: the next action's log pi_T, credited to the step before."""
    return RewardParts(arrive_action=_required(teacher_logp, "log pi_T (teacher_logp)", "teacher_logp_next"))


def _neg_next_loss(
    *, gamma: float, teacher_logp: Tensor | None, student_logp: Tensor, loss: Tensor, v_teacher: Tensor | None
) -> RewardParts:
    """N-distill: minus the next state's loss, credited to the step before."""
    return RewardParts(arrive=-loss)


def _log_ratio(
    *, gamma: float, teacher_logp: Tensor | None, student_logp: Tensor, loss: Tensor, v_teacher: Tensor | None
) -> RewardParts:
    """KL regularised: log pi_T - log pi_theta of the action taken."""
    return RewardParts(now=_required(teacher_logp, "log pi_T (teacher_logp)", "log_ratio") - student_logp)


def _teacher_v(
    *, gamma: float, teacher_logp: Tensor | None, student_logp: Tensor, loss: Tensor, v_teacher: Tensor | None
) -> RewardParts:
    """Teacher V reward: potential-based shaping of r_t by V_T (r_t itself comes from ``includes_env_reward``)."""
    if v_teacher is None:
        raise ValueError("the teacher V reward needs V_T(s) (v_teacher)")
    return RewardParts(state=-v_teacher, arrive=gamma * v_teacher)


NO_LOSS: frozenset[str] = frozenset({"none"})

REWARDS: dict[str, RewardSpec] = {
    spec.name: spec
    for spec in [
        RewardSpec("none", "no pseudo-reward", None, completes=NO_LOSS, words="no pseudo-reward"),
        RewardSpec("teacher_logp", "log pi_T(a_t | s_t) (entropy regularised)", _teacher_logp,
                   completes=NO_LOSS, words="log pi_T of the action taken",
                   objective_term="- log pi_T(a_t|s_t)", needs_teacher_logp=True),
        # in expectation over a_{t+1} ~ pi_theta it is -H(pi_theta, pi_T)(s_{t+1}): it completes that loss only
        RewardSpec("teacher_logp_next", "log pi_T(a_{t+1} | s_{t+1}) (expected entropy regularised)",
                   _teacher_logp_next, completes=frozenset({"reverse_cross_entropy"}),
                   words="log pi_T of the next action taken", needs_teacher_logp=True),
        RewardSpec("neg_next_loss", "-l(pi_T(s_{t+1}), pi_theta(s_{t+1})) (N-distill)", _neg_next_loss,
                   completes="any", words="minus the next state's loss", needs_loss=True,
                   student_dependent=True),
        RewardSpec("teacher_v", "r_t + gamma V_T(s_{t+1}) - V_T(s_t) (teacher V reward)", _teacher_v,
                   completes=NO_LOSS, words="the teacher V reward", needs_v_teacher=True,
                   includes_env_reward=True),
        # its direct dependence on theta has zero expected gradient (E_pi[grad log pi] = 0)
        RewardSpec("log_ratio", "log pi_T(a_t | s_t) - log pi_theta(a_t | s_t) (KL regularised)", _log_ratio,
                   completes=NO_LOSS, words="log pi_T - log pi_theta of the action taken",
                   objective_term="+ log pi_theta(a_t|s_t) - log pi_T(a_t|s_t)", needs_teacher_logp=True,
                   student_dependent=True),
    ]
}

def reward_spec(kind: str) -> RewardSpec:
    """The registry entry of a pseudo-reward; an unknown name is a ValueError naming what is allowed."""
    spec = REWARDS.get(kind)
    if spec is None:
        raise ValueError(f"unknown pseudo-reward {kind!r}; allowed: {', '.join(REWARDS)}")
    return spec


def reward_parts(
    kind: str,
    *,
    env_reward: bool,
    gamma: float,
    teacher_logp: Tensor | None,
    student_logp: Tensor,
    loss: Tensor,
    v_teacher: Tensor | None,
) -> RewardParts:
    """The parts of a pseudo-reward evaluated on a batch of states.

    ``student_logp`` and ``loss`` must already be detached: the surrogate holds
    the return under stopgrad.
    """
    spec = reward_spec(kind)
    parts = RewardParts() if spec.build is None else spec.build(
        gamma=gamma, teacher_logp=teacher_logp, student_logp=student_logp, loss=loss, v_teacher=v_teacher
    )
    parts.env = 1.0 if env_reward or spec.includes_env_reward else 0.0
    return parts

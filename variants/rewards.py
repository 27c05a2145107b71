"""Pseudo-rewards ``r_hat`` and how each is split in time.

A pseudo-reward of step ``t`` may depend on the current state and action
(``now``, ``state``), on the environment reward, and on what happens at the
next state (``arrive``: a function of ``s_{t+1}``; ``arrive_action``: a
function of ``(s_{t+1}, a_{t+1})``). Splitting it this way serves both
engines: a sampled rollout gathers the parts at the visited states and taken
actions, and the exact tabular engine takes expectations of the same parts
over transitions and the control policy. Everything past a terminal state
contributes zero.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

REWARDS: dict[str, str] = {
    "none": "no pseudo-reward",
    "teacher_logp": "log pi_T(a_t | s_t) (entropy regularised)",
    "teacher_logp_next": "log pi_T(a_{t+1} | s_{t+1}) (expected entropy regularised)",
    "neg_next_loss": "-l(pi_T(s_{t+1}), pi_theta(s_{t+1})) (N-distill)",
    "teacher_v": "r_t + gamma V_T(s_{t+1}) - V_T(s_t) (teacher V reward)",
    "log_ratio": "log pi_T(a_t | s_t) - log pi_theta(a_t | s_t) (KL regularised)",
}

# Rewards whose value moves with the student's parameters (held under stopgrad).
STUDENT_DEPENDENT_REWARDS = frozenset({"neg_next_loss", "log_ratio"})
# Rewards that read log pi_T, which is -inf off the argmax when tau = 0.
TEACHER_LOGP_REWARDS = frozenset({"teacher_logp", "teacher_logp_next", "log_ratio"})


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
    parts = RewardParts(env=1.0 if env_reward else 0.0)
    if kind == "none":
        pass
    elif kind == "teacher_logp":
        parts.now = teacher_logp
    elif kind == "teacher_logp_next":
        parts.arrive_action = teacher_logp
    elif kind == "neg_next_loss":
        parts.arrive = -loss
    elif kind == "log_ratio":
        parts.now = teacher_logp - student_logp
    elif kind == "teacher_v":
        if v_teacher is None:
            raise ValueError("the teacher V reward needs V_T(s) (v_teacher)")
        parts.state = -v_teacher
        parts.arrive = gamma * v_teacher
        parts.env = 1.0
    else:
        raise ValueError(f"unknown pseudo-reward {kind!r}; allowed: {', '.join(REWARDS)}")
    return parts

"""The one surrogate loss every variant is an instance of.

For a trajectory drawn from the control policy (detached):

    L(theta) = sum_t [ -log pi_theta(a_t|s_t) * stopgrad(R_t) + l(pi_T(s_t), pi_theta(s_t)) ]
    R_t      = sum_{t <= i < t+n} gamma^(i-t) r_hat_i         (n = inf unless n_step is set)
"""

from __future__ import annotations

import torch
from torch import Tensor

from variants.losses import state_loss
from variants.policy import student_log_probs, teacher_log_probs
from variants.rewards import reward_parts
from variants.spec import Variant


def discount_matrix(steps: int, gamma: float, n_step: int | None, like: Tensor) -> Tensor:
    """``G[i, t] = gamma^(i-t)`` for ``t <= i < t + n``, so that ``R = r_hat @ G``."""
    idx = torch.arange(steps, device=like.device)
    lag = idx[:, None] - idx[None, :]
    keep = lag >= 0
    if n_step is not None:
        keep &= lag < n_step
    lag_f = lag.clamp(min=0).to(like.dtype)
    return torch.where(keep, torch.tensor(gamma, dtype=like.dtype) ** lag_f, torch.zeros_like(lag_f))


def returns_to_go(rhat: Tensor, gamma: float, n_step: int | None = None) -> Tensor:
    """Discounted (optionally n-step truncated) returns-to-go along the last axis."""
    return rhat @ discount_matrix(rhat.shape[-1], gamma, n_step, rhat)


def masked_state_loss(
    variant: Variant,
    student_out: Tensor,
    teacher_out: Tensor,
    v_teacher: Tensor | None = None,
    v_student: Tensor | None = None,
) -> Tensor:
    """The per-state loss with the +V cond mask applied."""
    loss = state_loss(variant.loss, student_out, teacher_out, variant.tau, variant.jsd_beta)
    if variant.v_cond:
        if v_teacher is None or v_student is None:
            raise ValueError("+V cond needs V_T(s) and V_theta(s) (v_teacher, v_student)")
        loss = loss * (v_teacher > v_student).to(loss.dtype)
    return loss


def pseudo_rewards(
    variant: Variant,
    *,
    student_out: Tensor,
    teacher_out: Tensor,
    actions: Tensor,
    valid: Tensor,
    loss: Tensor,
    env_reward: Tensor | None = None,
    v_teacher: Tensor | None = None,
) -> Tensor:
    """``r_hat_t`` along sampled trajectories ``[B, T]``; zero past the end of each one."""
    parts = reward_parts(
        variant.reward,
        env_reward=variant.env_reward,
        gamma=variant.gamma,
        teacher_logp=teacher_log_probs(teacher_out, variant.tau),
        student_logp=student_log_probs(student_out).detach(),
        loss=loss.detach(),
        v_teacher=v_teacher,
    )
    validf = valid.to(loss.dtype)
    nxt = torch.zeros_like(validf)
    nxt[..., :-1] = validf[..., 1:]
    a = actions.unsqueeze(-1)
    rhat = torch.zeros_like(validf)
    if parts.now is not None:
        rhat = rhat + torch.where(valid, parts.now.gather(-1, a).squeeze(-1), 0.0)
    if parts.state is not None:
        rhat = rhat + torch.where(valid, parts.state, 0.0)
    if parts.env:
        if env_reward is None:
            raise ValueError(f"variant {variant.name or variant.describe()!r} needs the environment reward")
        rhat = rhat + parts.env * torch.where(valid, env_reward, 0.0)
    arrive = torch.zeros_like(validf)
    if parts.arrive is not None:
        arrive = arrive + parts.arrive
    if parts.arrive_action is not None:
        arrive = arrive + parts.arrive_action.gather(-1, a).squeeze(-1)
    if parts.arrive is not None or parts.arrive_action is not None:
        shifted = torch.zeros_like(arrive)
        shifted[..., :-1] = arrive[..., 1:]
        rhat = rhat + torch.where(nxt > 0, shifted, 0.0)
    return rhat


def surrogate(
    variant: Variant,
    *,
    student_out: Tensor,
    teacher_out: Tensor,
    actions: Tensor,
    valid: Tensor,
    env_reward: Tensor | None = None,
    v_teacher: Tensor | None = None,
    v_student: Tensor | None = None,
) -> Tensor:
    """Per-trajectory surrogate ``[B]`` for trajectories ``[B, T]`` (outputs ``[B, T, A]``).

    ``valid[b, t]`` marks the steps that happened; an episode occupies a
    prefix of its row, and the state after its last valid step is terminal
    (or cut off: then nothing past the cut is credited). ``teacher_out`` is
    the teacher's raw outputs (logits or Q-values).
    """
    loss = masked_state_loss(variant, student_out, teacher_out, v_teacher, v_student)
    loss = torch.where(valid, loss, 0.0)
    rhat = pseudo_rewards(
        variant,
        student_out=student_out,
        teacher_out=teacher_out,
        actions=actions,
        valid=valid,
        loss=loss,
        env_reward=env_reward,
        v_teacher=v_teacher,
    )
    ret = returns_to_go(rhat, variant.gamma, variant.n_step).detach()
    logp = student_log_probs(student_out).gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    score = torch.where(valid, -logp * ret, 0.0)
    return (score + loss).sum(dim=-1)

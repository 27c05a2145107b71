"""The one surrogate loss every variant is an instance of.

For a trajectory drawn from the control policy (detached):

    L(theta) = sum_t [ -log pi_theta(a_t|s_t) * stopgrad(R_t) + l(pi_T(s_t), pi_theta(s_t)) ]
    R_t      = sum_{t <= i < t+n} gamma^(i-t) r_hat_i         (n = inf unless n_step is set)
               + gamma^n V(s_{t+n})                           (with a critic, where step t+n happened)

A learned critic adds the regression ``(stopgrad(R_t) - V(s_t))^2 / 2`` per
step; how far its table moves is the trainer's choice (the tabular engine:
``V(s) += critic_lr * mean over the visits of s of (R_t - V(s))``).
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
    if gamma == 1.0 and n_step is None:
        return rhat.flip(-1).cumsum(-1).flip(-1)
    return rhat @ discount_matrix(rhat.shape[-1], gamma, n_step, rhat)


def bootstrapped(ret: Tensor, values: Tensor, valid: Tensor, gamma: float, n_step: int) -> Tensor:
    """``ret + gamma^n V(s_{t+n})`` ``[B, T]`` where step ``t + n`` happened; past the end the
    state is terminal (or the episode was cut) and nothing is added."""
    boot = torch.zeros_like(ret)
    if n_step < ret.shape[-1]:
        boot[..., :-n_step] = torch.where(valid, values, torch.zeros_like(values))[..., n_step:]
    return ret + gamma**n_step * boot


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


def _packed_rewards(
    variant: Variant,
    index: tuple[Tensor, Tensor],
    shape: torch.Size,
    *,
    student_logp: Tensor,
    teacher_out: Tensor,
    actions: Tensor,
    loss: Tensor,
    env_reward: Tensor | None,
    v_teacher: Tensor | None,
) -> Tensor:
    """``r_hat`` ``[B, T]`` from per-step quantities packed over the valid steps ``index``.

    Working on the valid steps only keeps the cost proportional to the steps
    that happened, not to the padding of the longest episode.
    """
    needs_logp = variant.reward_spec.needs_teacher_logp
    parts = reward_parts(
        variant.reward,
        env_reward=variant.env_reward,
        gamma=variant.gamma,
        teacher_logp=teacher_log_probs(teacher_out, variant.tau) if needs_logp else None,
        student_logp=student_logp,
        loss=loss,
        v_teacher=v_teacher,
    )
    a = actions.unsqueeze(-1)
    now = torch.zeros_like(loss)
    if parts.now is not None:
        now = now + parts.now.gather(-1, a).squeeze(-1)
    if parts.state is not None:
        now = now + parts.state
    if parts.env:
        if env_reward is None:
            raise ValueError(f"variant {variant.name or variant.describe()!r} needs the environment reward")
        now = now + parts.env * env_reward
    rhat = loss.new_zeros(shape)
    rhat[index] = now
    if parts.arrive is not None or parts.arrive_action is not None:
        arrive = torch.zeros_like(loss)
        if parts.arrive is not None:
            arrive = arrive + parts.arrive
        if parts.arrive_action is not None:
            arrive = arrive + parts.arrive_action.gather(-1, a).squeeze(-1)
        arrive_full = loss.new_zeros(shape)
        arrive_full[index] = arrive
        # credited to the step before; zero where the next step did not happen
        rhat[..., :-1] += arrive_full[..., 1:]
    return rhat


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
    index = _valid_steps(valid)
    return _packed_rewards(
        variant, index, valid.shape, student_logp=student_log_probs(student_out[index]).detach(),
        teacher_out=teacher_out[index], actions=actions[index], loss=loss[index].detach(),
        env_reward=_at(env_reward, index), v_teacher=_at(v_teacher, index),
    )


def _valid_steps(valid: Tensor) -> tuple[Tensor, Tensor]:
    """The (episode, step) indices of the valid entries of ``valid`` ``[B, T]``."""
    episode, step = valid.nonzero(as_tuple=True)
    return episode, step


def _at(tensor: Tensor | None, index: tuple[Tensor, Tensor]) -> Tensor | None:
    """The valid steps' entries of an optional ``[B, T, ...]`` tensor (``None`` stays ``None``)."""
    return None if tensor is None else tensor[index]


def has_returns(variant: Variant) -> bool:
    """Whether ``R_t`` can be non-zero: a pseudo-reward, the environment reward or a critic. Without any,
    the surrogate is the per-state loss alone and no returns need computing."""
    return variant.reward_spec.build is not None or variant.env_reward or variant.critic != "none"


def step_returns(
    variant: Variant,
    index: tuple[Tensor, Tensor],
    valid: Tensor,
    *,
    student_logp: Tensor,
    teacher_out: Tensor,
    actions: Tensor,
    loss: Tensor,
    env_reward: Tensor | None = None,
    v_teacher: Tensor | None = None,
    v_critic: Tensor | None = None,
) -> Tensor:
    """``stopgrad(R_t)`` at the valid steps ``index`` of trajectories ``valid`` ``[B, T]``.

    The per-step inputs are packed over ``index`` (``[len, ...]``) except ``v_critic``, the critic's value
    of every step ``[B, T]``, which bootstraps the n-step return where step ``t + n`` happened.
    """
    rhat = _packed_rewards(
        variant, index, valid.shape, student_logp=student_logp.detach(), teacher_out=teacher_out,
        actions=actions, loss=loss.detach(), env_reward=env_reward, v_teacher=v_teacher,
    )
    ret = returns_to_go(rhat, variant.gamma, variant.n_step).detach()
    if variant.critic != "none":
        if v_critic is None:
            raise ValueError(f"variant {variant.name or variant.describe()!r} needs the critic's values (v_critic)")
        if variant.n_step is None:  # Variant refuses a critic without n_step already
            raise ValueError(f"variant {variant.name or variant.describe()!r}: a critic needs n_step")
        ret = bootstrapped(ret, v_critic.detach(), valid, variant.gamma, variant.n_step)
    return ret[index]


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
    v_critic: Tensor | None = None,
) -> Tensor:
    """Per-trajectory surrogate ``[B]`` for trajectories ``[B, T]`` (outputs ``[B, T, A]``).

    ``valid[b, t]`` marks the steps that happened; an episode occupies a
    prefix of its row, and the state after its last valid step is terminal
    (or cut off: then nothing past the cut is credited). ``teacher_out`` is
    the teacher's raw outputs (logits or Q-values). ``v_critic`` ``[B, T]``
    is the critic's value of each visited state, for variants with a critic;
    a learned critic's values carry the gradient its table is trained by.
    """
    index = _valid_steps(valid)
    a = actions[index]
    student, teacher, v_teacher_at = student_out[index], teacher_out[index], _at(v_teacher, index)
    loss = masked_state_loss(variant, student, teacher, v_teacher_at, _at(v_student, index))
    logp_all = student_log_probs(student)
    ret = step_returns(variant, index, valid, student_logp=logp_all, teacher_out=teacher, actions=a, loss=loss,
                       env_reward=_at(env_reward, index), v_teacher=v_teacher_at, v_critic=v_critic)
    logp = logp_all.gather(-1, a.unsqueeze(-1)).squeeze(-1)
    per_step = -logp * ret + loss
    if variant.critic == "learned":
        assert v_critic is not None  # step_returns refuses a critic without values
        per_step = per_step + 0.5 * (ret - v_critic[index]) ** 2
    return per_step.new_zeros(valid.shape[0]).index_add(0, index[0], per_step)


def regrouped_surrogate(
    variant: Variant,
    *,
    student_out: Tensor,
    teacher_out: Tensor,
    visits: Tensor,
    action_returns: Tensor | None = None,
    v_teacher: Tensor | None = None,
    v_student: Tensor | None = None,
    v_critic: Tensor | None = None,
    state_returns: Tensor | None = None,
) -> Tensor:
    """The sum of :func:`surrogate` over a batch of trajectories, regrouped by state.

    In a finite MDP the per-step terms of a state differ only in their returns, so with ``visits`` ``[M]``
    (how often each of ``M`` states was visited), ``action_returns`` ``[M, A]`` (the sum of ``R_t`` over
    the steps that took each action there) and ``state_returns`` ``[M]`` (their sum over actions, for a
    learned critic), ``sum_s visits(s) l(s) - sum_(s,a) action_returns(s, a) log pi(a|s)`` has the same
    value and gradient as the per-step sum, at a cost that does not grow with episode length. The learned
    critic's regression is written as ``visits V^2 / 2 - V sum_t R_t``: the same gradient, the value without
    the constant ``sum_t R_t^2 / 2``.
    """
    loss = masked_state_loss(variant, student_out, teacher_out, v_teacher, v_student)
    total = (visits.to(loss.dtype) * loss).sum()
    if action_returns is not None:
        total = total - (action_returns * student_log_probs(student_out)).sum()
    if variant.critic == "learned":
        if v_critic is None or state_returns is None:
            raise ValueError(f"variant {variant.name or variant.describe()!r}: a learned critic needs its values "
                             "(v_critic) and the returns of each state (state_returns)")
        total = total + (0.5 * visits.to(v_critic.dtype) * v_critic**2 - v_critic * state_returns).sum()
    return total

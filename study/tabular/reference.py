"""The tabular engine's previous code path, kept as the reference its compiled kernels must match and the
baseline `distill bench tabular --study` times them against: the batched tensor rollout (one set of
tensor operations per step), batched tensor Q-learning, and the per-step sampled surrogate."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from study.tabular import exact
from study.tabular.mdp import TabularMDP
from study.tabular.rng import (
    ROLLOUT,
    START,
    STEP,
    CounterRNG,
    categorical,
    combine,
    draws,
    instance_keys,
    inverse_cdf,
    to_uniform,
)
from study.tabular.rollout import Rollout, step_table
from variants import surrogate
from variants.policy import softmax

CHUNK = 32  # steps of random draws generated at once


def transition(table: Tensor, sa_a: Tensor, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """One step from the rows ``sa_a`` (flat (instance, state, action) ids) of a :func:`step_table`: the
    successor drawn with uniforms ``u``, its reward, and whether it is terminal."""
    out = table.index_select(0, sa_a)  # [B, K, 4]
    k = inverse_cdf(out[..., 0], u).view(-1, 1, 1).expand(-1, 1, 3)
    s2, r, term = out[..., 1:].gather(1, k).squeeze(1).unbind(-1)
    return s2.long(), r, term != 0


def tensor_rollout(mdp: TabularMDP, control: Tensor, keys: Tensor, *, episodes: int = 1,
                   max_steps: int = 1000, table: Tensor | None = None) -> Rollout:
    """Every running episode stepped together, one batch of tensor operations per step."""
    n, s_count, a_count, _ = mdp.succ.shape
    rows = torch.arange(n).repeat_interleave(episodes)
    ep_keys = combine(keys[rows], torch.arange(episodes).repeat(n))
    b = len(rows)
    q_cdf = control.reshape(n * s_count, a_count).cumsum(-1)
    table = step_table(mdp) if table is None else table
    absorb = mdp.absorb[rows].to(torch.float64)
    states = torch.zeros(b, max_steps, dtype=torch.int64)
    actions = torch.zeros(b, max_steps, dtype=torch.int64)
    rewards = torch.zeros(b, max_steps, dtype=mdp.dtype)
    valid = torch.zeros(b, max_steps, dtype=torch.bool)
    s = categorical(mdp.start[rows], to_uniform(combine(ep_keys, -1)))
    active = torch.arange(b)
    alive = torch.ones(b, dtype=torch.bool)
    base = rows * s_count
    steps = 0
    for t in range(max_steps):
        if t % CHUNK == 0:
            if t > 0:
                active, s, alive, base = active[alive], s[alive], alive[alive], base[alive]
            block = draws(ep_keys[active], t // CHUNK, CHUNK * 3).view(len(active), CHUNK, 3)
        u = block[:, t % CHUNK]
        sa = base + s
        a = inverse_cdf(q_cdf.index_select(0, sa), u[:, 0])
        s2, r, term = transition(table, sa * a_count + a, u[:, 1])
        states[active, t] = s
        actions[active, t] = a
        rewards[active, t] = r
        valid[active, t] = alive
        alive = alive & ~term & (u[:, 2] >= absorb[active])
        s = s2
        steps = t + 1
        if not alive.any():
            break
    cut = torch.zeros(b, dtype=torch.bool)
    cut[active] = alive
    episode, step = valid[:, :steps].nonzero(as_tuple=True)
    visited, step_row, visits = torch.unique(rows[episode] * s_count + states[episode, step], return_inverse=True,
                                             return_counts=True)
    return Rollout(rows, valid.sum(-1), cut, episode, step, states[episode, step], actions[episode, step],
                   rewards[episode, step], visited, visits, step_row)


def tensor_q_learning(
    mdp: TabularMDP,
    *,
    episodes: int = 2000,
    lr: float = 0.1,
    epsilon: float = 0.1,
    gamma: float = 1.0,
    max_steps: int = 1000,
    seed: int = 0,
    explore: bool = False,
) -> Tensor:
    """All MDPs stepped together, one batch of tensor operations per step."""
    n, s_count, a_count = mdp.n_mdps, mdp.n_states, mdp.n_actions
    rng = CounterRNG(instance_keys(torch.full((n,), seed), torch.arange(n)))
    q = torch.zeros(n, s_count, a_count, dtype=mdp.dtype)
    flat_q = q.view(n * s_count, a_count)
    table = step_table(mdp)
    starts = mdp.start
    if explore:
        free = (~mdp.terminal).to(mdp.dtype)
        starts = free / free.sum(-1, keepdim=True)
    per_step = 5 if explore else 4  # the fifth uniform breaks greedy ties
    for ep in range(episodes):
        # only the MDPs whose episode still runs are stepped; random draws come CHUNK steps at a time
        active = torch.arange(n)
        s = categorical(starts, rng.uniform(START, ep))
        key = rng.key(STEP, ep)
        for t in range(max_steps):
            if t % CHUNK == 0:
                block = draws(key[active], t // CHUNK, CHUNK * per_step).view(len(active), CHUNK, per_step)
            u = block[:, t % CHUNK]
            sa = active * s_count + s
            row = flat_q.index_select(0, sa)
            greedy = random_argmax(row, u[:, 4]) if explore else row.argmax(-1)
            rand_a = (u[:, 1] * a_count).long().clamp(max=a_count - 1)
            a = torch.where(u[:, 0] < epsilon, rand_a, greedy)
            s2, r, term = transition(table, sa * a_count + a, u[:, 2])
            goes_on = ~term & (u[:, 3] >= mdp.absorb[active])
            nxt = flat_q.index_select(0, active * s_count + s2).max(-1).values
            target = r + gamma * torch.where(goes_on, nxt, 0.0)
            old = flat_q[sa, a]
            flat_q[sa, a] = old + lr * (target - old)
            if not goes_on.all():
                active, s2, block = active[goes_on], s2[goes_on], block[goes_on]
                if len(active) == 0:
                    break
            s = s2
    return q


def random_argmax(values: Tensor, u: Tensor) -> Tensor:
    """Per row, one of the maximal entries chosen uniformly with the uniform ``u``."""
    is_max = values == values.max(-1, keepdim=True).values
    count = is_max.sum(-1)
    pick = torch.minimum((u * count).long(), count - 1).unsqueeze(-1)  # the pick-th maximal entry, from 0
    return (is_max.cumsum(-1) > pick).to(torch.int8).argmax(-1)


def sampled_loss(
    groups: Sequence[Any],
    inst_mdp: TabularMDP,
    table: Tensor,
    inst_teacher: Tensor,
    logits: Tensor,
    keys: Tensor,
    iteration: int,
    config: Any,
    lengths: list[Tensor],
    critic: Tensor | None = None,
    visits: Tensor | None = None,
) -> Tensor:
    """The per-step surrogate, summed over every step of every episode (the engine's previous code path;
    ``groups`` are the engine's variant groups).

    ``critic`` ``[N, S]`` holds the learned critics; ``visits`` is filled with how often each of their
    states was visited in this iteration's episodes.
    """
    n, s_count, a_count = logits.shape
    if visits is not None:
        visits.zero_()
    with torch.no_grad():
        control = torch.empty_like(logits)
        for g in groups:
            student = softmax(logits[g.index].detach())
            control[g.index] = g.variant.control.probs(g.teacher_act, student, iteration)
        ro = tensor_rollout(inst_mdp, control, combine(combine(keys, ROLLOUT), iteration),
                            episodes=config.episodes, max_steps=config.max_steps, table=table)
        lengths.append(ro.lengths.view(n, config.episodes).to(logits.dtype).mean(-1))
    flat_logits = logits.reshape(n * s_count, a_count)
    flat_teacher = inst_teacher.reshape(n * s_count, a_count)
    total = logits.sum() * 0.0
    per_instance_rows = torch.arange(n * config.episodes).view(n, config.episodes)
    for g in groups:
        rows = per_instance_rows[g.index].reshape(-1)
        inst = ro.instance[rows]
        states = ro.states[rows]
        flat = inst.unsqueeze(-1) * s_count + states
        v_t = v_s = v_c = None
        if g.v_teacher is not None or g.variant.critic == "exact":  # rows of the group's own tables
            local = torch.searchsorted(g.index, inst).unsqueeze(-1)
        if g.v_teacher is not None:
            v_t = g.v_teacher[local, states]
            if g.variant.v_cond:
                with torch.no_grad():
                    v_student = g.mdp.evaluate(softmax(logits[g.index].detach()), g.variant.gamma)
                v_s = v_student[local, states]
        if g.variant.critic == "learned":
            v_c = critic[inst.unsqueeze(-1), states]
            visits.view(-1).index_add_(0, flat[ro.valid[rows]], torch.ones_like(v_c[ro.valid[rows]]))
        elif g.variant.critic == "exact":
            with torch.no_grad():
                v_c = exact.critic_values(g.variant, g.mdp, g.teacher_out, logits[g.index].detach(),
                                          iteration=iteration, v_teacher=g.v_teacher)[local, states]
        per_traj = surrogate(
            g.variant,
            student_out=flat_logits[flat],
            teacher_out=flat_teacher[flat],
            actions=ro.actions[rows],
            valid=ro.valid[rows],
            env_reward=ro.rewards[rows],
            v_teacher=v_t,
            v_student=v_s,
            v_critic=v_c,
        )
        total = total + per_traj.sum() / config.episodes
    return total

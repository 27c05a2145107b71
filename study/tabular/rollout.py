"""Batched sampling of whole episodes from many MDPs and control policies at once."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from study.tabular.mdp import TabularMDP
from study.tabular.rng import categorical, combine, draws, inverse_cdf, to_uniform


@dataclass
class Rollout:
    """Episodes ``[B, T]``; row ``b`` belongs to instance ``instance[b]``.

    ``valid`` marks the steps that happened (a prefix of each row). An episode
    still running after ``max_steps`` is cut there (``cut`` is True).
    """

    instance: Tensor
    states: Tensor
    actions: Tensor
    rewards: Tensor
    valid: Tensor
    cut: Tensor

    @property
    def lengths(self) -> Tensor:
        """Steps each episode took, ``[B]``."""
        return self.valid.sum(-1)


CHUNK = 32  # steps of random draws generated at once (amortises per-op overhead)


def step_table(mdp: TabularMDP) -> Tensor:
    """``[N * S * A, K, 4]``: per (s, a) and successor, the cumulative probability, the
    successor id, the reward and whether the successor is terminal, so that one
    step of a rollout needs a single lookup. Build it once per batch of MDPs."""
    n, s_count, a_count, k_count = mdp.succ.shape
    succ = mdp.succ.reshape(n, -1)
    dt = mdp.dtype
    return torch.stack([
        mdp.prob.cumsum(-1),
        mdp.succ.to(dt),
        mdp.reward,
        mdp.terminal.gather(1, succ).view_as(mdp.succ).to(dt),
    ], dim=-1).reshape(n * s_count * a_count, k_count, 4)


def transition(table: Tensor, sa_a: Tensor, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """One step from the rows ``sa_a`` (flat (instance, state, action) ids) of a :func:`step_table`: the
    successor drawn with uniforms ``u``, its reward, and whether it is terminal."""
    out = table.index_select(0, sa_a)  # [B, K, 4]
    k = inverse_cdf(out[..., 0], u).view(-1, 1, 1).expand(-1, 1, 3)
    s2, r, term = out[..., 1:].gather(1, k).squeeze(1).unbind(-1)
    return s2.long(), r, term != 0


def rollout(mdp: TabularMDP, control: Tensor, keys: Tensor, *, episodes: int = 1, max_steps: int = 1000,
            table: Tensor | None = None) -> Rollout:
    """Sample ``episodes`` episodes per instance.

    ``mdp`` holds one MDP per instance (``N``), ``control`` the control
    policies ``[N, S, A]``, ``keys`` one random key per instance for this
    round (the same key gives the same episodes, whatever the batch).
    ``table`` is :func:`step_table` of ``mdp``, when the caller keeps it.
    """
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
    active = torch.arange(b)  # rows still running, compacted every CHUNK steps
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
    return Rollout(rows, states[:, :steps], actions[:, :steps], rewards[:, :steps], valid[:, :steps], cut)

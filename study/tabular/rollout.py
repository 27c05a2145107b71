"""Batched sampling of whole episodes from many MDPs and control policies at once."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from study.tabular.mdp import TabularMDP
from study.tabular.rng import categorical, combine, draws, to_uniform


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
        return self.valid.sum(-1)


def rollout(mdp: TabularMDP, control: Tensor, keys: Tensor, *, episodes: int = 1, max_steps: int = 1000) -> Rollout:
    """Sample ``episodes`` episodes per instance.

    ``mdp`` holds one MDP per instance (``N``), ``control`` the control
    policies ``[N, S, A]``, ``keys`` one random key per instance for this
    round (the same key gives the same episodes, whatever the batch).
    """
    n, s_count, a_count, _ = mdp.succ.shape
    rows = torch.arange(n).repeat_interleave(episodes)
    ep_keys = combine(keys[rows], torch.arange(episodes).repeat(n))
    b = len(rows)
    q_flat = control.reshape(n * s_count, a_count)
    prob_flat = mdp.prob.reshape(n * s_count * a_count, -1)
    succ_flat = mdp.succ.reshape(n * s_count * a_count, -1)
    reward_flat = mdp.reward.reshape(n * s_count * a_count, -1)
    terminal_flat = mdp.terminal.reshape(-1)
    absorb = mdp.absorb[rows]

    states = torch.zeros(b, max_steps, dtype=torch.int64)
    actions = torch.zeros(b, max_steps, dtype=torch.int64)
    rewards = torch.zeros(b, max_steps, dtype=mdp.dtype)
    valid = torch.zeros(b, max_steps, dtype=torch.bool)

    start_u = to_uniform(combine(ep_keys, -1), mdp.dtype)
    s = categorical(mdp.start[rows], start_u)
    alive = torch.ones(b, dtype=torch.bool)
    base = rows * s_count
    steps = 0
    for t in range(max_steps):
        u = draws(ep_keys, t, 3, mdp.dtype)
        sa = base + s
        a = categorical(q_flat.index_select(0, sa), u[:, 0])
        idx = sa * a_count + a
        k = categorical(prob_flat.index_select(0, idx), u[:, 1]).unsqueeze(-1)
        s2 = succ_flat.index_select(0, idx).gather(1, k).squeeze(-1)
        r = reward_flat.index_select(0, idx).gather(1, k).squeeze(-1)
        states[:, t] = s
        actions[:, t] = a
        rewards[:, t] = r
        valid[:, t] = alive
        goes_on = ~terminal_flat.index_select(0, base + s2) & (u[:, 2] >= absorb)
        alive = alive & goes_on
        s = s2
        steps = t + 1
        if not alive.any():
            break
    return Rollout(rows, states[:, :steps], actions[:, :steps], rewards[:, :steps], valid[:, :steps], alive)

"""Batched sampling of whole episodes from many MDPs and control policies at once."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from torch import Tensor

from study.tabular import kernels
from study.tabular.mdp import TabularMDP
from study.tabular.rng import combine


@dataclass
class Rollout:
    """Episodes, their steps packed one episode after another; episode ``b`` belongs to instance
    ``instance[b]``, took ``lengths[b]`` steps and was cut at ``max_steps`` if ``cut[b]``.

    Step ``i`` is step ``step[i]`` of episode ``episode[i]``, in ``step_states[i]``, taking
    ``step_actions[i]`` and receiving ``step_rewards[i]``. ``visited`` lists the distinct flat rows
    ``instance * S + state`` visited, in order of first visit, ``visits`` how often each was visited and
    ``step_row`` which of them each step is in (so that per-state work is done once per row). The padded
    ``[B, T]`` views (``states``, ``actions``, ``rewards``, ``valid``) are built when asked for.
    """

    instance: Tensor
    lengths: Tensor
    cut: Tensor
    episode: Tensor
    step: Tensor
    step_states: Tensor
    step_actions: Tensor
    step_rewards: Tensor
    visited: Tensor
    visits: Tensor
    step_row: Tensor

    @cached_property
    def valid(self) -> Tensor:
        """``[B, T]``: the steps that happened (a prefix of each row; ``T`` the longest episode)."""
        steps = max(1, int(self.lengths.max())) if len(self.lengths) else 1
        return torch.arange(steps).unsqueeze(0) < self.lengths.unsqueeze(-1)

    def _padded(self, values: Tensor) -> Tensor:
        out = values.new_zeros(self.valid.shape)
        out[self.episode, self.step] = values
        return out

    @cached_property
    def states(self) -> Tensor:
        """``[B, T]`` states (zero past each episode's end)."""
        return self._padded(self.step_states)

    @cached_property
    def actions(self) -> Tensor:
        """``[B, T]`` actions (zero past each episode's end)."""
        return self._padded(self.step_actions)

    @cached_property
    def rewards(self) -> Tensor:
        """``[B, T]`` rewards (zero past each episode's end)."""
        return self._padded(self.step_rewards)


@dataclass(frozen=True)
class Acting:
    """Who acts in each of ``N`` instances: ``weights`` ``[N, 3]`` on the teacher's acting probabilities
    ``teacher`` ``[N, S, A]``, the softmax of the student's ``logits`` ``[N, S, A]`` (None when no
    instance's student acts) and the uniform policy (:meth:`variants.Control.weights`)."""

    teacher: Tensor
    logits: Tensor | None
    weights: Tensor

    @classmethod
    def fixed(cls, policy: Tensor) -> Acting:
        """A given policy ``[N, S, A]`` acts."""
        weights = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64).expand(policy.shape[0], 3)
        return cls(policy, None, weights)


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


def rollout(mdp: TabularMDP, control: Tensor | Acting, keys: Tensor, *, episodes: int = 1,
            max_steps: int = 1000, table: Tensor | None = None, table_of: Tensor | None = None) -> Rollout:
    """Sample ``episodes`` episodes per instance.

    ``mdp`` holds one MDP per instance (``N``), ``control`` who acts (a policy ``[N, S, A]``, or
    :class:`Acting`), ``keys`` one random key per instance for this round (the same key gives the same
    episodes, whatever the batch). ``table`` is :func:`step_table` of ``mdp``, when the caller keeps it,
    or of the distinct MDPs, with ``table_of`` ``[N]`` naming each instance's.
    Steps run in a compiled loop (:func:`study.tabular.kernels.episodes`) that computes the control
    policy only at the states visited.
    """
    acting = control if isinstance(control, Acting) else Acting.fixed(control)
    n, s_count, a_count, _ = mdp.succ.shape
    rows = torch.arange(n).repeat_interleave(episodes)
    ep_keys = combine(keys[rows], torch.arange(episodes).repeat(n))
    b = len(rows)
    table = step_table(mdp) if table is None else table
    table_of = torch.arange(n) if table_of is None else table_of
    teacher = acting.teacher.detach().reshape(n * s_count, a_count).contiguous()
    logits = teacher if acting.logits is None else acting.logits.detach().reshape(n * s_count, a_count).contiguous()
    cap = b * max_steps
    states, actions = np.empty(cap, dtype=np.int64), np.empty(cap, dtype=np.int64)
    rewards = np.empty(cap, dtype=torch.empty(0, dtype=mdp.dtype).numpy().dtype)
    episode, step = np.empty(cap, dtype=np.int64), np.empty(cap, dtype=np.int64)
    lengths, cut = np.zeros(b, dtype=np.int64), np.zeros(b, dtype=np.bool_)
    distinct = min(cap, n * s_count)
    visited, visits, step_row = np.empty(distinct, np.int64), np.empty(distinct, np.int64), np.empty(cap, np.int64)
    total, distinct = kernels.episodes(
        ep_keys.numpy(), rows.numpy(), mdp.start.contiguous().numpy(), teacher.numpy(), logits.numpy(),
        acting.weights.to(torch.float64)[rows].contiguous().numpy(), table.contiguous().numpy(),
        table_of.to(torch.int64).contiguous().numpy(), mdp.absorb[rows].to(torch.float64).numpy(), s_count,
        a_count, max_steps,
        states, actions, rewards, episode, step, lengths, cut, np.full(n * s_count, -1, dtype=np.int64),
        visited, visits, step_row)
    packed = (torch.from_numpy(x[:total].copy()) for x in (episode, step, states, actions, rewards))
    return Rollout(rows, torch.from_numpy(lengths), torch.from_numpy(cut), *packed,
                   torch.from_numpy(visited[:distinct].copy()), torch.from_numpy(visits[:distinct].copy()),
                   torch.from_numpy(step_row[:total].copy()))

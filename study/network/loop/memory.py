"""The replay memory of teacher-driven variants: observations with the teacher's outputs on them.

Data a teacher-driven control collects does not move with the student, so learning from it is a
supervised problem and a memory of it is sound (Rusu et al.); the coordinator decides when that holds.
"""

from __future__ import annotations

import torch
from torch import Tensor


class Memory:
    """A circular memory of observations (uint8, on the CPU) and the teacher's outputs on them: the
    targets are stored, not recomputed, so a replayed minibatch costs the teacher nothing."""

    def __init__(self, capacity: int, obs_shape: tuple[int, ...], n_actions: int) -> None:
        self.obs = torch.zeros((capacity, *obs_shape), dtype=torch.uint8)
        self.out = torch.zeros((capacity, n_actions))
        self.capacity, self.size, self.pos = capacity, 0, 0

    def add(self, obs: Tensor, out: Tensor) -> None:
        """Store observations ``[B, ...]`` and the teacher's outputs ``[B, A]``, overwriting the oldest."""
        if self.pos + len(obs) <= self.capacity:  # one slice: a plain copy
            self.obs[self.pos:self.pos + len(obs)], self.out[self.pos:self.pos + len(obs)] = obs.cpu(), out.cpu()
        else:
            idx = (self.pos + torch.arange(len(obs))) % self.capacity
            self.obs[idx], self.out[idx] = obs.cpu(), out.cpu()
        self.pos = int((self.pos + len(obs)) % self.capacity)
        self.size = min(self.size + len(obs), self.capacity)

    def sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``n`` stored pairs drawn uniformly with replacement. They are copies, so a minibatch drawn now
        stays valid while later rollouts overwrite the memory."""
        idx = torch.randint(0, self.size, (n,), generator=generator)
        return self.obs[idx], self.out[idx]

"""What the actor hands the learner: one game's rollout, and its cutting into episode pieces.

A module of its own so that acting and learning share a plain data type rather than each other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass
class Rollout:
    """One rollout of a game's ``N`` envs over ``T`` steps: per step (``[T]`` lists of ``[N]`` tensors, envs in
    their order) the observations, the teacher's outputs on them, the actions taken, the rewards, the ends
    of episodes and, for a variant rewarded by the teacher's value, ``V_T`` (otherwise ``None``)."""

    obs: list[Tensor]
    out: list[Tensor]
    act: list[Tensor]
    rew: list[Tensor]
    done: list[Tensor]
    v: list[Tensor] | None

    def env_major(self, xs: list[Tensor]) -> Tensor:
        """A ``[T]`` list of ``[N, ...]`` tensors as one ``[N*T, ...]`` tensor, env by env (each env's steps in
        order), the layout ``segments`` numbers."""
        return torch.stack(xs, 1).flatten(0, 1)

    def pieces(self) -> tuple[np.ndarray, np.ndarray, int, int]:
        """The rollout's episode pieces (see ``segments``)."""
        return segments(torch.stack(self.done, 1).numpy())


def segments(done: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Cut rollouts ``done [N, T]`` into episode pieces: each step's piece and position in it, the number
    of pieces and the longest piece (a piece starts at t = 0 and after every done). Returns are summed
    within a piece, so a piece cut by the end of the rollout is credited only up to the cut."""
    n, t = done.shape
    boundary = np.zeros((n, t), dtype=bool)
    boundary[:, 0] = True
    boundary[:, 1:] = done[:, :-1]
    piece = np.cumsum(boundary.reshape(-1)) - 1  # row-major: env by env
    steps = np.arange(t)[None, :].repeat(n, 0)
    start = np.maximum.accumulate(np.where(boundary, steps, 0), axis=1)
    pos = (steps - start).reshape(-1)
    return piece, pos, int(piece[-1]) + 1, int(pos.max()) + 1

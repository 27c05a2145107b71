"""Tabular students: parameters to logits ``[N, S, A]``.

A table student has one logit per (state, action); a linear student maps
state features through shared weights, so states with the same features
share parameters (the Fig. 2 toy). ``pin_last`` fixes the last action's
logit at zero, which removes softmax's shift redundancy (two actions: one
parameter per feature).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from study.tabular.mdp import MDPError, TabularMDP
from study.tabular.rng import INIT, CounterRNG

STUDENT_KINDS = ("table", "linear")


@dataclass(frozen=True)
class Student:
    """How a batch of students turns parameters into logits."""

    kind: str = "table"
    pin_last: bool = False

    def __post_init__(self) -> None:
        if self.kind not in STUDENT_KINDS:
            raise MDPError(f"student: unknown kind {self.kind!r}; allowed: {', '.join(STUDENT_KINDS)}")

    def param_shape(self, mdp: TabularMDP) -> tuple[int, ...]:
        """One student's parameter shape: a logit per (state, action) for a table, per (feature, action) for a
        linear student (one action fewer with ``pin_last``)."""
        free = mdp.n_actions - (1 if self.pin_last else 0)
        if self.kind == "table":
            return (mdp.n_states, free)
        if mdp.features is None:
            raise MDPError("a linear student needs state features; this MDP has none")
        return (mdp.features.shape[-1], free)

    def init(self, mdp: TabularMDP, keys: Tensor, scale: float = 0.0) -> Tensor:
        """Parameters ``[N, ...]`` for ``N = len(keys)`` students (zeros: the uniform policy)."""
        shape = self.param_shape(mdp)
        if scale == 0.0:
            return torch.zeros(len(keys), *shape, dtype=mdp.dtype)
        return scale * CounterRNG(keys).normal(INIT, shape=shape, dtype=mdp.dtype)

    def logits(self, params: Tensor, mdp: TabularMDP) -> Tensor:
        """``[N, S, A]`` logits for the MDPs of ``mdp`` (one per student)."""
        out = params if self.kind == "table" else mdp.features @ params
        if self.pin_last:
            out = torch.cat([out, torch.zeros_like(out[..., :1])], dim=-1)
        return out

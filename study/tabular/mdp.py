"""Finite MDPs as batched tensors of successor lists.

Each (state, action) lists ``K`` successors with their probabilities and the
reward received on that transition. Successor lists keep a 1000-MDP batch of
20x20 grid worlds small (a dense ``[S, A, S]`` table would not be), and serve
both the sampler (gather, then draw) and the exact engine (expectations are
weighted gathers; only the policy's ``[S, S]`` matrix is built densely, for the
linear solves).

Episodes: after every transition the episode ends if the new state is
terminal, and otherwise with probability ``absorb`` (a fall into an absorbing
state worth nothing). ``continuation(s') = (1 - absorb) (1 - terminal(s'))``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import Tensor


class MDPError(ValueError):
    """An MDP whose tensors are inconsistent, or a generator parameter out of range."""


@dataclass
class TabularMDP:
    """A batch of ``N`` finite MDPs with ``S`` states, ``A`` actions, ``K`` successors.

    succ:     [N, S, A, K] long  successor state ids
    prob:     [N, S, A, K]       successor probabilities (rows sum to one)
    reward:   [N, S, A, K]       reward received on that transition
    terminal: [N, S] bool        entering a terminal state ends the episode
    start:    [N, S]             start distribution (on non-terminal states)
    absorb:   [N]                chance per step of falling into the absorbing state
    features: [N, S, F] or None  state features for students that share parameters
    info:     free-form description of how the batch was made
    """

    succ: Tensor
    prob: Tensor
    reward: Tensor
    terminal: Tensor
    start: Tensor
    absorb: Tensor
    features: Tensor | None = None
    info: dict = field(default_factory=dict)

    # ---- shape ---------------------------------------------------------------

    @property
    def n_mdps(self) -> int:
        return self.succ.shape[0]

    @property
    def n_states(self) -> int:
        return self.succ.shape[1]

    @property
    def n_actions(self) -> int:
        return self.succ.shape[2]

    @property
    def dtype(self) -> torch.dtype:
        return self.prob.dtype

    def validate(self, atol: float = 1e-5) -> TabularMDP:
        """Check shapes and probabilities; raise :class:`MDPError` naming the problem."""
        n, s, a, k = self.succ.shape
        for name in ("prob", "reward"):
            if getattr(self, name).shape != (n, s, a, k):
                raise MDPError(f"{name} has shape {tuple(getattr(self, name).shape)}, expected {(n, s, a, k)}")
        if self.terminal.shape != (n, s) or self.start.shape != (n, s):
            raise MDPError("terminal and start must have shape [N, S]")
        if self.absorb.shape != (n,):
            raise MDPError(f"absorb has shape {tuple(self.absorb.shape)}, expected {(n,)}")
        if self.succ.min() < 0 or self.succ.max() >= s:
            raise MDPError("successor ids out of range")
        if (self.prob < 0).any():
            raise MDPError("negative transition probabilities")
        rows = self.prob.sum(-1)
        if not torch.allclose(rows, torch.ones_like(rows), atol=atol):
            raise MDPError(f"transition rows must sum to one (worst row sums to {rows.min():.6f})")
        if not torch.allclose(self.start.sum(-1), torch.ones(n, dtype=self.start.dtype), atol=atol):
            raise MDPError("start distributions must sum to one")
        if (self.start[self.terminal] > 0).any():
            raise MDPError("start distributions put mass on terminal states")
        if ((self.absorb < 0) | (self.absorb >= 1)).any():
            raise MDPError("absorb must lie in [0, 1)")
        if self.features is not None and self.features.shape[:2] != (n, s):
            raise MDPError("features must have shape [N, S, F]")
        return self

    # ---- batch manipulation ------------------------------------------------------

    def select(self, index: Tensor) -> TabularMDP:
        """The MDPs at ``index`` (repeats allowed: one copy per seed or variant)."""
        pick = lambda t: None if t is None else t.index_select(0, index)  # noqa: E731
        return replace(
            self,
            succ=pick(self.succ),
            prob=pick(self.prob),
            reward=pick(self.reward),
            terminal=pick(self.terminal),
            start=pick(self.start),
            absorb=pick(self.absorb),
            features=pick(self.features),
        )

    def to(self, dtype: torch.dtype) -> TabularMDP:
        """Floating tensors cast to ``dtype`` (float64 for exact checks)."""
        cast = lambda t: None if t is None else t.to(dtype)  # noqa: E731
        return replace(self, prob=cast(self.prob), reward=cast(self.reward), start=cast(self.start),
                       absorb=cast(self.absorb), features=cast(self.features))

    # ---- exact quantities --------------------------------------------------------

    def continuation(self) -> Tensor:
        """``[N, S]`` probability that the episode goes on after entering each state."""
        return (1.0 - self.absorb)[:, None] * (~self.terminal).to(self.dtype)

    def expected_reward(self) -> Tensor:
        """``R(s, a) = sum_k p_k r_k``, ``[N, S, A]``."""
        return (self.prob * self.reward).sum(-1)

    def expect_next(self, values: Tensor, continuing: bool = True) -> Tensor:
        """``sum_s' P(s'|s,a) [cont(s')] values(s')`` for ``values`` of shape ``[N, S]``."""
        v = values * self.continuation() if continuing else values
        n = self.n_mdps
        gathered = v.gather(1, self.succ.reshape(n, -1)).reshape(self.succ.shape)
        return (self.prob * gathered).sum(-1)

    def policy_matrix(self, policy: Tensor) -> Tensor:
        """``[N, S, S]``: ``sum_a pi(a|s) P(s'|s,a) cont(s')``, the continuing transitions."""
        n, s, a, k = self.succ.shape
        w = policy.unsqueeze(-1) * self.prob
        w = w * self.continuation().gather(1, self.succ.reshape(n, -1)).reshape(self.succ.shape)
        out = torch.zeros(n, s, s, dtype=w.dtype, device=w.device)
        rows = torch.arange(s, device=w.device).view(1, s, 1, 1).expand(n, s, a, k)
        flat = (rows * s + self.succ).reshape(n, -1)
        out.view(n, -1).scatter_add_(1, flat, w.reshape(n, -1))
        return out

    def occupancy(self, policy: Tensor) -> Tensor:
        """Expected visits per state in one episode, ``d = mu (I - P_pi)^-1``, ``[N, S]``."""
        p = self.policy_matrix(policy)
        eye = torch.eye(self.n_states, dtype=p.dtype, device=p.device).expand_as(p)
        return torch.linalg.solve(eye - p.transpose(1, 2), self.start)

    def evaluate(self, policy: Tensor, gamma: float = 1.0, reward: Tensor | None = None) -> Tensor:
        """``V^pi(s)`` of an expected per-(s, a) reward (default: the MDP's), ``[N, S]``."""
        r = self.expected_reward() if reward is None else reward
        p = self.policy_matrix(policy)
        eye = torch.eye(self.n_states, dtype=p.dtype, device=p.device).expand_as(p)
        rhs = (policy * r).sum(-1)
        return torch.linalg.solve(eye - gamma * p, rhs.unsqueeze(-1)).squeeze(-1)

    def episode_return(self, policy: Tensor, gamma: float = 1.0) -> Tensor:
        """Expected return from the start distribution, ``[N]``."""
        return (self.start * self.evaluate(policy, gamma)).sum(-1)

    def uniform_states(self) -> Tensor:
        """Uniform weights over the non-terminal states, ``[N, S]``."""
        w = (~self.terminal).to(self.dtype)
        return w / w.sum(-1, keepdim=True)

"""Finite MDPs as batched tensors of successor lists.

Each (state, action) lists ``K`` successors with their probabilities and the
reward received on that transition. Successor lists keep a 1000-MDP batch of
20x20 grid worlds small (a dense ``[S, A, S]`` table would not be), and serve
both the sampler (gather, then draw) and the exact engine (expectations are
weighted gathers; the linear solves of :mod:`study.tabular.solve` build the
policy's ``[S, S]`` matrix densely, or only its band).

Episodes: after every transition the episode ends if the new state is
terminal, and otherwise with probability ``absorb`` (a fall into an absorbing
state worth nothing). ``continuation(s') = (1 - absorb) (1 - terminal(s'))``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property

import torch
from torch import Tensor

from study.tabular.solve import Systems, band_of, solve

# the tensors with one row per MDP, and those of them that are floating point
PER_MDP_FIELDS = ("succ", "prob", "reward", "terminal", "start", "absorb", "features")
FLOAT_FIELDS = ("prob", "reward", "start", "absorb", "features")


class MDPError(ValueError):
    """An MDP whose tensors are inconsistent, or a generator parameter out of range."""


def check_int(name: str, value: object, low: int, high: int | None = None, allowed: str | None = None) -> int:
    """``value`` as an ``int`` in ``[low, high]`` (no upper limit if ``high`` is None).

    Bools and floats are refused (``3.0`` is not a size). Raises :class:`MDPError`
    as ``"size: 2 is out of range; allowed: size >= 3"``.
    """
    if allowed is None:
        allowed = f"{name} >= {low}" if high is None else f"{low} <= {name} <= {high}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise MDPError(f"{name}: {value!r} is not an int; allowed: an int with {allowed}")
    if value < low or (high is not None and value > high):
        raise MDPError(f"{name}: {value} is out of range; allowed: {allowed}")
    return int(value)


def check_float(
    name: str,
    value: object,
    allowed: str,
    low: float = -math.inf,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a ``float`` in the interval from ``low`` to ``high`` (open ends as flagged).

    NaN and bools are refused; ``allowed`` states the interval in words.
    Infinities pass only where the interval contains them (closed at +-inf).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise MDPError(f"{name}: {value!r} is not a number; allowed: {allowed}")
    v = float(value)
    above = v > low if low_open else v >= low  # NaN fails both comparisons
    below = v < high if high_open else v <= high
    if not (above and below):
        raise MDPError(f"{name}: {value} is out of range; allowed: {allowed}")
    return v


def check_finite(name: str, value: object) -> float:
    """``value`` as a finite ``float`` (rewards and the like)."""
    return check_float(name, value, "a finite number", high_open=True, low_open=True)


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
        """How many MDPs the batch holds (N)."""
        return self.succ.shape[0]

    @property
    def n_states(self) -> int:
        """States per MDP (S)."""
        return self.succ.shape[1]

    @property
    def n_actions(self) -> int:
        """Actions per state (A)."""
        return self.succ.shape[2]

    @property
    def dtype(self) -> torch.dtype:
        """The float type of the probabilities, which the rest of the computation follows."""
        return self.prob.dtype

    def validate(self, atol: float = 1e-5) -> TabularMDP:
        """Check shapes and probabilities; raise :class:`MDPError` naming the problem,
        the offending value and what is allowed."""
        if self.succ.dim() != 4:
            raise MDPError(f"succ: shape {tuple(self.succ.shape)} has {self.succ.dim()} dims; "
                           "allowed: 4 dims [N, S, A, K]")
        n, s, a, k = self.succ.shape
        if min(n, s, a, k) < 1:
            raise MDPError(f"succ: shape {(n, s, a, k)} is empty; allowed: N, S, A, K >= 1")
        if self.succ.dtype.is_floating_point or self.succ.dtype == torch.bool or self.succ.is_complex():
            raise MDPError(f"succ: dtype {self.succ.dtype} is not an integer type; allowed: torch.int64")
        for name in ("prob", "reward"):
            if getattr(self, name).shape != (n, s, a, k):
                raise MDPError(f"{name}: shape {tuple(getattr(self, name).shape)} does not match succ; "
                               f"allowed: {(n, s, a, k)}")
        for name in ("terminal", "start"):
            if getattr(self, name).shape != (n, s):
                raise MDPError(f"{name}: shape {tuple(getattr(self, name).shape)} is not [N, S]; "
                               f"allowed: {(n, s)}")
        if self.terminal.dtype != torch.bool:
            raise MDPError(f"terminal: dtype {self.terminal.dtype} is not bool; allowed: torch.bool")
        if self.absorb.shape != (n,):
            raise MDPError(f"absorb: shape {tuple(self.absorb.shape)} is not [N]; allowed: {(n,)}")
        lo, hi = int(self.succ.min()), int(self.succ.max())
        if lo < 0 or hi >= s:
            raise MDPError(f"succ: successor ids out of range (min {lo}, max {hi}); "
                           f"allowed: 0 <= id < n_states ({s})")
        if not torch.isfinite(self.prob).all():
            raise MDPError("prob: non-finite transition probabilities; allowed: finite values >= 0")
        if (self.prob < 0).any():
            raise MDPError(f"prob: negative transition probabilities (min {float(self.prob.min()):.6g}); "
                           "allowed: prob >= 0")
        rows = self.prob.sum(-1)
        worst = rows.flatten()[(rows - 1).abs().argmax()]
        if not torch.allclose(rows, torch.ones_like(rows), atol=atol):
            raise MDPError(f"prob: transition rows must sum to one (worst row sums to {float(worst):.6f}); "
                           f"allowed: within {atol:g} of 1")
        if not torch.isfinite(self.reward).all():
            bad = self.reward[~torch.isfinite(self.reward)].flatten()[0]
            raise MDPError(f"reward: non-finite reward {float(bad)}; allowed: finite rewards")
        if not torch.isfinite(self.start).all() or (self.start < 0).any():
            raise MDPError(f"start: start probabilities must be finite and >= 0 (min {float(self.start.min()):.6g}); "
                           "allowed: start >= 0")
        totals = self.start.sum(-1)
        if not torch.allclose(totals, torch.ones_like(totals), atol=atol):
            worst = totals[(totals - 1).abs().argmax()]
            raise MDPError(f"start: start distributions must sum to one (worst sums to {float(worst):.6f}); "
                           f"allowed: within {atol:g} of 1")
        on_terminal = self.start.masked_fill(~self.terminal, 0)
        if (on_terminal > 0).any():
            i, j = divmod(int(on_terminal.flatten().argmax()), s)
            raise MDPError(f"start: start distributions put mass on terminal states "
                           f"(MDP {i}, state {j}: {float(on_terminal[i, j]):.6g}); "
                           "allowed: start mass on non-terminal states only")
        bad_absorb = ~((self.absorb >= 0) & (self.absorb < 1))  # NaN counts as bad
        if bad_absorb.any():
            value = float(self.absorb[bad_absorb][0])
            raise MDPError(f"absorb: absorb must lie in [0, 1) (got {value}); allowed: 0 <= absorb < 1")
        if self.features is not None and (self.features.dim() != 3 or self.features.shape[:2] != (n, s)):
            raise MDPError(f"features: shape {tuple(self.features.shape)} is not [N, S, F]; "
                           f"allowed: ({n}, {s}, F)")
        return self

    # ---- batch manipulation ------------------------------------------------------

    def select(self, index: Tensor) -> TabularMDP:
        """The MDPs at ``index`` (repeats allowed: one copy per seed or variant)."""
        return self._map(lambda t: t.index_select(0, index))

    def to(self, dtype: torch.dtype) -> TabularMDP:
        """Floating tensors cast to ``dtype`` (float64 for exact checks)."""
        return self._map(lambda t: t.to(dtype), FLOAT_FIELDS)

    def on(self, device: torch.device | str) -> TabularMDP:
        """Every tensor moved to ``device``: the tensor code path runs wherever its inputs are."""
        return self._map(lambda t: t.to(device))

    def rows(self, start: int, stop: int) -> TabularMDP:
        """The MDPs ``start:stop`` as views (no copy)."""
        return self._map(lambda t: t[start:stop])

    def _map(self, fn: Callable[[Tensor], Tensor], fields: tuple[str, ...] = PER_MDP_FIELDS) -> TabularMDP:
        """A copy with ``fn`` applied to the per-MDP tensors named in ``fields`` (absent ones stay absent)."""
        return replace(self, **{f: None if getattr(self, f) is None else fn(getattr(self, f)) for f in fields})

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

    @cached_property
    def band(self) -> tuple[int, int]:
        """Lower and upper bandwidth of the transitions over the batch (how far from the diagonal
        ``I - P_pi`` can be non-zero), which decides whether its solves may use a banded factorisation."""
        return band_of(self.succ)

    def systems(self, policy: Tensor, gamma: float = 1.0) -> Systems:
        """``I - gamma P_pi``, the matrix every exact evaluation solves with, for policies ``[N, S, A]``."""
        n, s, a, k = self.succ.shape
        w = policy.unsqueeze(-1) * self.prob
        w = w * self.continuation().gather(1, self.succ.reshape(n, -1)).reshape(self.succ.shape)
        return Systems(self.succ.reshape(n, s, a * k), w.reshape(n, s, a * k), gamma, self.band)

    def occupancy(self, policy: Tensor) -> Tensor:
        """Expected visits per state in one episode, ``d = mu (I - P_pi)^-1``, ``[N, S]``."""
        occ, _ = solve(self.systems(self._checked(policy)), self.start, None)
        return occ.to(torch.promote_types(policy.dtype, self.dtype))

    def evaluate(self, policy: Tensor, gamma: float = 1.0, reward: Tensor | None = None) -> Tensor:
        """``V^pi(s)`` of an expected per-(s, a) reward (default: the MDP's), ``[N, S]``."""
        r = self.expected_reward() if reward is None else reward.expand_as(policy)
        _, values = solve(self.systems(self._checked(policy), gamma), None, (policy * r).sum(-1))
        return values.to(torch.promote_types(policy.dtype, r.dtype))

    def episode_return(self, policy: Tensor, gamma: float = 1.0) -> Tensor:
        """Expected return from the start distribution, ``[N]``."""
        return (self.start * self.evaluate(policy, gamma)).sum(-1)

    def occupancy_and_return(self, policy: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`occupancy` and :meth:`episode_return` (gamma 1) from one factorisation of
        ``I - P_pi``: evaluating students needs both, and the factorisation is most of the cost."""
        occ, values = solve(self.systems(self._checked(policy)), self.start,
                            (policy * self.expected_reward()).sum(-1))
        dtype = torch.promote_types(policy.dtype, self.dtype)
        return occ.to(dtype), (self.start * values.to(dtype)).sum(-1)

    def _checked(self, policy: Tensor) -> Tensor:
        if policy.shape[0] != self.n_mdps:
            raise MDPError(f"a per-MDP tensor has shape {tuple(policy.shape)}; allowed: one row per MDP "
                           f"({self.n_mdps} rows)")
        return policy

    def uniform_states(self) -> Tensor:
        """Uniform weights over the non-terminal states, ``[N, S]``."""
        w = (~self.terminal).to(self.dtype)
        return w / w.sum(-1, keepdim=True)


"""Linear solves with ``I - gamma P_pi``, the systems every exact quantity of a tabular MDP comes from.

Two factorisations give the same numbers to float64 rounding:

- dense: batched LU of the ``[S, S]`` matrices, by slices of the batch so that a thousand 20x20 grid
  worlds do not need gigabytes at once. Differentiable, so exact updates and their Jacobians go through it.
- banded: LAPACK's banded LU (``dgbtrf``), one MDP at a time. A grid world only moves between neighbouring
  cells, so its matrix is zero beyond ``size`` places from the diagonal; the banded factorisation costs
  ``S * bandwidth^2`` instead of ``S^3`` (about 100x less on 20x20 grid worlds) and never builds the dense
  matrix. Used where nothing needs a gradient through the solve and the band is narrow.

Each MDP's system is solved on its own numbers whatever else is in the batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from scipy.linalg import lapack
from torch import Tensor

# the most numbers the dense [S, S] systems of one batch slice may hold: 512 MiB in float64 (the solve's
# working copies take a few times that)
SOLVE_ENTRIES = 2**26
# the banded path pays off when the band is at most this fraction of the states
BAND_FRACTION = 0.25
# MDPs whose band storage is built at once
BAND_CHUNK = 64


_DENSE_ONLY = [False]


@contextmanager
def dense_only() -> Iterator[None]:
    """Solve every system densely inside the block: the engine's previous path, which benchmarks time the
    banded one against."""
    before = _DENSE_ONLY[0]
    _DENSE_ONLY[0] = True
    try:
        yield
    finally:
        _DENSE_ONLY[0] = before


@dataclass(frozen=True)
class Systems:
    """``I - gamma P`` for a batch, given by its continuing transitions.

    ``succ`` ``[N, S, M]`` successor ids and ``weight`` ``[N, S, M]`` their probabilities under the policy
    (times the chance that the episode goes on), summed over actions and successors.
    """

    succ: Tensor
    weight: Tensor
    gamma: float
    band: tuple[int, int]

    @property
    def n_states(self) -> int:
        """States per system."""
        return self.succ.shape[1]

    def dense(self) -> Tensor:
        """``[N, S, S]`` float64 ``I - gamma P``."""
        n, s, _ = self.succ.shape
        p = torch.zeros(n, s * s, dtype=torch.float64, device=self.weight.device)
        rows = torch.arange(s, device=self.succ.device).view(1, s, 1) * s
        p.scatter_add_(1, (rows + self.succ).reshape(n, -1), self.weight.to(torch.float64).reshape(n, -1))
        eye = torch.eye(s, dtype=torch.float64, device=p.device)
        return eye - self.gamma * p.view(n, s, s)

    def banded(self) -> bool:
        """Whether the banded factorisation applies and is the cheaper one."""
        lower, upper = self.band
        return self.weight.device.type == "cpu" and 2 * lower + upper + 1 <= BAND_FRACTION * self.n_states


def band_of(succ: Tensor) -> tuple[int, int]:
    """Lower and upper bandwidth of the transition pattern ``succ`` ``[N, S, ...]`` over the whole batch."""
    s = succ.shape[1]
    offset = succ.reshape(succ.shape[0], s, -1) - torch.arange(s, device=succ.device).view(1, s, 1)
    return max(0, -int(offset.min())), max(0, int(offset.max()))


def solve(systems: Systems, left: Tensor | None, right: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
    """``left (I - gamma P)^-1`` and ``(I - gamma P)^-1 right`` for per-MDP vectors ``[N, S]`` (either may
    be None), in float64, from one factorisation per MDP."""
    needs_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (systems.weight, left, right))
    if systems.banded() and not needs_grad and not _DENSE_ONLY[0]:
        return _banded(systems, left, right)
    return _dense(systems, left, right)


def _dense(systems: Systems, left: Tensor | None, right: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
    n = systems.succ.shape[0]
    size = max(1, SOLVE_ENTRIES // systems.n_states**2)
    lefts: list[Tensor] = []
    rights: list[Tensor] = []
    for i in range(0, n, size):
        part = Systems(systems.succ[i:i + size], systems.weight[i:i + size], systems.gamma, systems.band)
        lu, pivots = torch.linalg.lu_factor(part.dense())
        if left is not None:
            rhs = left[i:i + size].to(torch.float64).unsqueeze(-1)
            lefts.append(torch.linalg.lu_solve(lu, pivots, rhs, adjoint=True).squeeze(-1))
        if right is not None:
            rhs = right[i:i + size].to(torch.float64).unsqueeze(-1)
            rights.append(torch.linalg.lu_solve(lu, pivots, rhs).squeeze(-1))
    return (torch.cat(lefts) if lefts else None), (torch.cat(rights) if rights else None)


def _banded(systems: Systems, left: Tensor | None, right: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
    """One ``dgbtrf`` and up to two ``dgbtrs`` per MDP on LAPACK band storage, built from the successor
    lists without the dense matrix: ``A[i, j]`` sits at ``ab[kl + ku + i - j, j]``."""
    lower, upper = systems.band
    n, s, _ = systems.succ.shape
    height = 2 * lower + upper + 1
    diag = lower + upper
    rows = torch.arange(s).view(1, s, 1)
    lhs = None if left is None else left.detach().to(torch.float64).cpu().numpy()
    rhs = None if right is None else right.detach().to(torch.float64).cpu().numpy()
    out_left = np.empty((n, s)) if lhs is not None else None
    out_right = np.empty((n, s)) if rhs is not None else None
    for lo in range(0, n, BAND_CHUNK):  # a slice at a time keeps the band storage in cache
        cols = systems.succ[lo:lo + BAND_CHUNK].to(torch.int64)
        m = cols.shape[0]
        # one MDP's band as [S, height] in C order is LAPACK's Fortran-ordered [height, S]
        ab = torch.zeros(m, s * height, dtype=torch.float64)
        ab.scatter_add_(1, (cols * height + diag + rows - cols).reshape(m, -1),
                        (-systems.gamma * systems.weight[lo:lo + BAND_CHUNK].detach().to(torch.float64)).reshape(m, -1))
        ab.view(m, s, height)[:, :, diag] += 1.0
        bands = ab.view(m, s, height).numpy()
        for j in range(m):
            k = lo + j
            lu, piv, info = lapack.dgbtrf(bands[j].T, lower, upper, overwrite_ab=1)
            if info != 0:  # singular (a policy that never ends): the dense solve says so as it always has
                one = Systems(systems.succ[k:k + 1], systems.weight[k:k + 1], systems.gamma, systems.band)
                a, b = _dense(one, None if left is None else left[k:k + 1],
                              None if right is None else right[k:k + 1])
                if out_left is not None and a is not None:
                    out_left[k] = a[0].numpy()
                if out_right is not None and b is not None:
                    out_right[k] = b[0].numpy()
                continue
            if out_left is not None and lhs is not None:
                out_left[k] = lapack.dgbtrs(lu, lower, upper, lhs[k][:, None], piv, trans=1)[0][:, 0]
            if out_right is not None and rhs is not None:
                out_right[k] = lapack.dgbtrs(lu, lower, upper, rhs[k][:, None], piv)[0][:, 0]
    return (None if out_left is None else torch.from_numpy(out_left),
            None if out_right is None else torch.from_numpy(out_right))

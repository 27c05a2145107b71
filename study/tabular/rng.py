"""Counter-based random numbers: one independent stream per batch instance.

A batched engine that drew from one shared generator would give an MDP
different numbers depending on what else is in its batch. Here every draw is
a hash of (instance key, stream, iteration, step, index), so an instance gets
the same numbers alone or in a batch of a thousand, on any machine.
"""

from __future__ import annotations

import torch
from torch import Tensor

_M32 = 0xFFFFFFFF
_GOLDEN = 0x9E3779B9
_SALT = 0x85EBCA6B

# Purpose salts: large distinct constants, so streams for different purposes
# (and the small counters folded in after them) never share a key by design.
START = 0x5A0C3E11
STEP = 0x1B873593
INIT = 0x6C8E9CF5
NOISE = 0x2F4A7C15
ROLLOUT = 0x7E3B1D29
ENGINE = 0x3C6EF372


def _mul32(x: Tensor, c: int) -> Tensor:
    """``(x * c) mod 2^32`` for uint32 values held in int64, without int64 overflow."""
    lo = x & 0xFFFF
    hi = x >> 16
    return (((hi * c) & _M32) << 16) + lo * c & _M32


def mix32(x: Tensor) -> Tensor:
    """A 32-bit avalanche hash (lowbias32) on int64 tensors holding uint32 values."""
    x = x & _M32
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def _spread(value: Tensor | int) -> Tensor:
    """A counter hashed on its own, so that keys and counters mix non-linearly."""
    if isinstance(value, int):
        value = torch.tensor(value, dtype=torch.int64)
    return mix32(value * _GOLDEN + _SALT)


def combine(key: Tensor, value: Tensor | int) -> Tensor:
    """Fold one more counter into a key: ``mix(key ^ mix(value))``.

    Not linear in the key (as adding a Weyl step would be), so two keys never
    read the same stream shifted by a few draws.
    """
    return mix32(key ^ _spread(value))


def instance_keys(*parts: Tensor | int) -> Tensor:
    """Keys for a batch from per-instance identifiers (seed, MDP id, ...)."""
    tensors = [p for p in parts if isinstance(p, Tensor)]
    shape = tensors[0].shape if tensors else ()
    key = torch.zeros(shape, dtype=torch.int64)
    for p in parts:
        key = combine(key, p.to(torch.int64) if isinstance(p, Tensor) else p)
    return key


def to_uniform(key: Tensor, dtype: torch.dtype = torch.float64) -> Tensor:
    """Hashed keys to floats in (0, 1); keep float64 (float32 rounds the top keys to 1.0)."""
    return ((key.to(torch.float64) + 0.5) / 4294967296.0).to(dtype)


class CounterRNG:
    """Uniform and normal draws for ``N`` instances keyed by ``keys`` ``[N]``."""

    def __init__(self, keys: Tensor) -> None:
        self.keys = keys.to(torch.int64)

    def key(self, *counters: int) -> Tensor:
        """The per-instance key of a sub-stream, ``[N]``: derive once, draw from it often."""
        key = self.keys
        for c in counters:
            key = combine(key, c)
        return key

    def uniform(self, *counters: int, shape: tuple[int, ...] = (), dtype: torch.dtype = torch.float64) -> Tensor:
        """Draws in (0, 1) of shape ``[N, *shape]``."""
        key = self.key(*counters)
        if shape:
            return draws(key, 0, int(torch.tensor(shape).prod()), dtype).view(-1, *shape)
        return to_uniform(key, dtype)

    def normal(self, *counters: int, shape: tuple[int, ...] = (), dtype: torch.dtype = torch.float64) -> Tensor:
        """Standard normal draws by Box-Muller on two uniform streams."""
        u1 = self.uniform(*counters, 0, shape=shape)
        u2 = self.uniform(*counters, 1, shape=shape)
        return (torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2 * torch.pi * u2)).to(dtype)


def draws(key: Tensor, step: int, count: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """``count`` uniforms per instance for one step of a sub-stream: ``[N, count]``.

    One hash per draw, cheap enough for the inner loop of a rollout.
    """
    idx = torch.arange(step * count, (step + 1) * count, dtype=torch.int64)
    return to_uniform(mix32(key.unsqueeze(-1) ^ _spread(idx)), dtype)


def categorical(probs: Tensor, u: Tensor) -> Tensor:
    """Inverse-CDF draw from ``probs`` ``[B, K]`` with uniforms ``u`` ``[B]``."""
    return inverse_cdf(probs.cumsum(-1), u)


def inverse_cdf(cdf: Tensor, u: Tensor) -> Tensor:
    """Draw from cumulative (unnormalised) probabilities ``[B, K]``: precompute the
    cumulative sums once when the same table is drawn from many times."""
    idx = (cdf < (u * cdf[:, -1]).unsqueeze(-1)).sum(-1)
    return idx.clamp(max=cdf.shape[-1] - 1)

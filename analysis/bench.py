"""`distill bench stats`: how fast the analysis's stratified bootstrap resamples, against a loop that
resamples one at a time."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass

import numpy as np
from scipy import stats as sp

from analysis.stats import Strata, bootstrap_distribution, iqm, stream


def _machine() -> str:
    """What the numbers were measured on."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return f"{platform.machine()} {platform.processor() or ''} {cores} cores, numpy {np.__version__}".replace("  ", " ")


@dataclass
class StatsBench:
    """Stratified-bootstrap resamples of the IQM per second, vectorised and one at a time."""

    reps: int
    seeds: int
    envs: int
    variants: int
    seconds: float
    resamples_per_second: float
    loop_reps: int
    loop_resamples_per_second: float
    speedup: float
    machine: str


def bench_stats(reps: int = 50_000, seeds: int = 10, envs: int = 10, variants: int = 12,
                loop_reps: int = 2_000) -> StatsBench:
    """Time ``reps`` resamples per variant of a synthetic heavy-tailed score matrix."""
    rng = np.random.default_rng(0)
    scores = rng.standard_t(3, size=(variants, seeds, envs)) + rng.normal(size=(variants, 1, envs))
    strata = np.tile(np.arange(envs), seeds)
    data = [Strata.of(scores[v].reshape(-1), strata) for v in range(variants)]
    start = time.perf_counter()
    for v, d in enumerate(data):
        bootstrap_distribution(d, iqm, reps, stream(0, "bench", str(v)))
    seconds = time.perf_counter() - start
    loop_rng = np.random.default_rng(1)
    start = time.perf_counter()
    for _ in range(loop_reps):  # the same resample, one at a time
        idx = np.concatenate([lo + loop_rng.integers(0, hi - lo, hi - lo)
                              for lo, hi in zip(data[0].offsets[:-1], data[0].offsets[1:], strict=True)])
        sp.trim_mean(data[0].values[idx], 0.25)
    loop_rate = loop_reps / (time.perf_counter() - start)
    rate = reps * variants / seconds
    return StatsBench(reps, seeds, envs, variants, seconds, rate, loop_reps, loop_rate, rate / loop_rate,
                      _machine())

"""Interval estimates, comparisons and tests on run-level scores (vectorised numpy/scipy; seeded draws).

Scores come as a 1-D array of runs with a parallel array of strata (the task
each run belongs to). Bootstrap resamples draw runs with replacement *within*
each stratum, so every task keeps its weight (Agarwal et al. 2021's
stratified bootstrap). Every random draw comes from a generator seeded by the
caller's seed and the name of what is resampled, so adding a variant to a study
does not move another variant's interval.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special, stats

Statistic = Callable[[np.ndarray], np.ndarray]  # reduces the last axis
CHUNK = 4_000_000  # resampled values held at once


# ---- aggregate statistics (reduce the last axis) -----------------------------------------------------


def mean(x: np.ndarray) -> np.ndarray:
    """The mean over runs: efficient, but pulled by a few runs far off the rest."""
    return np.mean(x, axis=-1)


def run_median(x: np.ndarray) -> np.ndarray:
    """The median over runs, pooled across tasks (robust to a few runs far off the rest): for quantities such as
    steps to a threshold, where "never reached" is infinite and a mean is not defined."""
    return np.median(x, axis=-1)


@dataclass(frozen=True)
class PerTask:
    """A statistic over tasks of each task's mean score, as rliable (Agarwal et al. 2021) defines its median:
    the runs' grouping into tasks is needed, so the statistic is bound to it (:meth:`on`) before use."""

    reduce: Callable[[np.ndarray], np.ndarray]  # over the tasks' means (last axis)

    def on(self, task: np.ndarray) -> Statistic:
        """The statistic for runs whose task index is ``task`` (sorted, as :class:`Strata` holds runs)."""
        starts = np.flatnonzero(np.r_[True, task[1:] != task[:-1]]) if len(task) else np.zeros(0, dtype=int)
        counts = np.diff(np.r_[starts, len(task)])

        def statistic(x: np.ndarray) -> np.ndarray:
            return self.reduce(np.add.reduceat(x, starts, axis=-1) / counts)
        return statistic


#: the median over tasks of each task's mean over its runs (rliable's); with one task it is the mean
median = PerTask(lambda means: np.median(means, axis=-1))


def iqm(x: np.ndarray) -> np.ndarray:
    """Interquartile mean: the mean of the middle 50% (robust like the median, efficient like the mean)."""
    return stats.trim_mean(x, 0.25, axis=-1)


def optimality_gap(x: np.ndarray, target: float = 1.0) -> np.ndarray:
    """How far runs fall short of ``target`` on average (scores above it count as reaching it)."""
    return np.mean(np.maximum(target - x, 0.0), axis=-1)


AGGREGATES: dict[str, Statistic | PerTask] = {"mean": mean, "median": median, "iqm": iqm,
                                              "optimality_gap": optimality_gap}


def stream(seed: int, *names: str) -> np.random.Generator:
    """A generator keyed by the seed and names (not by position in a loop)."""
    return np.random.default_rng([seed, *(zlib.crc32(n.encode()) for n in names)])


# ---- stratified bootstrap -----------------------------------------------------------------------------


@dataclass
class Strata:
    """Runs sorted by stratum (task) and, within it, by cluster (environment instance: a generated MDP).

    ``values[offsets[k]:offsets[k+1]]`` are stratum k's runs; ``clusters`` gives each run's cluster as
    an index into ``cluster_start``/``cluster_size`` (one cluster per stratum when none are given).
    """

    values: np.ndarray
    offsets: np.ndarray
    names: list[str]
    clusters: np.ndarray | None = None
    cluster_start: np.ndarray | None = None
    cluster_size: np.ndarray | None = None
    cluster_names: list[str] | None = None

    @classmethod
    def of(cls, values: Sequence[float], strata: Sequence[object] | None = None,
           clusters: Sequence[object] | None = None) -> Strata:
        """Runs sorted by their stratum and cluster labels; NaN scores are dropped, infinities (never reached) kept."""
        values = np.asarray(values, dtype=float)
        keys = np.zeros(len(values), dtype=int) if strata is None else np.asarray(strata)
        if len(keys) != len(values):
            raise ValueError(f"{len(values)} values but {len(keys)} strata labels")
        inner = np.zeros(len(values), dtype=int) if clusters is None else np.asarray(clusters)
        keep = ~np.isnan(values)  # infinities stay: "never reached" is a score for steps-to-threshold
        values, keys, inner = values[keep], keys[keep], inner[keep]
        names, inverse = np.unique(keys, return_inverse=True)
        inner_names, inner_code = np.unique(inner, return_inverse=True)
        order = np.lexsort((inner_code, inverse))
        counts = np.bincount(inverse, minlength=len(names))
        data = cls(values[order], np.concatenate([[0], np.cumsum(counts)]), [str(n) for n in names])
        if clusters is not None:
            pair = inverse[order] * (int(inner_code.max(initial=0)) + 1) + inner_code[order]
            _, first, code, size = np.unique(pair, return_index=True, return_inverse=True, return_counts=True)
            data.clusters, data.cluster_start, data.cluster_size = code, first, size
            data.cluster_names = [str(inner_names[c]) for c in inner_code[order][first]]
        return data

    @classmethod
    def of_runs(cls, runs: pd.DataFrame, value: str, sign: float = 1.0) -> Strata:
        """A runs frame's values stratified by ``task`` and clustered by ``instance`` (or ``mdp``): the
        environment instance (seeds share a tabular cell's MDPs, so its runs are not independent)."""
        column = "instance" if "instance" in runs else "mdp" if "mdp" in runs else None
        clusters = runs[column].to_numpy() if column else None
        return cls.of(sign * runs[value].to_numpy(dtype=float), runs["task"].astype(str).to_numpy(), clusters)

    def environments(self, k: int) -> dict[str, np.ndarray]:
        """Stratum k's runs by cluster name."""
        lo, hi = self.offsets[k], self.offsets[k + 1]
        if self.clusters is None:
            return {"": self.values[lo:hi]}
        out: dict[str, np.ndarray] = {}
        for c in np.unique(self.clusters[lo:hi]):
            start = self.cluster_start[c]
            out[self.cluster_names[c]] = self.values[start:start + self.cluster_size[c]]
        return out

    @property
    def n(self) -> int:
        """How many runs there are across all strata."""
        return len(self.values)

    @property
    def clustered(self) -> bool:
        """Whether some stratum has more than one cluster (then clusters are resampled too)."""
        if self.clusters is None:
            return False
        per_stratum = [len(np.unique(self.clusters[lo:hi])) for lo, hi in zip(self.offsets[:-1], self.offsets[1:],
                                                                              strict=True)]
        return max(per_stratum, default=0) > 1

    def resample(self, reps: int, rng: np.random.Generator) -> np.ndarray:
        """``[reps, n]`` values: within each stratum, clusters drawn with replacement, then each drawn
        cluster's runs drawn with replacement (one cluster per stratum: plain stratified resampling).
        Slot j of a stratum keeps the size of its original cluster, so every resample has n values."""
        cols = []
        for lo, hi in zip(self.offsets[:-1], self.offsets[1:], strict=True):
            if self.clusters is None:
                cols.append(lo + rng.integers(0, hi - lo, size=(reps, hi - lo)))
                continue
            own = self.clusters[lo:hi]
            ids, slot = np.unique(own, return_inverse=True)
            chosen = ids[rng.integers(0, len(ids), size=(reps, len(ids)))][:, slot]
            draw = (rng.random((reps, hi - lo)) * self.cluster_size[chosen]).astype(np.int64)
            cols.append(self.cluster_start[chosen] + draw)
        return self.values[np.concatenate(cols, axis=1)]

    def chunks(self, reps: int, rng: np.random.Generator) -> list[np.ndarray]:
        """The resamples in blocks that keep memory bounded."""
        size = max(1, CHUNK // max(self.n, 1))
        return [self.resample(min(size, reps - start), rng) for start in range(0, reps, size)]


def bootstrap_distribution(strata: Strata, statistic: Statistic, reps: int, rng: np.random.Generator) -> np.ndarray:
    """The statistic over ``reps`` stratified resamples, ``[reps]``."""
    return np.concatenate([statistic(block) for block in strata.chunks(reps, rng)])


JACKKNIFE_UNITS = 5_000  # above this many units BCa is left out (its jackknife costs units x runs)


def jackknife(values: np.ndarray, statistic: Statistic) -> np.ndarray:
    """The statistic with each run left out in turn, ``[n]`` (in blocks of rows)."""
    n = len(values)
    out = np.empty(n)
    rows = max(1, CHUNK // max(n, 1))
    for start in range(0, n, rows):
        idx = np.arange(start, min(n, start + rows))
        keep = np.arange(n - 1)[None, :] + (np.arange(n - 1)[None, :] >= idx[:, None])
        out[idx] = statistic(values[keep])
    return out


def cluster_jackknife(data: Strata, statistic: Statistic) -> np.ndarray:
    """The statistic with each cluster left out in turn (the units the bootstrap resamples first)."""
    codes = data.clusters
    return np.array([statistic(data.values[codes != c]) for c in range(len(data.cluster_start))])


def percentile_interval(boot: np.ndarray, level: float) -> tuple[float, float]:
    """The central ``level`` interval of the bootstrap distribution's quantiles."""
    alpha = (1 - level) / 2
    lo, hi = np.quantile(boot, [alpha, 1 - alpha], method=_method(boot))
    return float(lo), float(hi)


def _method(boot: np.ndarray) -> str:
    """Interpolate between resamples unless some are infinite ("never reached"), which do not interpolate."""
    return "linear" if np.isfinite(boot).all() else "inverted_cdf"


def bca_interval(boot: np.ndarray, estimate: float, jack: np.ndarray, level: float) -> tuple[float, float]:
    """Bias-corrected and accelerated percentiles (Efron 1987), as scipy.stats.bootstrap computes them."""
    prop = (np.mean(boot < estimate) + np.mean(boot <= estimate)) / 2  # ties count half, as in scipy
    prop = np.clip(prop, 0.5 / len(boot), 1 - 0.5 / len(boot))  # a degenerate bootstrap keeps a finite z0
    z0 = special.ndtri(prop)
    d = jack.mean() - jack
    den = 6.0 * np.sum(d**2) ** 1.5
    a = np.sum(d**3) / den if den > 0 else 0.0
    alpha = (1 - level) / 2
    quantiles = []
    for z in (special.ndtri(alpha), special.ndtri(1 - alpha)):
        quantiles.append(special.ndtr(z0 + (z0 + z) / (1 - a * (z0 + z))))
    lo, hi = np.quantile(boot, quantiles, method=_method(boot))
    return float(lo), float(hi)


@dataclass(frozen=True)
class Interval:
    """A point estimate with the low and high ends of its interval (NaN where none could be drawn)."""

    estimate: float
    lo: float
    hi: float


def _task_index(data: Strata) -> np.ndarray:
    """Each run's stratum (task) as an index, in the order :class:`Strata` holds the runs."""
    return np.repeat(np.arange(len(data.names)), np.diff(data.offsets))


def _leave_one_out(data: Strata, statistic: PerTask) -> np.ndarray:
    """A per-task statistic with each unit (cluster, or run) left out in turn, regrouping what is left. A unit
    that is its task's only one is not left out: the stratified bootstrap never drops a task either."""
    task = _task_index(data)
    if data.clustered:
        assert data.clusters is not None
        units = [data.clusters == c for c in range(len(data.cluster_start))]
    else:
        units = [np.arange(data.n) == i for i in range(data.n)]
    per_task = [np.unique(task[u]) for u in units]
    alone = [bool(np.all(np.isin(task, t) <= u)) for u, t in zip(units, per_task, strict=True)]
    return np.array([statistic.on(task[~u])(data.values[~u]) for u, only in zip(units, alone, strict=True)
                     if not only])


def estimate(values: Sequence[float], strata: Sequence[object] | None = None,
             statistic: Statistic | PerTask = mean) -> float:
    """The statistic's point estimate over runs grouped by ``strata`` (the tasks), without an interval."""
    data = Strata.of(values, strata)
    if data.n == 0:
        return float("nan")
    bound = statistic.on(_task_index(data)) if isinstance(statistic, PerTask) else statistic
    return float(bound(data.values))


def _bounds(data: Strata, statistic: Statistic | PerTask, reps: int, level: float, rng: np.random.Generator,
            bca: bool = True) -> tuple[float, float, float, float, float]:
    """Estimate, percentile interval and (with ``bca``) BCa interval; no interval from fewer than two runs."""
    if data.n == 0:
        return (np.nan,) * 5
    bound = statistic.on(_task_index(data)) if isinstance(statistic, PerTask) else statistic
    est = float(bound(data.values))
    if data.n < 2:
        return est, np.nan, np.nan, np.nan, np.nan
    boot = bootstrap_distribution(data, bound, reps, rng)  # a resample keeps each stratum's run count
    lo, hi = percentile_interval(boot, level)
    blo = bhi = np.nan
    units = len(data.cluster_start) if data.clustered and data.cluster_start is not None else data.n
    if bca and units <= JACKKNIFE_UNITS:
        if isinstance(statistic, PerTask):
            jack = _leave_one_out(data, statistic)
        elif data.clustered:
            jack = cluster_jackknife(data, statistic)
        else:
            jack = jackknife(data.values, statistic)
        if len(jack) > 1:  # every task with a single unit: nothing to leave out, no BCa interval
            blo, bhi = bca_interval(boot, est, jack, level)
    return est, lo, hi, blo, bhi


def interval(values: Sequence[float], strata: Sequence[object] | None = None, statistic: Statistic | PerTask = mean, *,
             reps: int = 2000, level: float = 0.95, method: str = "percentile", seed: int = 0,
             name: str = "", clusters: Sequence[object] | None = None) -> Interval:
    """Point estimate and stratified (two-level, with ``clusters``) bootstrap interval of ``statistic``,
    percentile or BCa."""
    if method not in ("percentile", "bca"):
        raise ValueError(f"interval method {method!r}; allowed: percentile, bca")
    est, lo, hi, blo, bhi = _bounds(Strata.of(values, strata, clusters), statistic, reps, level,
                                    stream(seed, "interval", name), bca=method == "bca")
    return Interval(est, lo, hi) if method == "percentile" else Interval(est, blo, bhi)


def aggregates(runs: pd.DataFrame, value: str, arms: Sequence[str], *, statistics: Sequence[str] = tuple(AGGREGATES),
               reps: int = 2000, level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Per arm and statistic: the estimate with percentile and BCa intervals over runs, stratified by task
    (and resampling environment instances, then seeds, where a task has several).

    Columns: arm, statistic, estimate, lo, hi (percentile), bca_lo, bca_hi, runs, tasks.
    """
    rows = []
    for arm in arms:
        data = Strata.of_runs(runs[runs["arm"] == arm], value)
        for name in statistics:
            est, lo, hi, blo, bhi = _bounds(data, AGGREGATES[name], reps, level,
                                            stream(seed, "aggregate", name, arm))
            rows.append({"arm": arm, "statistic": name, "estimate": est, "lo": lo, "hi": hi, "bca_lo": blo,
                         "bca_hi": bhi, "runs": data.n, "tasks": len(data.names)})
    return pd.DataFrame(rows)


# ---- probability of improvement -----------------------------------------------------------------------


def _u_fraction(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) + P(X = Y)/2 for rows of samples ``x [..., n]``, ``y [..., m]`` (Mann-Whitney U / nm)."""
    n, m = x.shape[-1], y.shape[-1]
    ranks = stats.rankdata(np.concatenate([x, y], axis=-1), axis=-1)
    u = ranks[..., :n].sum(-1) - n * (n + 1) / 2
    return u / (n * m)


def _resampled_u(ex: dict[str, np.ndarray], ey: dict[str, np.ndarray], envs: list[str], reps: int,
                 rng: np.random.Generator) -> np.ndarray:
    """``[reps, environments]``: U / nm of each environment after resampling X's and Y's runs in it.

    Environments with the same run counts are done together: a tabular task's MDPs all have one run
    per seed, so a thousand MDPs cost one vectorised comparison instead of a thousand."""
    out = np.empty((reps, len(envs)))
    groups: dict[tuple[int, int], list[int]] = {}
    for k, e in enumerate(envs):
        groups.setdefault((len(ex[e]), len(ey[e])), []).append(k)
    for (n, m), members in groups.items():
        xs = np.stack([ex[envs[k]] for k in members])  # [E, n]
        ys = np.stack([ey[envs[k]] for k in members])
        rows = max(1, CHUNK // (len(members) * max(n * m, n + m)))
        for start in range(0, reps, rows):
            r = min(rows, reps - start)
            bx = np.take_along_axis(xs[None], rng.integers(0, n, size=(r, len(members), n)), axis=2)
            by = np.take_along_axis(ys[None], rng.integers(0, m, size=(r, len(members), m)), axis=2)
            if n * m <= 256:
                diff = bx[..., :, None] - by[..., None, :]
                u = (diff > 0).mean((-2, -1)) + 0.5 * (diff == 0).mean((-2, -1))
            else:
                u = _u_fraction(bx, by)
            out[start:start + r, members] = u
    return out


def probability_of_improvement(x: Strata, y: Strata, *, reps: int = 2000, level: float = 0.95,
                               rng: np.random.Generator | None = None) -> Interval:
    """P(a run of X beats a run of Y on the same environment), averaged over the environments of each
    task and then over the tasks both have (Agarwal et al. 2021), with a bootstrap percentile interval.

    An environment is a task, or a task's environment instance (a generated MDP) when the runs are
    clustered: then the resample draws the common instances with replacement (the same draw for X and Y,
    which ran on the same MDPs) and, within each, X's and Y's runs independently.
    """
    common = [t for t in x.names if t in y.names]
    if not common:
        return Interval(np.nan, np.nan, np.nan)
    rng = rng or np.random.default_rng(0)
    point, boot = [], []
    for task in common:
        ex, ey = x.environments(x.names.index(task)), y.environments(y.names.index(task))
        envs = [e for e in ex if e in ey]
        if not envs:
            continue
        per_env = [_u_fraction(ex[e][None], ey[e][None])[0] for e in envs]
        table = _resampled_u(ex, ey, envs, reps, rng)
        pick = rng.integers(0, len(envs), size=(reps, len(envs))) if len(envs) > 1 else np.zeros((reps, 1), int)
        point.append(np.mean(per_env))
        boot.append(np.take_along_axis(table, pick, axis=1).mean(1))
    if not point:
        return Interval(np.nan, np.nan, np.nan)
    lo, hi = percentile_interval(np.mean(boot, axis=0), level)
    return Interval(float(np.mean(point)), lo, hi)


def improvement_matrix(runs: pd.DataFrame, value: str, arms: Sequence[str], *, higher_is_better: bool = True,
                       reps: int = 2000, level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """P(x > y) for every ordered pair of arms (x != y): columns x, y, poi, lo, hi.

    Each unordered pair is resampled once; P(y > x) is its complement on the same draws.
    """
    sign = 1.0 if higher_is_better else -1.0
    data = {a: Strata.of_runs(runs[runs["arm"] == a], value, sign) for a in arms}
    rows = []
    for i, a in enumerate(arms):
        for b in arms[i + 1:]:
            iv = probability_of_improvement(data[a], data[b], reps=reps, level=level,
                                            rng=stream(seed, "poi", a, b))
            rows.append({"x": a, "y": b, "poi": iv.estimate, "lo": iv.lo, "hi": iv.hi})
            rows.append({"x": b, "y": a, "poi": 1 - iv.estimate, "lo": 1 - iv.hi, "hi": 1 - iv.lo})
    return pd.DataFrame(rows, columns=["x", "y", "poi", "lo", "hi"])


# ---- performance profiles -----------------------------------------------------------------------------


def performance_profile(runs: pd.DataFrame, value: str, arms: Sequence[str], taus: np.ndarray, *,
                        reps: int = 2000, level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Fraction of runs scoring above each tau, with a stratified-bootstrap band: arm, tau, fraction, lo, hi."""
    taus = np.asarray(taus, dtype=float)
    rows = []
    for arm in arms:
        data = Strata.of_runs(runs[runs["arm"] == arm], value)
        if data.n == 0:
            continue

        def above(x: np.ndarray) -> np.ndarray:
            s = np.sort(x, axis=-1)
            flat = s.reshape(-1, s.shape[-1])
            counts = np.stack([np.searchsorted(r, taus, side="right") for r in flat])
            return 1.0 - counts.reshape(*s.shape[:-1], len(taus)) / s.shape[-1]

        point = above(data.values)
        boot = np.concatenate([above(block) for block in data.chunks(reps, stream(seed, "profile", arm))])
        alpha = (1 - level) / 2
        lo, hi = np.quantile(boot, [alpha, 1 - alpha], axis=0)
        rows.append(pd.DataFrame({"arm": arm, "tau": taus, "fraction": point, "lo": lo, "hi": hi}))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(
        columns=["arm", "tau", "fraction", "lo", "hi"])


# ---- pairwise tests and effect sizes ------------------------------------------------------------------


def hedges_g(x: np.ndarray, y: np.ndarray) -> float:
    """Standardised mean difference with the small-sample correction J = 1 - 3 / (4 (n + m) - 9)."""
    n, m = len(x), len(y)
    if n < 2 or m < 2:
        return float("nan")
    pooled = np.sqrt(((n - 1) * np.var(x, ddof=1) + (m - 1) * np.var(y, ddof=1)) / (n + m - 2))
    if pooled == 0:
        return float("nan")
    return float((np.mean(x) - np.mean(y)) / pooled * (1 - 3 / (4 * (n + m) - 9)))


def cliffs_delta(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y) - P(X < Y), from ranks (no n x m comparison matrix)."""
    if len(x) == 0 or len(y) == 0:
        return float("nan")
    return float(2 * _u_fraction(np.asarray(x, float)[None], np.asarray(y, float)[None])[0] - 1)


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment (family-wise error), NaNs left out of the family."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="holm")[1]
    return out


def pairwise_tests(runs: pd.DataFrame, value: str, arms: Sequence[str], *, baseline: str | None = None,
                   by_task: bool = True) -> pd.DataFrame:
    """Welch's t and Mann-Whitney U for every pair of arms (or each arm against ``baseline``), within each
    task, with Holm's correction across the whole family and Hedges' g and Cliff's delta."""
    pairs = [(a, baseline) for a in arms if a != baseline] if baseline else \
        [(a, b) for i, a in enumerate(arms) for b in arms[i + 1:]]
    tasks = sorted(runs["task"].astype(str).unique()) if by_task else ["all"]
    rows = []
    for task in tasks:
        sub = runs if task == "all" else runs[runs["task"].astype(str) == task]
        for a, b in pairs:
            x = sub.loc[sub["arm"] == a, value].to_numpy(dtype=float)
            y = sub.loc[sub["arm"] == b, value].to_numpy(dtype=float)
            x, y = x[np.isfinite(x)], y[np.isfinite(y)]
            row = {"task": task, "a": a, "b": b, "n_a": len(x), "n_b": len(y),
                   "mean_a": np.mean(x) if len(x) else np.nan, "mean_b": np.mean(y) if len(y) else np.nan}
            if len(x) >= 2 and len(y) >= 2 and (np.ptp(x) > 0 or np.ptp(y) > 0):
                t = stats.ttest_ind(x, y, equal_var=False)
                u = stats.mannwhitneyu(x, y, alternative="two-sided")
                row.update(t=float(t.statistic), p_t=float(t.pvalue), u=float(u.statistic), p_u=float(u.pvalue))
            else:
                row.update(t=np.nan, p_t=np.nan, u=np.nan, p_u=np.nan)
            row.update(hedges_g=hedges_g(x, y), cliffs_delta=cliffs_delta(x, y))
            rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["p_t_holm"] = holm(table["p_t"])
    table["p_u_holm"] = holm(table["p_u"])
    return table


# ---- factorial ANOVA ----------------------------------------------------------------------------------


def _dummies(frame: pd.DataFrame, factor: str) -> np.ndarray:
    """Treatment-coded columns of a factor (first level dropped)."""
    codes, levels = pd.factorize(frame[factor].astype(str), sort=True)
    if (codes < 0).any():
        raise ValueError(f"factor {factor!r} has missing values; drop those rows first")
    return np.eye(len(levels))[codes][:, 1:]


def _term_columns(frame: pd.DataFrame, term: tuple[str, ...]) -> np.ndarray:
    cols = _dummies(frame, term[0])
    for factor in term[1:]:
        other = _dummies(frame, factor)
        cols = (cols[:, :, None] * other[:, None, :]).reshape(len(frame), -1)
    return cols


def _basis(columns: list[np.ndarray], n: int, intercept: bool = True) -> np.ndarray:
    """An orthonormal basis of the span of the intercept (if asked) and the given columns (rank-revealing)."""
    parts = ([np.ones((n, 1))] if intercept else []) + [c for c in columns if c.shape[1]]
    if not parts:
        return np.zeros((n, 0))
    x = np.column_stack(parts)
    if not np.any(x):
        return np.zeros((n, 0))
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    rank = int(np.sum(s > s[0] * max(x.shape) * np.finfo(float).eps))
    return u[:, :rank]


def _rss(basis: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Residual sums of squares of the columns of ``y`` after projection on the basis."""
    return np.sum(y**2, axis=0) - np.sum((basis.T @ y) ** 2, axis=0)


def _demean(x: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Columns minus their block means (partialling a block factor out, Frisch-Waugh-Lovell)."""
    sums = np.zeros((codes.max() + 1, x.shape[1]))
    np.add.at(sums, codes, x)
    return x - (sums / np.bincount(codes)[:, None])[codes]


def anova(frame: pd.DataFrame, response: str, factors: Sequence[str], *, max_order: int = 3,
          permutations: int = 2000, seed: int = 0, block: str | None = None) -> pd.DataFrame:
    """Type II factorial ANOVA with interactions up to ``max_order`` and Freedman-Lane permutation p-values.

    Each term's sum of squares is what it adds to the model of every term that does not contain it
    (type II, as statsmodels' ``anova_lm(typ=2)``); F uses the full model's residual mean square. The
    permutation test permutes the residuals of that reduced model (Freedman & Lane 1983), which keeps
    a term's test about that term even for interactions, and does not assume normal errors.

    ``block`` names a column of blocks (e.g. the MDP every arm trained on) partialled out of every model
    as a main effect and not tested. Rows missing a factor's value (cells a study added with an include
    rule that does not set it) cannot be placed in the design: they are left out, and their number is
    in ``result.attrs["dropped"]``. Columns: term, df, sum_sq, F, p, p_perm, partial_eta_sq.
    """
    empty = pd.DataFrame(columns=["term", "df", "sum_sq", "F", "p", "p_perm", "partial_eta_sq"])
    data = frame[[*factors, response, *([block] if block else [])]].copy()
    data = data[np.isfinite(data[response].to_numpy(dtype=float))]
    complete = data[list(factors)].notna().all(axis=1)
    dropped = int((~complete).sum())
    data = data[complete]
    factors = [f for f in factors if data[f].astype(str).nunique() > 1]
    empty.attrs["dropped"] = dropped
    if not factors or len(data) < 3:
        return empty
    terms = [t for k in range(1, min(max_order, len(factors)) + 1) for t in itertools.combinations(factors, k)]
    cols = {t: _term_columns(data, t) for t in terms}
    y = data[response].to_numpy(dtype=float)[:, None]
    n = len(y)
    n_blocks = 0
    if block:
        codes = pd.factorize(data[block].astype(str))[0]
        n_blocks = int(codes.max()) + 1
        y = _demean(y, codes)
        cols = {t: _demean(c, codes) for t, c in cols.items()}
    fit_intercept = not block
    full = _basis([cols[t] for t in terms], n, fit_intercept)
    df_resid = n - full.shape[1] - n_blocks
    rss_full = float(_rss(full, y)[0])
    rng = stream(seed, "anova", response, *factors)
    rows = []
    for term in terms:
        rest = [t for t in terms if not set(term) <= set(t)]
        reduced = _basis([cols[t] for t in rest], n, fit_intercept)
        with_term = _basis([cols[t] for t in rest] + [cols[term]], n, fit_intercept)
        df = with_term.shape[1] - reduced.shape[1]
        ss = float(_rss(reduced, y)[0] - _rss(with_term, y)[0])
        if df == 0 or df_resid <= 0:
            rows.append({"term": ":".join(term), "df": df, "sum_sq": ss, "F": np.nan, "p": np.nan,
                         "p_perm": np.nan, "partial_eta_sq": np.nan})
            continue
        if rss_full <= 1e-12 * max(float(np.sum(y**2)), 1e-300):  # a perfect fit: F is not defined
            rows.append({"term": ":".join(term), "df": df, "sum_sq": ss, "F": np.nan, "p": np.nan,
                         "p_perm": np.nan, "partial_eta_sq": np.nan})
            continue
        f = (ss / df) / (rss_full / df_resid)
        p = float(stats.f.sf(f, df, df_resid))
        fitted = reduced @ (reduced.T @ y)
        resid = (y - fitted)[:, 0]
        exceed = 0
        block = max(1, CHUNK // n)
        for start in range(0, permutations, block):
            k = min(block, permutations - start)
            perm = rng.permuted(np.broadcast_to(resid, (k, n)), axis=1).T
            ys = fitted + perm
            ss_p = _rss(reduced, ys) - _rss(with_term, ys)
            f_p = (ss_p / df) / (_rss(full, ys) / df_resid)
            exceed += int(np.sum(f_p >= f * (1 - 1e-12)))
        rows.append({"term": ":".join(term), "df": df, "sum_sq": ss, "F": f, "p": p,
                     "p_perm": (exceed + 1) / (permutations + 1),
                     "partial_eta_sq": ss / (ss + rss_full) if ss + rss_full > 0 else np.nan})
    rows.append({"term": "Residual", "df": df_resid, "sum_sq": rss_full, "F": np.nan, "p": np.nan,
                 "p_perm": np.nan, "partial_eta_sq": np.nan})
    table = pd.DataFrame(rows)
    table.attrs["dropped"] = dropped
    return table


# ---- learning-curve metrics ---------------------------------------------------------------------------


def curve_metrics(curves: pd.DataFrame, metric: str, *, threshold: float | None = None) -> pd.DataFrame:
    """Per run (cell, mdp): the area under the curve as the average value over training (trapezoid over
    the run's own evaluation steps, divided by their span), and the first step at which the metric
    reaches ``threshold`` (NaN when it never does). Runs may be evaluated at different steps."""
    data = curves.loc[curves["metric"] == metric, ["cell", "mdp", "step", "value"]].copy()
    data["cell"] = data["cell"].astype(str)
    data = data.sort_values(["cell", "mdp", "step"], kind="stable").reset_index(drop=True)
    run = data.groupby(["cell", "mdp"], sort=False).ngroup().to_numpy()
    step = data["step"].to_numpy(dtype=float)
    value = data["value"].to_numpy(dtype=float)
    same = run[1:] == run[:-1]
    pieces = np.where(same, np.diff(step) * (value[1:] + value[:-1]) / 2, 0.0)
    n_runs = int(run.max()) + 1 if len(run) else 0
    area = np.bincount(run[1:], weights=pieces, minlength=n_runs)
    keys = data.drop_duplicates(subset=["cell", "mdp"])[["cell", "mdp"]].reset_index(drop=True)
    span = data.groupby(run)["step"].agg(lambda x: x.max() - x.min()).to_numpy(dtype=float)
    single = data.groupby(run)["value"].first().to_numpy(dtype=float)
    keys["auc"] = np.where(span > 0, area / np.where(span > 0, span, 1.0), single)
    if threshold is not None:
        hit = data[value >= threshold].assign(run=run[value >= threshold])
        reached = hit.groupby("run")["step"].min()
        keys["steps_to_threshold"] = reached.reindex(range(n_runs)).to_numpy(dtype=float)
    return keys


# ---- seed planning ------------------------------------------------------------------------------------


def seeds_needed(sd: float, delta: float, *, power: float = 0.8, alpha: float = 0.05) -> float:
    """Runs per arm for a two-sided two-sample t-test to detect ``delta`` with ``power`` (noncentral t)."""
    import warnings

    from statsmodels.stats.power import TTestIndPower

    if not (sd > 0 and delta > 0):
        return float("nan")
    analysis = TTestIndPower()
    effect = delta / sd
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the solver warns and gives NaN for very large effects
        n = analysis.solve_power(effect_size=effect, alpha=alpha, power=power, ratio=1.0, alternative="two-sided")
    n = 2.0 if not np.isfinite(n) else float(np.ceil(max(n, 2.0)))
    while analysis.power(effect_size=effect, nobs1=n, alpha=alpha, alternative="two-sided") < power:
        n += 1.0  # the solver's root can fall a hair short of the power asked for
    return n


def plan_seeds(units: pd.DataFrame, value: str, arms: Sequence[str], *, delta: float | None = None,
               baseline: str | None = None, power: float = 0.8, alpha: float = 0.05) -> pd.DataFrame:
    """From a pilot study: per task and pair of arms, the units (seeds, or a tabular task's MDPs) each arm
    needs so a two-sided t-test detects ``delta`` (default: the pilot's observed difference in that task)
    with ``power``, Bonferroni-corrected over the same family the pairwise tests use (pairs x tasks).

    The spread is the pooled within-task standard deviation of the pilot's units. Columns: task, a, b,
    observed_difference, sd, delta, units_needed, pilot_units.
    """
    pairs = [(a, baseline) for a in arms if a != baseline] if baseline else \
        [(a, b) for i, a in enumerate(arms) for b in arms[i + 1:]]
    rows = []
    for task in sorted(units["task"].astype(str).unique()):
        sub = units[units["task"].astype(str) == task]
        for a, b in pairs:
            xs = sub.loc[sub["arm"] == a, value].to_numpy(dtype=float)
            ys = sub.loc[sub["arm"] == b, value].to_numpy(dtype=float)
            xs, ys = xs[np.isfinite(xs)], ys[np.isfinite(ys)]
            if len(xs) < 2 or len(ys) < 2:
                continue
            pooled = ((len(xs) - 1) * np.var(xs, ddof=1) + (len(ys) - 1) * np.var(ys, ddof=1)) / (len(xs) + len(ys) - 2)
            observed = float(np.mean(xs) - np.mean(ys))
            rows.append({"task": task, "a": a, "b": b, "observed_difference": observed, "sd": float(np.sqrt(pooled)),
                         "delta": abs(observed) if delta is None else delta,
                         "pilot_units": int(min(len(xs), len(ys)))})
    family = max(len(rows), 1)
    for row in rows:
        row["units_needed"] = seeds_needed(row["sd"], row["delta"], power=power, alpha=alpha / family)
    columns = ["task", "a", "b", "observed_difference", "sd", "delta", "units_needed", "pilot_units"]
    return pd.DataFrame(rows, columns=columns)

"""The statistics of the analysis layer, each checked against an independent computation.

References are scipy / statsmodels (bootstrap, Mann-Whitney U, Welch's t, Holm, OLS type II ANOVA), formulas
written out here (Hedges' g, BCa, noncentral-t power, exact bootstrap variances), brute-force loops (jackknife,
Cliff's delta, Holm's step-down, exceedance fractions) and small cases worked by hand. Monte-Carlo comparisons
use fixed seeds and tolerances of several Monte-Carlo standard errors, so they are deterministic and not fragile.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from statsmodels.formula.api import ols
from statsmodels.stats.anova import anova_lm
from statsmodels.stats.multitest import multipletests

from analysis import stats


def _scipy_iqm(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return sps.trim_mean(x, 0.25, axis=axis)


def _runs(spec: dict[str, dict[str, np.ndarray]]) -> pd.DataFrame:
    """A runs frame from {arm: {task: scores}}: one run per score, seeds numbered within each task."""
    rows = [{"arm": arm, "task": task, "seed": i, "score": float(v)}
            for arm, tasks in spec.items() for task, values in tasks.items() for i, v in enumerate(values)]
    return pd.DataFrame(rows)


def _t_power(n: float, d: float, alpha: float) -> float:
    """Power of the two-sided two-sample t-test with n runs per arm and standardised effect d (noncentral t).

    The lower tail P(T < -c) is written as P(-T > c) with -T ~ nct(df, -nc): scipy's nct.cdf returns NaN far
    in the tail."""
    df = 2 * n - 2
    nc = d * np.sqrt(n / 2)
    crit = sps.t.ppf(1 - alpha / 2, df)
    return float(sps.nct.sf(crit, df, nc) + sps.nct.sf(crit, df, -nc))


# ---- aggregate statistics ----------------------------------------------------------------------------


def test_mean_and_run_median_reduce_the_last_axis():
    x = np.array([[3.0, 1.0, 2.0, 10.0], [0.0, -1.0, 4.0, 5.0]])
    np.testing.assert_allclose(stats.mean(x), [4.0, 2.0])
    np.testing.assert_allclose(stats.run_median(x), [2.5, 2.0])
    assert stats.run_median(np.array([5.0, 1.0, 3.0])) == 3.0


def test_median_is_the_median_over_tasks_of_each_tasks_mean():
    """rliable's definition, by hand: task means 2, 15 and 6 give 6; the runs pooled would give 5."""
    values = [1.0, 2.0, 3.0, 10.0, 20.0, 5.0, 5.0, 5.0, 9.0]
    tasks = ["a"] * 3 + ["b"] * 2 + ["c"] * 4
    assert stats.estimate(values, tasks, stats.median) == 6.0
    assert stats.estimate(values, tasks, stats.run_median) == 5.0
    # with one task it is the mean; the interval resamples within tasks and keeps their grouping
    assert stats.estimate([1.0, 2.0, 9.0], None, stats.median) == pytest.approx(4.0)
    iv = stats.interval(values, tasks, stats.median, reps=400, seed=0)
    assert iv.estimate == 6.0 and 2.0 <= iv.lo <= iv.estimate <= iv.hi <= 15.0
    bca = stats.interval(values, tasks, stats.median, reps=400, seed=0, method="bca")
    assert bca.lo <= bca.hi


def test_iqm_by_hand_and_against_scipy():
    # n divisible by 4: the middle half of 1..8 is 3, 4, 5, 6.
    assert stats.iqm(np.arange(1.0, 9.0)) == pytest.approx(np.mean([3, 4, 5, 6]))
    # An outlier in the outer quarters does not move it.
    assert stats.iqm(np.array([8.0, 2.0, 1e6, 5.0, 3.0, 4.0, 6.0, -1e6])) == pytest.approx(4.5)
    rng = np.random.default_rng(0)
    x = rng.standard_cauchy((5, 23))
    np.testing.assert_allclose(stats.iqm(x), sps.trim_mean(x, 0.25, axis=1))
    # By hand with n = 12: three cut from each end, the mean of the sorted 4th..9th.
    y = rng.normal(size=12)
    assert stats.iqm(y) == pytest.approx(np.sort(y)[3:9].mean())


def test_optimality_gap_by_hand():
    x = np.array([0.5, 1.2, 0.8, 1.0])
    assert stats.optimality_gap(x) == pytest.approx((0.5 + 0.0 + 0.2 + 0.0) / 4)
    assert stats.optimality_gap(x, target=2.0) == pytest.approx((1.5 + 0.8 + 1.2 + 1.0) / 4)
    np.testing.assert_allclose(stats.optimality_gap(np.array([[2.0, 3.0], [0.0, 1.0]])), [0.0, 0.5])


# ---- strata and seeded streams -------------------------------------------------------------------------


def test_strata_of_sorts_by_stratum_drops_nan_keeps_inf():
    values = [5.0, 1.0, np.nan, 2.0, np.inf, 3.0, 4.0]
    keys = ["b", "a", "a", "c", "b", "a", "b"]
    s = stats.Strata.of(values, keys)
    assert s.names == ["a", "b", "c"]
    np.testing.assert_array_equal(s.offsets, [0, 2, 5, 6])
    np.testing.assert_array_equal(s.values, [1.0, 3.0, 5.0, np.inf, 4.0, 2.0])
    assert s.n == 6
    unstratified = stats.Strata.of([1.0, np.nan, 2.0])
    assert unstratified.names == ["0"] and unstratified.n == 2
    with pytest.raises(ValueError, match="strata labels"):
        stats.Strata.of([1.0, 2.0], ["a"])


def test_resample_draws_each_stratum_from_itself_and_keeps_its_size():
    rng = np.random.default_rng(1)
    sizes = {"t0": 3, "t1": 7, "t2": 5}
    values = np.concatenate([100 * k + rng.random(n) for k, n in enumerate(sizes.values())])
    keys = np.repeat(list(sizes), list(sizes.values()))
    order = rng.permutation(len(values))  # the input order does not matter
    s = stats.Strata.of(values[order], keys[order])
    draws = s.resample(500, np.random.default_rng(2))
    assert draws.shape == (500, sum(sizes.values()))
    for k, (name, n) in enumerate(sizes.items()):
        lo, hi = s.offsets[k], s.offsets[k + 1]
        assert hi - lo == n
        own = set(values[keys == name])
        assert set(np.unique(draws[:, lo:hi])) <= own
        # with replacement: most resamples repeat some run of a stratum of 5 or more
        if n >= 5:
            assert np.mean([len(set(row)) < n for row in draws[:, lo:hi]]) > 0.5


def test_resample_keeps_infinities():
    s = stats.Strata.of([1.0, np.inf, np.nan], ["a", "a", "a"])
    draws = s.resample(200, np.random.default_rng(0))
    assert np.isinf(draws).any() and not np.isnan(draws).any()
    assert set(np.unique(draws)) <= {1.0, np.inf}


def test_same_seed_same_draws_and_streams_keyed_by_name():
    s = stats.Strata.of(np.arange(20.0), np.repeat(["a", "b"], 10))
    np.testing.assert_array_equal(s.resample(50, stats.stream(7, "x")), s.resample(50, stats.stream(7, "x")))
    assert not np.array_equal(s.resample(50, stats.stream(7, "x")), s.resample(50, stats.stream(8, "x")))
    assert not np.array_equal(s.resample(50, stats.stream(7, "x")), s.resample(50, stats.stream(7, "y")))
    # Independent of the order streams are made or used in.
    a1 = stats.stream(3, "a", "b").random(5)
    b1 = stats.stream(3, "c").random(5)
    b2 = stats.stream(3, "c").random(5)
    a2 = stats.stream(3, "a", "b").random(5)
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(b1, b2)
    assert not np.array_equal(a1, stats.stream(3, "b", "a").random(5))


def test_chunked_bootstrap_gives_all_resamples(monkeypatch: pytest.MonkeyPatch):
    s = stats.Strata.of(np.random.default_rng(0).random(30), np.repeat(["a", "b", "c"], 10))
    monkeypatch.setattr(stats, "CHUNK", 70)  # 2 resamples a block, so 1001 takes 501 blocks
    boot = stats.bootstrap_distribution(s, stats.mean, 1001, np.random.default_rng(0))
    assert boot.shape == (1001,)
    assert len(set(boot)) > 900  # blocks are not repeats of one another


# ---- bootstrap intervals against scipy ------------------------------------------------------------------

# Endpoints from 20000 resamples: a 2.5% quantile has Monte-Carlo SE about sqrt(.025 * .975 / B) / phi(1.96)
# = 0.019 bootstrap SDs, so two independent bootstraps differ by about 0.027 SDs. 0.1 SD is ~3.7 such SEs.
B = 20_000
MC_TOL = 0.1


@pytest.mark.parametrize(("ours", "theirs"), [(stats.mean, np.mean), (stats.iqm, _scipy_iqm)])
@pytest.mark.parametrize(("method", "scipy_method"), [("percentile", "percentile"), ("bca", "BCa")])
def test_interval_matches_scipy_bootstrap(ours, theirs, method, scipy_method):
    x = np.random.default_rng(5).lognormal(0.0, 1.0, 30)  # skewed, so BCa and percentile differ
    iv = stats.interval(x, None, ours, reps=B, method=method, seed=1)
    ref = sps.bootstrap((x,), theirs, n_resamples=B, method=scipy_method, rng=np.random.default_rng(2))
    tol = MC_TOL * ref.standard_error
    assert iv.estimate == pytest.approx(float(theirs(x, axis=-1)))
    assert iv.lo == pytest.approx(ref.confidence_interval.low, abs=tol)
    assert iv.hi == pytest.approx(ref.confidence_interval.high, abs=tol)


def test_scipy_comparison_tells_bca_from_percentile():
    """The tolerance above is tight enough to notice the wrong method (skewed data, the mean)."""
    x = np.random.default_rng(5).lognormal(0.0, 1.0, 30)
    pct = sps.bootstrap((x,), np.mean, n_resamples=B, method="percentile", rng=np.random.default_rng(2))
    bca = stats.interval(x, None, stats.mean, reps=B, method="bca", seed=1)
    assert abs(bca.hi - pct.confidence_interval.high) > 3 * MC_TOL * pct.standard_error


def test_bca_with_ties_matches_scipy_and_covers_the_estimate():
    # Integer-valued scores: the bootstrap median equals the sample median in ~60% of resamples.
    x = np.array([4.0, 0, 1, 1, 1, 4, 5, 3, 0, 0, 1, 2, 3, 2, 1])
    iv = stats.interval(x, None, stats.run_median, reps=B, method="bca", seed=1)
    ref = sps.bootstrap((x,), np.median, n_resamples=B, method="BCa", rng=np.random.default_rng(2))
    assert iv.lo <= iv.estimate <= iv.hi  # currently (0.0, 0.0) around an estimate of 1.0
    assert (iv.lo, iv.hi) == pytest.approx((ref.confidence_interval.low, ref.confidence_interval.high), abs=0.5)


def test_interval_rejects_unknown_method_and_empty_input():
    with pytest.raises(ValueError, match="interval method"):
        stats.interval([1.0, 2.0, 3.0], method="studentized")
    iv = stats.interval([np.nan, np.nan])
    assert np.isnan([iv.estimate, iv.lo, iv.hi]).all()
    for method in ("percentile", "bca"):  # one run: an estimate but no interval
        iv = stats.interval([np.nan, 2.5], method=method)
        assert iv.estimate == 2.5 and np.isnan([iv.lo, iv.hi]).all()


@pytest.mark.parametrize("statistic", [stats.mean, stats.run_median, stats.iqm, stats.optimality_gap])
def test_jackknife_equals_leave_one_out_loop(statistic, monkeypatch: pytest.MonkeyPatch):
    x = np.random.default_rng(3).normal(0.8, 0.3, 13)
    brute = np.array([statistic(np.delete(x, i)) for i in range(len(x))])
    np.testing.assert_allclose(stats.jackknife(x, statistic), brute)
    monkeypatch.setattr(stats, "CHUNK", 40)  # blocks of 3 rows, the last one short
    np.testing.assert_allclose(stats.jackknife(x, statistic), brute)


def _efron_bca(boot: np.ndarray, estimate: float, jack: np.ndarray, level: float) -> tuple[float, float]:
    """Efron (1987) / Efron & Tibshirani (1993, eq. 14.9-14.15), written out."""
    z0 = sps.norm.ppf(np.sum(boot < estimate) / len(boot))
    u = jack.mean() - jack
    a = np.sum(u**3) / (6 * np.sum(u**2) ** 1.5)
    z = sps.norm.ppf((1 - level) / 2)
    a1 = sps.norm.cdf(z0 + (z0 + z) / (1 - a * (z0 + z)))
    a2 = sps.norm.cdf(z0 + (z0 - z) / (1 - a * (z0 - z)))
    s = np.sort(boot)
    pos = np.array([a1, a2]) * (len(s) - 1)  # linear interpolation between order statistics
    lo_i = np.floor(pos).astype(int)
    frac = pos - lo_i
    hi_i = np.minimum(lo_i + 1, len(s) - 1)
    ends = s[lo_i] + frac * (s[hi_i] - s[lo_i])
    return float(ends[0]), float(ends[1])


@pytest.mark.parametrize("level", [0.9, 0.95])
def test_bca_interval_equals_efron_formula(level):
    rng = np.random.default_rng(11)
    x = rng.gamma(1.5, 2.0, 40)
    s = stats.Strata.of(x)
    boot = stats.bootstrap_distribution(s, stats.mean, 3000, rng)
    jack = stats.jackknife(s.values, stats.mean)
    est = float(np.mean(x))
    ours = stats.bca_interval(boot, est, jack, level)
    assert ours == pytest.approx(_efron_bca(boot, est, jack, level), rel=1e-12)
    # and it is not just the percentile interval
    assert ours != pytest.approx(stats.percentile_interval(boot, level), rel=1e-3)


def test_percentile_interval_is_the_quantiles_and_steps_over_infinities():
    boot = np.random.default_rng(0).normal(size=1001)
    assert stats.percentile_interval(boot, 0.9) == pytest.approx(tuple(np.quantile(boot, [0.05, 0.95])))
    never = np.array([1.0, 2.0, 3.0, np.inf])
    lo, hi = stats.percentile_interval(never, 0.5)
    assert (lo, hi) == (1.0, 3.0)  # inverted CDF: no interpolation towards infinity
    assert stats.percentile_interval(never, 0.98)[1] == np.inf


# ---- coverage and stratification ------------------------------------------------------------------------


def test_stratified_percentile_intervals_cover_at_nominal_rate():
    """400 synthetic studies of 3 tasks x 20 runs, N(mu_k, 1) with mu = 0, 3, 6: the population mean is 3,
    and the population IQM is 3 too (the equal-weight mixture is symmetric about 3). The binomial SD of a 95%
    coverage over 400 studies is 0.011; an unstratified bootstrap would cover ~100% here (its spread includes
    the between-task variance), a too-narrow one well under 0.9."""
    rng = np.random.default_rng(2024)
    strata = np.repeat(["a", "b", "c"], 20)
    mus = np.repeat([0.0, 3.0, 6.0], 20)
    hits = {"mean": 0, "iqm": 0}
    studies = 400
    for k in range(studies):
        x = rng.normal(mus, 1.0)
        for name, fn in (("mean", stats.mean), ("iqm", stats.iqm)):
            iv = stats.interval(x, strata, fn, reps=1000, seed=k, name=name)
            hits[name] += iv.lo <= 3.0 <= iv.hi
    for name, h in hits.items():
        assert 0.915 <= h / studies <= 0.98, (name, h / studies)


def test_stratified_bootstrap_variance_is_the_exact_stratified_variance():
    """The bootstrap variance of the mean is sum_k (n_k/N)^2 s_k^2 / n_k with s_k^2 the (ddof=0) variance of
    stratum k; unstratified it is s^2 / N. With well separated tasks the first is much smaller."""
    rng = np.random.default_rng(8)
    sizes = [6, 10, 8]
    x = np.concatenate([rng.normal(10.0 * k, 1.0, n) for k, n in enumerate(sizes)])
    keys = np.repeat(["x", "y", "z"], sizes)
    n = len(x)
    exact = sum((m / n) ** 2 * np.var(x[keys == k]) / m for k, m in zip(["x", "y", "z"], sizes, strict=True))
    boot = stats.bootstrap_distribution(stats.Strata.of(x, keys), stats.mean, B, np.random.default_rng(0))
    # the sample variance of B draws has relative SE about sqrt(2 / B) = 1%
    assert np.var(boot) == pytest.approx(exact, rel=0.05)
    assert np.mean(boot) == pytest.approx(np.mean(x), abs=4 * np.sqrt(exact / B))
    strat = stats.interval(x, keys, stats.mean, reps=4000, seed=0)
    flat = stats.interval(x, None, stats.mean, reps=4000, seed=0)
    assert strat.hi - strat.lo < 0.3 * (flat.hi - flat.lo)
    expected_ratio = np.sqrt(exact / (np.var(x) / n))
    assert (strat.hi - strat.lo) / (flat.hi - flat.lo) == pytest.approx(expected_ratio, rel=0.1)


# ---- aggregates ----------------------------------------------------------------------------------------


def _pilot(seed: int = 0, arms: dict[str, float] | None = None, tasks: int = 3, runs: int = 8) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    arms = arms or {"A": 0.6, "B": 0.4, "C": 0.5}
    return _runs({arm: {f"t{k}": rng.normal(mu + 0.2 * k, 0.15, runs) for k in range(tasks)}
                  for arm, mu in arms.items()})


def test_aggregates_frame_estimates_and_intervals():
    runs = _pilot()
    runs.loc[3, "score"] = np.nan  # one lost run of arm A
    table = stats.aggregates(runs, "score", ["A", "B", "C"], reps=400, seed=3)
    assert list(table.columns) == ["arm", "statistic", "estimate", "lo", "hi", "bca_lo", "bca_hi", "runs", "tasks"]
    assert len(table) == 3 * len(stats.AGGREGATES)
    references = {"mean": np.mean, "iqm": _scipy_iqm,
                  "optimality_gap": lambda v: np.mean(np.clip(1.0 - v, 0.0, None))}
    for row in table.itertuples():
        arm = runs[(runs["arm"] == row.arm) & runs["score"].notna()]
        v = arm["score"].to_numpy()
        want = (np.median(arm.groupby("task")["score"].mean()) if row.statistic == "median"
                else references[row.statistic](v))
        assert row.estimate == pytest.approx(want)
        assert row.lo <= row.estimate <= row.hi
        assert row.bca_lo <= row.bca_hi
        assert row.runs == len(v) and row.tasks == 3
    assert table.loc[table["arm"] == "A", "runs"].iloc[0] == 23
    # Each arm's intervals are keyed by its name, not its position or the other arms.
    alone = stats.aggregates(runs, "score", ["C"], reps=400, seed=3)
    pd.testing.assert_frame_equal(alone, table[table["arm"] == "C"].reset_index(drop=True))


def test_aggregates_percentile_interval_matches_an_independent_stratified_bootstrap():
    runs = _pilot(seed=4, tasks=4, runs=6)
    table = stats.aggregates(runs, "score", ["B"], statistics=["mean"], reps=B, seed=0).iloc[0]
    sub = runs[runs["arm"] == "B"]
    rng = np.random.default_rng(99)
    parts = []
    for _, g in sub.groupby("task"):
        v = g["score"].to_numpy()
        parts.append(v[rng.integers(0, len(v), (B, len(v)))])
    boot = np.concatenate(parts, axis=1).mean(axis=1)
    lo, hi = np.quantile(boot, [0.025, 0.975])
    tol = MC_TOL * np.std(boot)
    assert table["lo"] == pytest.approx(lo, abs=tol)
    assert table["hi"] == pytest.approx(hi, abs=tol)


def test_aggregates_arm_without_runs_or_with_one_run():
    runs = pd.concat([_pilot(), _runs({"solo": {"t0": np.array([0.7])}})], ignore_index=True)
    table = stats.aggregates(runs, "score", ["A", "missing", "solo"], statistics=["mean"], reps=50)
    row = table[table["arm"] == "missing"].iloc[0]
    assert row["runs"] == 0 and row["tasks"] == 0
    assert np.isnan(row[["estimate", "lo", "hi", "bca_lo", "bca_hi"]].to_numpy(dtype=float)).all()
    solo = table[table["arm"] == "solo"].iloc[0]
    assert solo["estimate"] == 0.7 and solo["runs"] == 1 and solo["tasks"] == 1
    assert np.isnan(solo[["lo", "hi", "bca_lo", "bca_hi"]].to_numpy(dtype=float)).all()


# ---- probability of improvement -----------------------------------------------------------------------


def test_u_fraction_ties_count_half_by_hand():
    x, y = np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 4.0])
    # x > y: 3 > 2 twice. x == y: 2 == 2 twice, half each. Out of 9 pairs.
    assert stats._u_fraction(x[None], y[None])[0] == pytest.approx(3 / 9)
    assert stats._u_fraction(y[None], x[None])[0] == pytest.approx(6 / 9)
    assert stats._u_fraction(np.array([[np.inf, 1.0]]), np.array([[1.0, 5.0]]))[0] == pytest.approx(0.625)


def test_u_fraction_equals_mann_whitney_u_over_nm_rowwise():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, (6, 7)).astype(float)  # ties on purpose
    y = rng.integers(0, 5, (6, 4)).astype(float)
    ref = [sps.mannwhitneyu(a, b).statistic / (7 * 4) for a, b in zip(x, y, strict=True)]
    np.testing.assert_allclose(stats._u_fraction(x, y), ref)


def test_probability_of_improvement_point_and_interval():
    rng = np.random.default_rng(6)
    xs = {"t1": rng.normal(1.0, 1, 10), "t2": rng.integers(0, 4, 9).astype(float), "t3": rng.normal(0, 1, 10),
          "only_x": rng.normal(0, 1, 5)}
    ys = {"t1": rng.normal(0.0, 1, 8), "t2": rng.integers(0, 4, 10).astype(float), "t3": rng.normal(0.5, 1, 12),
          "only_y": rng.normal(0, 1, 5)}
    x = stats.Strata.of(np.concatenate(list(xs.values())), np.repeat(list(xs), [len(v) for v in xs.values()]))
    y = stats.Strata.of(np.concatenate(list(ys.values())), np.repeat(list(ys), [len(v) for v in ys.values()]))
    common = ["t1", "t2", "t3"]
    point = np.mean([sps.mannwhitneyu(xs[t], ys[t]).statistic / (len(xs[t]) * len(ys[t])) for t in common])
    iv = stats.probability_of_improvement(x, y, reps=B, rng=np.random.default_rng(1))
    assert iv.estimate == pytest.approx(point)
    # Independent bootstrap: per task, x and y resampled on their own, pairs compared by brute force.
    ref_rng = np.random.default_rng(2)
    per_task = []
    for t in common:
        bx = xs[t][ref_rng.integers(0, len(xs[t]), (B, len(xs[t])))]
        by = ys[t][ref_rng.integers(0, len(ys[t]), (B, len(ys[t])))]
        gt = (bx[:, :, None] > by[:, None, :]).mean(axis=(1, 2))
        eq = (bx[:, :, None] == by[:, None, :]).mean(axis=(1, 2))
        per_task.append(gt + eq / 2)
    dist = np.mean(per_task, axis=0)
    lo, hi = np.quantile(dist, [0.025, 0.975])
    tol = MC_TOL * np.std(dist)
    assert iv.lo == pytest.approx(lo, abs=tol)
    assert iv.hi == pytest.approx(hi, abs=tol)
    none = stats.probability_of_improvement(stats.Strata.of([1.0], ["a"]), stats.Strata.of([1.0], ["b"]))
    assert np.isnan(none.estimate)


def test_improvement_matrix_complements_mirrors_and_flips():
    runs = _pilot(seed=2)
    runs.loc[runs.index[:4], "score"] = 0.5  # ties across arms
    runs.loc[runs.index[-4:], "score"] = 0.5
    arms = ["A", "B", "C"]
    up = stats.improvement_matrix(runs, "score", arms, reps=500, seed=1)
    assert list(up.columns) == ["x", "y", "poi", "lo", "hi"]
    assert len(up) == 6
    m = up.set_index(["x", "y"])
    for a, b in itertools.permutations(arms, 2):
        assert m.loc[(a, b), "poi"] + m.loc[(b, a), "poi"] == pytest.approx(1.0)
        assert m.loc[(a, b), "lo"] == pytest.approx(1.0 - m.loc[(b, a), "hi"])
        assert m.loc[(a, b), "lo"] <= m.loc[(a, b), "poi"] <= m.loc[(a, b), "hi"]
        # the point estimate by Mann-Whitney, per task, averaged
        per_task = [sps.mannwhitneyu(g.loc[g["arm"] == a, "score"], g.loc[g["arm"] == b, "score"]).statistic
                    / (len(g[g["arm"] == a]) * len(g[g["arm"] == b])) for _, g in runs.groupby("task")]
        assert m.loc[(a, b), "poi"] == pytest.approx(np.mean(per_task))
    # Lower is better: every P(x > y) becomes the old P(y > x), on the same draws.
    down = stats.improvement_matrix(runs, "score", arms, higher_is_better=False, reps=500, seed=1).set_index(["x", "y"])
    for a, b in itertools.permutations(arms, 2):
        np.testing.assert_allclose(down.loc[(a, b)].to_numpy(dtype=float), m.loc[(b, a)].to_numpy(dtype=float))
    assert m.loc[("A", "B"), "poi"] > 0.6  # A is better by construction
    # Adding an arm does not move the intervals of the others.
    pair = stats.improvement_matrix(runs, "score", ["A", "B"], reps=500, seed=1).set_index(["x", "y"])
    pd.testing.assert_frame_equal(pair, m.loc[pair.index])


# ---- performance profiles -----------------------------------------------------------------------------


def test_performance_profile_fraction_and_band():
    runs = _pilot(seed=9)
    runs.loc[0, "score"] = np.inf
    taus = np.array([-1.0, 0.3, 0.45, 0.6, 0.75, 0.9, 5.0])
    prof = stats.performance_profile(runs, "score", ["A", "B"], taus, reps=600, seed=2)
    assert list(prof.columns) == ["arm", "tau", "fraction", "lo", "hi"]
    assert len(prof) == 2 * len(taus)
    for arm in ["A", "B"]:
        v = runs.loc[runs["arm"] == arm, "score"].to_numpy()
        p = prof[prof["arm"] == arm]
        brute = [np.mean([s > tau for s in v]) for tau in taus]
        np.testing.assert_allclose(p["fraction"], brute)
        assert (p["lo"] <= p["fraction"] + 1e-12).all() and (p["fraction"] <= p["hi"] + 1e-12).all()
        assert (np.diff(p["fraction"]) <= 0).all()
        assert p["lo"].iloc[0] == p["hi"].iloc[0] == 1.0  # below every run: no uncertainty
    assert prof[prof["arm"] == "A"]["fraction"].iloc[-1] == pytest.approx(1 / 24)  # the infinite run
    assert (prof[prof["arm"] == "B"][["fraction", "lo", "hi"]].iloc[-1] == 0.0).all()
    # A tie at tau does not count as above it.
    tie = stats.performance_profile(_runs({"A": {"t": np.array([1.0, 2.0, 3.0])}}), "score", ["A"],
                                    np.array([2.0]), reps=10)
    assert tie["fraction"].iloc[0] == pytest.approx(1 / 3)


def test_performance_profile_band_is_stratified():
    # Every task lies wholly on one side of tau = 5, so every stratified resample has exactly 2/3 above it.
    runs = _runs({"A": {"low": np.linspace(0, 1, 6), "mid": np.linspace(10, 11, 6), "high": np.linspace(20, 21, 6)}})
    prof = stats.performance_profile(runs, "score", ["A", "missing"], np.array([5.0, 10.5]), reps=300)
    assert set(prof["arm"]) == {"A"}
    first = prof.iloc[0]
    assert first["fraction"] == first["lo"] == first["hi"] == pytest.approx(2 / 3)
    second = prof.iloc[1]
    assert second["fraction"] == pytest.approx(0.5)
    assert second["lo"] < second["fraction"] < second["hi"]


# ---- effect sizes ---------------------------------------------------------------------------------------


def test_hedges_g_against_the_formula():
    rng = np.random.default_rng(0)
    x, y = rng.normal(1.0, 2.0, 7), rng.normal(0.0, 1.0, 11)
    n, m = len(x), len(y)
    sx = sum((v - sum(x) / n) ** 2 for v in x) / (n - 1)
    sy = sum((v - sum(y) / m) ** 2 for v in y) / (m - 1)
    pooled = np.sqrt(((n - 1) * sx + (m - 1) * sy) / (n + m - 2))
    j = 1 - 3 / (4 * (n + m) - 9)
    assert stats.hedges_g(x, y) == pytest.approx((x.mean() - y.mean()) / pooled * j)
    assert stats.hedges_g(y, x) == pytest.approx(-stats.hedges_g(x, y))
    # by hand: x = 1,2,3 and y = 3,4,5 -> pooled SD 1, d = -2, J = 1 - 3/15
    assert stats.hedges_g(np.array([1.0, 2, 3]), np.array([3.0, 4, 5])) == pytest.approx(-2 * 0.8)
    assert np.isnan(stats.hedges_g(np.array([1.0]), y))
    assert np.isnan(stats.hedges_g(np.array([2.0, 2.0]), np.array([2.0, 2.0])))


def test_cliffs_delta_against_double_loop():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 6, 9).astype(float)
    y = rng.integers(0, 6, 13).astype(float)
    brute = sum(int(a > b) - int(a < b) for a in x for b in y) / (len(x) * len(y))
    assert stats.cliffs_delta(x, y) == pytest.approx(brute)
    assert stats.cliffs_delta([1, 2, 3], [2, 2, 4]) == pytest.approx((2 - 5) / 9)  # 2 wins, 5 losses, 2 ties
    assert stats.cliffs_delta([5, 6], [1, 2]) == 1.0
    assert np.isnan(stats.cliffs_delta([], [1.0]))


# ---- Holm -----------------------------------------------------------------------------------------------


def _holm_by_hand(p: list[float]) -> list[float]:
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    out = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def test_holm_against_statsmodels_and_step_down_by_hand():
    p = [0.01, 0.04, 0.03, 0.005, 0.2, 0.03]
    ours = stats.holm(p)
    np.testing.assert_allclose(ours, multipletests(p, method="holm")[1])
    np.testing.assert_allclose(ours, _holm_by_hand(p))
    # by hand: sorted 0.005, 0.01, 0.03, 0.03, 0.04, 0.2 times 6, 5, 4, 3, 2, 1, then running max
    np.testing.assert_allclose(ours, [0.05, 0.12, 0.12, 0.03, 0.2, 0.12])
    with_nan = stats.holm([0.01, np.nan, 0.04, 0.03])
    assert np.isnan(with_nan[1])
    np.testing.assert_allclose(with_nan[[0, 2, 3]], _holm_by_hand([0.01, 0.04, 0.03]))
    assert np.isnan(stats.holm([np.nan, np.nan])).all()


# ---- pairwise tests -------------------------------------------------------------------------------------


def test_pairwise_tests_against_scipy_with_holm_over_the_family():
    runs = _pilot(seed=12, tasks=3, runs=7)
    runs.loc[0, "score"] = np.inf  # left out of the tests
    arms = ["A", "B", "C"]
    table = stats.pairwise_tests(runs, "score", arms)
    assert len(table) == 3 * 3
    assert set(zip(table["a"], table["b"], strict=True)) == {("A", "B"), ("A", "C"), ("B", "C")}
    for row in table.itertuples():
        sub = runs[runs["task"] == row.task]
        x = sub.loc[sub["arm"] == row.a, "score"].to_numpy()
        y = sub.loc[sub["arm"] == row.b, "score"].to_numpy()
        x, y = x[np.isfinite(x)], y[np.isfinite(y)]
        t = sps.ttest_ind(x, y, equal_var=False)
        u = sps.mannwhitneyu(x, y, alternative="two-sided")
        assert (row.n_a, row.n_b) == (len(x), len(y))
        assert row.mean_a == pytest.approx(x.mean()) and row.mean_b == pytest.approx(y.mean())
        assert row.t == pytest.approx(t.statistic) and row.p_t == pytest.approx(t.pvalue)
        assert row.u == pytest.approx(u.statistic) and row.p_u == pytest.approx(u.pvalue)
        assert row.cliffs_delta == pytest.approx(2 * u.statistic / (len(x) * len(y)) - 1)
    assert table.loc[(table["task"] == "t0") & (table["a"] == "A"), "n_a"].tolist() == [6, 6]
    # Holm over all 9 tests at once, not per task
    np.testing.assert_allclose(table["p_t_holm"], _holm_by_hand(table["p_t"].tolist()))
    np.testing.assert_allclose(table["p_u_holm"], multipletests(table["p_u"], method="holm")[1])
    per_task = np.concatenate([multipletests(g["p_t"], method="holm")[1] for _, g in table.groupby("task")])
    assert not np.allclose(np.sort(table["p_t_holm"]), np.sort(per_task))


def test_pairwise_tests_baseline_and_pooled_modes():
    runs = _pilot(seed=13)
    table = stats.pairwise_tests(runs, "score", ["A", "B", "C"], baseline="B")
    assert set(zip(table["a"], table["b"], strict=True)) == {("A", "B"), ("C", "B")}
    assert len(table) == 2 * 3
    pooled = stats.pairwise_tests(runs, "score", ["A", "B", "C"], baseline="B", by_task=False)
    assert pooled["task"].tolist() == ["all", "all"]
    x = runs.loc[runs["arm"] == "C", "score"].to_numpy()
    y = runs.loc[runs["arm"] == "B", "score"].to_numpy()
    row = pooled[pooled["a"] == "C"].iloc[0]
    assert row["p_t"] == pytest.approx(sps.ttest_ind(x, y, equal_var=False).pvalue)
    assert row["hedges_g"] == pytest.approx(stats.hedges_g(x, y))
    np.testing.assert_allclose(pooled["p_u_holm"], _holm_by_hand(pooled["p_u"].tolist()))
    small = stats.pairwise_tests(_runs({"A": {"t": np.array([1.0])}, "B": {"t": np.array([1.0, 2.0])}}),
                                 "score", ["A", "B"])
    assert np.isnan(small[["t", "p_t", "u", "p_u", "p_t_holm"]].to_numpy(dtype=float)).all()


# ---- ANOVA ----------------------------------------------------------------------------------------------


def _design(seed: int, effects: dict[str, float], levels: dict[str, list[str]], noise: float = 1.0) -> pd.DataFrame:
    """Unbalanced factorial data: 2-6 runs a cell; ``effects`` maps a term ("a", "a:b") to its size."""
    rng = np.random.default_rng(seed)
    rows = []
    for cell in itertools.product(*levels.values()):
        code = dict(zip(levels, cell, strict=True))
        idx = {f: levels[f].index(code[f]) for f in levels}
        mu = 0.0
        for term, size in effects.items():
            mu += size * np.prod([np.cos(1.0 + 2.0 * idx[f]) for f in term.split(":")])
        for _ in range(rng.integers(2, 7)):
            rows.append({**code, "y": mu + noise * rng.normal()})
    return pd.DataFrame(rows)


def _check_against_statsmodels(table: pd.DataFrame, data: pd.DataFrame, formula: str):
    ref = anova_lm(ols(formula, data).fit(), typ=2)
    ref.index = [":".join(part[2:-1] for part in name.split(":")) if name != "Residual" else name
                 for name in ref.index]
    ours = table.set_index("term")
    assert list(ours.index) == list(ref.index)
    np.testing.assert_allclose(ours["sum_sq"], ref["sum_sq"], rtol=1e-8)
    np.testing.assert_allclose(ours["df"], ref["df"])
    np.testing.assert_allclose(ours["F"].iloc[:-1], ref["F"].iloc[:-1], rtol=1e-8)
    np.testing.assert_allclose(ours["p"].iloc[:-1], ref["PR(>F)"].iloc[:-1], rtol=1e-6, atol=1e-300)
    resid = ours.loc["Residual", "sum_sq"]
    effects = ours.iloc[:-1]
    np.testing.assert_allclose(effects["partial_eta_sq"], effects["sum_sq"] / (effects["sum_sq"] + resid))


def test_anova_two_way_unbalanced_matches_statsmodels_type_ii():
    data = _design(0, {"a": 1.5, "b": 0.8, "a:b": 0.7}, {"a": ["x", "y", "z"], "b": ["p", "q"]})
    table = stats.anova(data, "y", ["a", "b"], permutations=200)
    assert list(table.columns) == ["term", "df", "sum_sq", "F", "p", "p_perm", "partial_eta_sq"]
    _check_against_statsmodels(table, data, "y ~ C(a) * C(b)")
    # Type II by model comparison, written out: SS(a | b) and SS(a:b | a, b).
    rss = {f: ols(f"y ~ {f}", data).fit().ssr for f in ["C(b)", "C(a) + C(b)", "C(a) * C(b)"]}
    ours = table.set_index("term")["sum_sq"]
    assert ours["a"] == pytest.approx(rss["C(b)"] - rss["C(a) + C(b)"])
    assert ours["a:b"] == pytest.approx(rss["C(a) + C(b)"] - rss["C(a) * C(b)"])
    assert ours["Residual"] == pytest.approx(rss["C(a) * C(b)"])


def test_anova_three_way_and_main_effects_only_match_statsmodels():
    levels = {"a": ["x", "y", "z"], "b": ["p", "q"], "c": ["u", "v"]}
    data = _design(1, {"a": 1.0, "c": 0.5, "b:c": 0.6}, levels)
    _check_against_statsmodels(stats.anova(data, "y", ["a", "b", "c"], permutations=100), data,
                               "y ~ C(a) * C(b) * C(c)")
    _check_against_statsmodels(stats.anova(data, "y", ["a", "b", "c"], max_order=1, permutations=100), data,
                               "y ~ C(a) + C(b) + C(c)")


def test_anova_drops_constant_factors_and_non_finite_responses():
    data = _design(2, {"a": 1.0}, {"a": ["x", "y", "z"], "b": ["p", "q"]})
    clean = stats.anova(data, "y", ["a", "b"], permutations=50)
    noisy = pd.concat([data, pd.DataFrame({"a": ["x", "y"], "b": ["p", "q"], "y": [np.nan, np.inf]})])
    noisy["const"] = "same"
    dirty = stats.anova(noisy, "y", ["a", "const", "b"], permutations=50)
    pd.testing.assert_frame_equal(clean.drop(columns="p_perm"), dirty.drop(columns="p_perm"))
    assert stats.anova(data, "y", ["a"], permutations=10)["term"].tolist() == ["a", "Residual"]


def test_anova_permutation_p_values_large_and_null_terms():
    """A large term gets the smallest possible p; null terms get about the F-test's p (normal errors)."""
    data = _design(3, {"a": 3.0, "b": 2.0}, {"a": ["x", "y", "z"], "b": ["p", "q"]})
    data = pd.concat([data, _design(4, {"a": 3.0, "b": 2.0}, {"a": ["x", "y", "z"], "b": ["p", "q"]})])
    perms = 1000
    table = stats.anova(data, "y", ["a", "b"], permutations=perms, seed=5).set_index("term")
    assert table.loc["a", "p_perm"] == pytest.approx(1 / (perms + 1))
    assert table.loc["b", "p_perm"] == pytest.approx(1 / (perms + 1))
    assert 0.05 < table.loc["a:b", "p"]
    # Monte-Carlo SE of p_perm <= 0.016 with 1000 permutations; 0.1 leaves room for the F approximation
    assert abs(table.loc["a:b", "p_perm"] - table.loc["a:b", "p"]) < 0.1
    again = stats.anova(data, "y", ["a", "b"], permutations=perms, seed=5).set_index("term")
    assert again.loc["a:b", "p_perm"] == table.loc["a:b", "p_perm"]
    null = _design(6, {}, {"a": ["x", "y", "z"], "b": ["p", "q"]})
    null = pd.concat([null, _design(7, {}, {"a": ["x", "y", "z"], "b": ["p", "q"]})])
    t0 = stats.anova(null, "y", ["a", "b"], permutations=perms, seed=0).set_index("term")
    for term in ["a", "b", "a:b"]:
        assert abs(t0.loc[term, "p_perm"] - t0.loc[term, "p"]) < 0.1, term


def _exact_permutation_p(data: pd.DataFrame, term: str, *, raw: bool = False) -> float:
    """Exact permutation p of a term's F in a 2x2 design, over all n! orderings: Freedman-Lane permutes the
    residuals of the model without the term (and without terms containing it); ``raw`` permutes responses."""
    n = len(data)
    a = (data["a"] == "y").to_numpy(float)
    b = (data["b"] == "q").to_numpy(float)
    columns = {"a": a, "b": b, "a:b": a * b}
    rest = [c for t, c in columns.items() if not set(term.split(":")) <= set(t.split(":"))]

    def residual_maker(*cols: np.ndarray) -> np.ndarray:
        q, _ = np.linalg.qr(np.column_stack([np.ones(n), *cols]))
        return np.eye(n) - q @ q.T

    m_reduced, m_with, m_full = residual_maker(*rest), residual_maker(*rest, columns[term]), residual_maker(a, b, a * b)

    def f_stat(ys: np.ndarray) -> np.ndarray:
        rss = [np.sum((m @ ys) ** 2, axis=0) for m in (m_reduced, m_with, m_full)]
        return (rss[0] - rss[1]) / (rss[2] / (n - 4))

    y = data["y"].to_numpy(float)
    order = np.array(list(itertools.permutations(range(n))), dtype=np.int8).T
    if raw:
        ys = y[order]
    else:
        fitted = y - m_reduced @ y
        ys = fitted[:, None] + (m_reduced @ y)[order]
    return float(np.mean(f_stat(ys) >= f_stat(y[:, None])[0] * (1 - 1e-12)))


@pytest.mark.parametrize(("seed", "term"), [(0, "a"), (4, "a:b")])
def test_anova_permutation_p_is_the_exact_freedman_lane_p(seed, term):
    """9 runs (unbalanced 2x2, heavy-tailed errors, a large b effect): every one of the 9! permutations of the
    reduced model's residuals is enumerated; 20000 random ones must agree within Monte-Carlo error. On these
    data permuting raw responses gives a clearly different p, so the check tells the two apart."""
    rng = np.random.default_rng(seed)
    rows = [{"a": a, "b": b, "y": 3.0 * (b == "q") + 0.8 * (a == "y") + rng.standard_t(3)}
            for a, b, k in [("x", "p", 3), ("x", "q", 2), ("y", "p", 2), ("y", "q", 2)] for _ in range(k)]
    data = pd.DataFrame(rows)
    perms = 20_000
    p_perm = stats.anova(data, "y", ["a", "b"], permutations=perms, seed=1).set_index("term").loc[term, "p_perm"]
    exact = _exact_permutation_p(data, term)
    assert abs(p_perm - exact) < 4 * np.sqrt(exact * (1 - exact) / perms) + 2 / perms
    assert abs(_exact_permutation_p(data, term, raw=True) - exact) > 0.05


# ---- learning curves -----------------------------------------------------------------------------------


def test_curve_metrics_auc_and_steps_to_threshold_by_hand():
    steps = [0, 10, 30]
    rows = [{"cell": "c", "mdp": 0, "step": s, "metric": "return", "value": v}
            for s, v in zip(steps, [0.0, 0.5, 1.0], strict=True)]
    rows += [{"cell": "d", "mdp": 1, "step": s, "metric": "return", "value": v}
             for s, v in zip(steps, [0.2, 0.2, 0.4], strict=True)]
    rows += [{"cell": "c", "mdp": 0, "step": s, "metric": "kl", "value": 99.0} for s in steps]
    curves = pd.DataFrame(rows).sample(frac=1.0, random_state=0)  # any row order
    out = stats.curve_metrics(curves, "return", threshold=0.5).set_index(["cell", "mdp"])
    # c: (10 * (0 + 0.5) / 2 + 20 * (0.5 + 1) / 2) / 30;  d: (10 * 0.2 + 20 * 0.3) / 30
    assert out.loc[("c", 0), "auc"] == pytest.approx(17.5 / 30)
    assert out.loc[("d", 1), "auc"] == pytest.approx(8.0 / 30)
    assert out.loc[("c", 0), "auc"] == pytest.approx(np.trapezoid([0.0, 0.5, 1.0], steps) / 30)
    assert out.loc[("c", 0), "steps_to_threshold"] == 10  # reached exactly at 0.5
    assert np.isnan(out.loc[("d", 1), "steps_to_threshold"])
    low = stats.curve_metrics(curves, "return", threshold=0.2).set_index(["cell", "mdp"])
    assert low.loc[("c", 0), "steps_to_threshold"] == 10 and low.loc[("d", 1), "steps_to_threshold"] == 0
    assert "steps_to_threshold" not in stats.curve_metrics(curves, "return").columns
    one = stats.curve_metrics(curves[curves["step"] == 10], "return").set_index(["cell", "mdp"])
    assert one.loc[("c", 0), "auc"] == 0.5  # a single evaluation is its own average


def test_curve_metrics_first_crossing_not_last():
    curves = pd.DataFrame({"cell": "c", "mdp": 0, "step": [0, 5, 10, 15], "metric": "m",
                           "value": [0.0, 0.9, 0.1, 0.95]})
    out = stats.curve_metrics(curves, "m", threshold=0.8)
    assert out["steps_to_threshold"].iloc[0] == 5


def test_curve_metrics_runs_with_their_own_evaluation_steps():
    # e.g. a study with iterations or eval_every as a factor: cells evaluate at different steps
    rows = [{"cell": "short", "mdp": 0, "step": s, "metric": "m", "value": v}
            for s, v in zip([0, 10, 20], [0.0, 1.0, 1.0], strict=True)]
    rows += [{"cell": "long", "mdp": 0, "step": s, "metric": "m", "value": 1.0} for s in [0, 15, 30, 45]]
    out = stats.curve_metrics(pd.DataFrame(rows), "m", threshold=0.5).set_index("cell")
    assert out.loc["long", "auc"] == pytest.approx(1.0)  # currently NaN, and so is the short run's
    assert out.loc["short", "auc"] == pytest.approx((5 + 10) / 20)
    assert out.loc["short", "steps_to_threshold"] == 10


# ---- seed planning -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("sd", "delta", "power", "alpha"),
                         [(1.0, 0.2, 0.8, 0.05), (2.0, 1.0, 0.8, 0.05), (1.0, 1.0, 0.9, 0.01), (0.5, 1.0, 0.8, 0.05),
                          (1.0, 3.0, 0.8, 0.05), (1.0, 4.0, 0.9, 0.05 / 3), (1.0, 5.0, 0.8, 0.05)])
def test_seeds_needed_is_the_smallest_n_with_the_power(sd, delta, power, alpha):
    n = stats.seeds_needed(sd, delta, power=power, alpha=alpha)
    assert n == int(n) and n >= 2
    assert _t_power(n, delta / sd, alpha) >= power
    if n > 2:
        assert _t_power(n - 1, delta / sd, alpha) < power


@pytest.mark.filterwarnings("ignore:\\s*Failed to converge")
def test_seeds_needed_floor_of_two_for_huge_effects():
    assert _t_power(2, 8.0, 0.05) >= 0.8
    assert stats.seeds_needed(1.0, 8.0) == 2.0  # statsmodels' solver gives NaN here


def test_seeds_needed_nan_without_spread_or_effect():
    assert np.isnan(stats.seeds_needed(0.0, 1.0))
    assert np.isnan(stats.seeds_needed(1.0, 0.0))


def test_plan_seeds_per_task_with_the_tests_family():
    runs = _pilot(seed=21, arms={"A": 0.6, "B": 0.45, "C": 0.5}, tasks=2, runs=6)
    table = stats.plan_seeds(runs, "score", ["A", "B", "C"])
    assert len(table) == 3 * 2  # pairs x tasks, one Bonferroni family like the tests'
    for row in table.itertuples():
        sub = runs[runs["task"] == row.task]
        x = sub.loc[sub["arm"] == row.a, "score"].to_numpy()
        y = sub.loc[sub["arm"] == row.b, "score"].to_numpy()
        sd = np.sqrt(((len(x) - 1) * x.var(ddof=1) + (len(y) - 1) * y.var(ddof=1)) / (len(x) + len(y) - 2))
        assert row.sd == pytest.approx(sd)  # within the task: task differences do not inflate it
        assert row.observed_difference == pytest.approx(x.mean() - y.mean())
        assert row.delta == pytest.approx(abs(x.mean() - y.mean()))
        assert row.pilot_units == min(len(x), len(y))
        n = row.units_needed
        assert _t_power(n, row.delta / sd, 0.05 / 6) >= 0.8
        assert n == 2 or _t_power(n - 1, row.delta / sd, 0.05 / 6) < 0.8
    base = stats.plan_seeds(runs, "score", ["A", "B", "C"], baseline="B", delta=0.1, power=0.9)
    assert set(zip(base["a"], base["b"], strict=True)) == {("A", "B"), ("C", "B")}
    for row in base.itertuples():
        assert row.delta == 0.1
        assert row.units_needed == stats.seeds_needed(row.sd, 0.1, power=0.9, alpha=0.05 / 4)


# ---- clustered runs: a tabular cell's MDPs are shared by its seeds --------------------------------------


def test_two_level_resampling_draws_whole_clusters_then_runs_within_them():
    values = np.repeat(np.arange(5.0), 3) + np.tile([0.0, 0.1, 0.2], 5)  # cluster c holds c, c.1, c.2
    data = stats.Strata.of(values, None, clusters=np.repeat(np.arange(5), 3))
    assert data.clustered
    draws = data.resample(400, np.random.default_rng(0))
    slots = np.floor(draws).reshape(400, 5, 3)
    assert (slots == slots[..., :1]).all()  # each slot's 3 runs come from one drawn cluster
    assert len(np.unique(slots[:, :, 0])) == 5  # and every cluster gets drawn somewhere
    means = stats.bootstrap_distribution(data, stats.mean, 20000, np.random.default_rng(1))
    cluster_means = values.reshape(5, 3).mean(1)
    # the mean's bootstrap spread is the cluster means' (ignoring clusters would shrink it about sqrt(3)-fold)
    expected = np.sqrt(np.var(cluster_means) / 5 + np.mean(values.reshape(5, 3).var(1)) / 15)
    assert means.std() == pytest.approx(expected, rel=0.05)


def test_cluster_jackknife_leaves_out_one_cluster_at_a_time():
    rng = np.random.default_rng(3)
    values, clusters = rng.normal(size=12), np.repeat([7, 3, 9, 1], 3)
    data = stats.Strata.of(values, None, clusters=clusters)
    got = stats.cluster_jackknife(data, stats.run_median)
    want = sorted(np.median(values[clusters != c]) for c in np.unique(clusters))
    np.testing.assert_allclose(sorted(got), want)


def test_probability_of_improvement_compares_runs_on_the_same_mdp():
    frame = pd.DataFrame({
        "arm": ["X"] * 4 + ["Y"] * 4, "task": "t", "mdp": [0, 0, 1, 1] * 2,
        "score": [1.0, 1.2, 0.0, 0.1, 0.0, 0.5, 5.0, 6.0]})
    x = stats.Strata.of_runs(frame[frame["arm"] == "X"], "score")
    y = stats.Strata.of_runs(frame[frame["arm"] == "Y"], "score")
    iv = stats.probability_of_improvement(x, y, reps=500, rng=np.random.default_rng(0))
    per_mdp = [sps.mannwhitneyu(frame.query(f"arm == 'X' and mdp == {m}")["score"],
                               frame.query(f"arm == 'Y' and mdp == {m}")["score"]).statistic / 4 for m in (0, 1)]
    assert iv.estimate == pytest.approx(np.mean(per_mdp)) == pytest.approx(0.5)
    pooled = sps.mannwhitneyu(frame.query("arm == 'X'")["score"], frame.query("arm == 'Y'")["score"]).statistic / 16
    assert pooled != pytest.approx(0.5)  # pooling across MDPs would answer another question
    assert 0.0 <= iv.lo <= iv.estimate <= iv.hi <= 1.0


def test_blocked_anova_equals_statsmodels_with_the_block_as_a_factor():
    rng = np.random.default_rng(2)
    n = 150
    d = pd.DataFrame({"a": rng.integers(0, 3, n), "b": rng.integers(0, 2, n), "blk": rng.integers(0, 10, n)})
    d["y"] = d["a"] * 0.3 + d["blk"] * 0.5 + rng.normal(size=n)
    ours = stats.anova(d, "y", ["a", "b"], block="blk", permutations=99).set_index("term")
    ref = anova_lm(ols("y ~ C(blk) + C(a)*C(b)", data=d.astype(str).astype({"y": float})).fit(), typ=2)
    for term, name in (("a", "C(a)"), ("b", "C(b)"), ("a:b", "C(a):C(b)"), ("Residual", "Residual")):
        assert ours.loc[term, "sum_sq"] == pytest.approx(ref.loc[name, "sum_sq"], rel=1e-9)
        assert ours.loc[term, "df"] == ref.loc[name, "df"]
    assert ours.loc["a", "p"] == pytest.approx(ref.loc["C(a)", "PR(>F)"], rel=1e-9)


def test_anova_leaves_out_rows_without_a_factor_value_and_says_how_many():
    rng = np.random.default_rng(4)
    d = pd.DataFrame({"a": rng.integers(0, 2, 40).astype(float), "y": rng.normal(size=40)})
    d.loc[:4, "a"] = np.nan
    table = stats.anova(d, "y", ["a"], permutations=99)
    assert table.attrs["dropped"] == 5 and table.set_index("term").loc["Residual", "df"] == 35 - 2


def test_median_jackknife_never_drops_a_task():
    """A task with one run is not left out by the jackknife (the bootstrap never drops a task)."""
    values, tasks = [1.0, 2.0, 3.0, 10.0, 20.0, 7.0], ["a"] * 3 + ["b"] * 2 + ["c"]
    jack = stats._leave_one_out(stats.Strata.of(values, tasks), stats.median)
    assert len(jack) == 5 and np.all(jack == 7.0)


def test_median_over_single_run_tasks_has_a_percentile_but_no_bca_interval():
    """One run per task: the bootstrap still resamples, the jackknife has nothing to leave out."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bca = stats.interval([1.0, 2.0, 3.0], ["a", "b", "c"], stats.median, reps=200, method="bca")
    assert bca.estimate == 2.0 and np.isnan([bca.lo, bca.hi]).all()

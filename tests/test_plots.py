"""Figures of the analysis layer: files written, data drawn, colours fixed per variant, bad input refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure

from analysis import plots

VARIANTS = ["teacher_distill", "on_policy_distill", "a_rather_long_variant_name_for_the_legend"]
METRICS = ["return_norm", "kl_student", "kl_teacher", "kl_uniform"]


@pytest.fixture(autouse=True)
def _close_figures() -> Iterator[None]:
    """Figures built without saving are closed here, so none outlives its test."""
    yield
    plt.close("all")


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    """Every figure the public functions save; a closed figure still holds its axes and artists."""
    seen: list[Figure] = []
    original = plots.save

    def keep(fig: Figure, path: Path) -> list[Path]:
        seen.append(fig)
        return original(fig, path)

    monkeypatch.setattr(plots, "save", keep)
    return seen


def curves(*, taus: tuple[float, ...] = (0.1, 1.0), seeds: int = 3) -> pd.DataFrame:
    """Tidy curves: KLs that decay from 0.5, a return that rises to 1, one row per run, step and metric."""
    rng = np.random.default_rng(0)
    rows = []
    for tau in taus:
        for k, variant in enumerate(VARIANTS):
            for seed in range(seeds):
                for step in range(0, 60, 10):
                    decay = np.exp(-(k + 1) * step / 40)
                    values = {"return_norm": 1 - decay, "kl_student": 0.5 * decay, "kl_teacher": 0.4 * decay,
                              "kl_uniform": 0.3 * decay + 0.01}
                    for metric, value in values.items():
                        rows.append({"variant": variant, "step": step, "metric": metric, "tau": tau, "seed": seed,
                                     "value": value * tau * (1 + 0.05 * rng.standard_normal()) + 1e-3})
    return pd.DataFrame(rows)


def intervals() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for variant in VARIANTS:
        for statistic in ("mean", "median", "iqm", "optimality_gap"):
            estimate = float(rng.uniform(0.2, 0.9))
            rows.append({"variant": variant, "statistic": statistic, "estimate": estimate, "lo": estimate - 0.1,
                         "hi": estimate + 0.05})
    return pd.DataFrame(rows)


def poi_pairs(names: list[str]) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for x in names:
        for y in names:
            if x != y:
                p = float(rng.uniform(0.1, 0.9))
                rows.append({"x": x, "y": y, "poi": p, "lo": p - 0.07, "hi": p + 0.08})
    return pd.DataFrame(rows)


def assert_written(paths: list[Path], base: Path) -> None:
    """A PNG and a PDF of real size, and a PNG that is not a blank page."""
    assert paths == [base.with_suffix(".png"), base.with_suffix(".pdf")]
    for p in paths:
        assert p.is_file() and p.stat().st_size > 2000
    image = mpimg.imread(paths[0])[..., :3]
    assert image.std() > 0.01
    assert (image.min(axis=-1) < 0.9).mean() > 0.005


def colours_of(fig: Figure) -> dict[str, tuple[float, float, float]]:
    """The figure legend's variant -> colour."""
    legend = fig.legends[0]
    handles = legend.legend_handles
    return {t.get_text(): to_rgb(h.get_color()) for t, h in zip(legend.get_texts(), handles, strict=True)}


def rgb(colour: object) -> tuple[float, float, float]:
    return tuple(round(c, 4) for c in to_rgb(colour))


# ---------------------------------------------------------------------------------------------------------
# learning curves


def test_learning_curves_demo_call(tmp_path: Path, figures: list[Figure]) -> None:
    frame = curves(taus=(0.1,))
    paths = plots.learning_curves(frame, METRICS, tmp_path / "curves", variants=VARIANTS, title="demo", n_boot=50)
    assert_written(paths, tmp_path / "curves")
    (fig,) = figures
    assert len(fig.axes) == len(METRICS)
    assert [ax.get_title() for ax in fig.axes] == [plots.METRIC_LABELS[m] for m in METRICS]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == VARIANTS
    assert fig.get_suptitle() == "demo"


def test_learning_curves_facet_grid() -> None:
    frame = curves(taus=(1.0, 0.1, 10.0))
    metrics = ["kl_student", "return_norm"]
    fig = plots._figure_learning_curves(frame, metrics, variants=VARIANTS, facet="tau", n_boot=20)
    axes = np.array(fig.axes).reshape(3, 2)
    assert [ax.get_ylabel() for ax in axes[:, 0]] == ["tau = 0.1", "tau = 1", "tau = 10"]
    assert [ax.get_yscale() for ax in axes[0]] == ["log", "linear"]
    assert [ax.get_xlabel() for ax in axes[:, 0]] == ["", "", "iteration"]  # the bottom row names the steps
    steps = plots._figure_learning_curves(frame, metrics, variants=VARIANTS, n_boot=20, x_label="agent steps")
    assert {ax.get_xlabel() for ax in steps.axes if ax.get_lines()} == {"agent steps"}
    for ax in axes.flat:
        colours = {rgb(line.get_color()) for line in ax.get_lines()}
        assert colours == {rgb(c) for c in plots.variant_palette(VARIANTS).values()}


def test_learning_curves_keeps_linear_scale_for_non_positive_values() -> None:
    frame = curves(taus=(1.0,))
    frame.loc[(frame["metric"] == "kl_teacher") & (frame["step"] == 50), "value"] = 0.0
    frame.loc[frame.index[:5], "value"] = np.nan
    fig = plots._figure_learning_curves(frame, ["kl_student", "kl_teacher"], variants=VARIANTS, n_boot=20)
    assert [ax.get_yscale() for ax in fig.axes] == ["log", "linear"]


def test_learning_curves_colour_follows_the_variant_order_not_the_data() -> None:
    frame = curves(taus=(1.0,))
    only_last = frame[frame["variant"] == VARIANTS[-1]]
    fig = plots._figure_learning_curves(only_last, ["kl_student"], variants=VARIANTS, n_boot=20)
    assert colours_of(fig) == {VARIANTS[-1]: to_rgb(plots.variant_palette(VARIANTS)[VARIANTS[-1]])}


def test_more_variants_than_colours_still_look_different() -> None:
    names = [f"arm {i}" for i in range(14)]
    rows = [{"variant": n, "step": step, "metric": "return", "value": float(i + step)}
            for i, n in enumerate(names) for step in (0, 10)]
    fig = plots._figure_learning_curves(pd.DataFrame(rows), ["return"], variants=names, ci=None)
    drawn = {(rgb(line.get_color()), line.get_linestyle()) for line in fig.axes[0].get_lines()}
    legend = {(rgb(h.get_color()), h.get_linestyle()) for h in fig.legends[0].legend_handles}
    assert len(drawn) == len(legend) == 14 and drawn == legend
    # the first cycle is solid, the second dashed in the first cycle's colours
    assert plots.variant_dashes(names)["arm 0"] == () and plots.variant_dashes(names)["arm 10"] != ()
    assert plots.variant_palette(names)["arm 10"] == plots.variant_palette(names)["arm 0"]


def test_learning_curves_refuses_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="empty"):
        plots.learning_curves(pd.DataFrame(columns=["variant", "step", "metric", "value"]), ["kl_student"],
                              tmp_path / "c")
    with pytest.raises(ValueError, match="no data for metric"):
        plots.learning_curves(curves(taus=(1.0,)), ["entropy"], tmp_path / "c")
    assert not list(tmp_path.iterdir())


def test_tabular_kl_layout_orders_and_skips_metrics(tmp_path: Path, figures: list[Figure]) -> None:
    frame = curves()
    frame = frame[frame["metric"] != "kl_teacher"]
    paths = plots.tabular_kl_layout(frame, tmp_path / "fig3", variants=VARIANTS, facet="tau", title="Fig. 3")
    assert_written(paths, tmp_path / "fig3")
    (fig,) = figures
    assert len(fig.axes) == 2 * 3
    expected = [plots.METRIC_LABELS[m] for m in ("kl_student", "kl_uniform", "return_norm")]
    assert [ax.get_title() for ax in fig.axes[:3]] == expected
    with pytest.raises(ValueError, match="none of the metrics"):
        other = pd.DataFrame({"variant": ["x"], "step": [0], "metric": ["agreement"], "value": [1.0]})
        plots.tabular_kl_layout(other, tmp_path / "none", variants=VARIANTS)


# ---------------------------------------------------------------------------------------------------------
# aggregate intervals and performance profiles


def test_aggregate_intervals(tmp_path: Path, figures: list[Figure]) -> None:
    table = intervals()
    table = table[table["variant"] != VARIANTS[1]]
    paths = plots.aggregate_intervals(table, tmp_path / "agg", variants=VARIANTS, statistics=("mean", "iqm"),
                                      reference={"mean": 1.0})
    assert_written(paths, tmp_path / "agg")
    (fig,) = figures
    assert [ax.get_title() for ax in fig.axes] == ["Mean", "IQM"]
    mean_ax = fig.axes[0]
    labels = sorted(mean_ax.get_yticklabels(), key=lambda t: -t.get_position()[1])
    assert [t.get_text() for t in labels] == [VARIANTS[0], VARIANTS[2]]
    palette = plots.variant_palette(VARIANTS)
    bars = {b.get_gid(): b for b in mean_ax.patches}
    assert set(bars) == {VARIANTS[0], VARIANTS[2]}
    for name, bar in bars.items():
        row = table[(table["variant"] == name) & (table["statistic"] == "mean")].iloc[0]
        assert rgb(bar.get_facecolor()) == rgb(palette[name])
        assert bar.get_x() == pytest.approx(row["lo"]) and bar.get_x() + bar.get_width() == pytest.approx(row["hi"])
    dashed = [line for line in mean_ax.get_lines() if line.get_linestyle() == "--"]
    assert len(dashed) == 1 and dashed[0].get_xdata()[0] == pytest.approx(1.0)
    assert not [line for line in fig.axes[1].get_lines() if line.get_linestyle() == "--"]


def test_same_variant_same_colour_across_figures() -> None:
    curves_fig = plots._figure_learning_curves(curves(taus=(1.0,)), ["kl_student"], variants=VARIANTS, n_boot=20)
    bars_fig = plots._figure_aggregate_intervals(intervals(), variants=VARIANTS)
    line_colours = {name: rgb(c) for name, c in colours_of(curves_fig).items()}
    bar_colours = {b.get_gid(): rgb(b.get_facecolor()) for b in bars_fig.axes[0].patches}
    assert line_colours == bar_colours
    assert len(set(line_colours.values())) == len(VARIANTS)


def test_performance_profiles(tmp_path: Path, figures: list[Figure]) -> None:
    taus = np.linspace(0.0, 1.2, 25)
    rows = []
    for k, variant in enumerate(VARIANTS):
        fraction = 1 / (1 + np.exp((taus - 0.4 - 0.1 * k) * 12))
        rows += [{"variant": variant, "tau": t, "fraction": f, "lo": max(f - 0.05, 0), "hi": min(f + 0.05, 1)}
                 for t, f in zip(taus, fraction, strict=True)]
    profile = pd.DataFrame(rows)
    paths = plots.performance_profiles(profile, tmp_path / "prof", variants=VARIANTS, log_x=True)
    assert_written(paths, tmp_path / "prof")
    (fig,) = figures
    ax = fig.axes[0]
    assert ax.get_ylim() == (0.0, 1.0)
    assert ax.get_xscale() == "linear"  # a threshold of 0 has no log
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == set(VARIANTS)
    np.testing.assert_allclose(lines[VARIANTS[1]].get_ydata(), profile.loc[profile["variant"] == VARIANTS[1],
                                                                          "fraction"])
    positive = profile[profile["tau"] > 0]
    assert plots._figure_performance_profiles(positive, variants=VARIANTS, log_x=True).axes[0].get_xscale() == "log"


# ---------------------------------------------------------------------------------------------------------
# probability of improvement and interaction tables


def test_poi_matrix_annotates_estimate_and_interval(tmp_path: Path, figures: list[Figure]) -> None:
    frame = poi_pairs(VARIANTS)
    paths = plots.poi_matrix(frame, tmp_path / "poi", variants=VARIANTS)
    assert_written(paths, tmp_path / "poi")
    ax = figures[0].axes[0]
    assert ax.get_title() == "P(row > column)"
    texts = [t.get_text() for t in ax.texts]
    expected = [f"{r.poi:.2f}\n[{r.lo:.2f}, {r.hi:.2f}]" for r in frame.itertuples()]
    assert len(texts) == len(VARIANTS) * (len(VARIANTS) - 1)
    assert sorted(texts) == sorted(expected)
    assert [t.get_text() for t in ax.get_yticklabels()] == VARIANTS


def test_poi_matrix_many_variants_only_point_estimates() -> None:
    names = [f"v{i}" for i in range(plots.POI_INTERVAL_MAX_VARIANTS + 1)]
    frame = poi_pairs(names)
    texts = sorted(t.get_text() for t in plots._figure_poi_matrix(frame, variants=names).axes[0].texts)
    assert texts == sorted(f"{p:.2f}" for p in frame["poi"])


def test_interaction_heatmap_cell_means(tmp_path: Path, figures: list[Figure]) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"variant": rng.choice(VARIANTS[:2], 60), "tau": rng.choice([10.0, 0.5, 2.0], 60),
                          "value": rng.normal(size=60)})
    frame = frame[~((frame["variant"] == VARIANTS[0]) & (frame["tau"] == 2.0))]
    frame.loc[frame.index[0], "value"] = np.nan
    paths = plots.interaction_heatmap(frame, tmp_path / "ih", row="variant", col="tau", title="t")
    assert_written(paths, tmp_path / "ih")
    ax = figures[0].axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.5", "2", "10"]
    assert [t.get_text() for t in ax.get_yticklabels()] == [VARIANTS[1], VARIANTS[0]]
    assert len(ax.texts) == 5  # the empty cell stays blank
    cell = frame[(frame["variant"] == VARIANTS[1]) & (frame["tau"] == 10.0)]["value"]
    assert f"{cell.dropna().sum() / cell.notna().sum():.3g}" in [t.get_text() for t in ax.texts]
    assert figures[0].axes[1].get_ylabel() == "value"


# ---------------------------------------------------------------------------------------------------------
# phase portraits


def test_phase_portrait_draws_fields_and_trajectories(tmp_path: Path, figures: list[Figure]) -> None:
    x, y = np.meshgrid(np.linspace(-2, 2, 21), np.linspace(-1, 3, 17))
    xi, yi = np.meshgrid(np.linspace(-2, 2, 21), np.linspace(-1, 3, 17), indexing="ij")
    fields = {"pull": (x, y, -x, 1 - y), "spin": (xi, yi, -(yi - 1), xi)}
    t = np.linspace(0, 4, 30)
    path = np.stack([1.5 * np.exp(-t / 2) * np.cos(2 * t), 1 + 1.5 * np.exp(-t / 2) * np.sin(2 * t)], axis=1)
    paths = plots.phase_portrait(fields, tmp_path / "phase", trajectories={"spin": path}, title="flows")
    assert_written(paths, tmp_path / "phase")
    (fig,) = figures
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["pull", "spin"]
    assert all(ax.collections for ax in panels)  # streamlines and arrows
    drawn = [np.column_stack(line.get_data()) for line in panels[1].get_lines()]
    assert any(d.shape == path.shape and np.allclose(d, path) for d in drawn)
    markers = {line.get_marker(): np.column_stack(line.get_data())[0] for line in panels[1].get_lines()}
    np.testing.assert_allclose(markers["o"], path[0])
    np.testing.assert_allclose(markers["X"], path[-1])
    assert not panels[0].get_lines()
    with pytest.raises(ValueError, match="no field"):
        plots.phase_portrait(fields, tmp_path / "bad", trajectories={"missing": path})


# ---------------------------------------------------------------------------------------------------------
# refusals


@pytest.mark.parametrize("call", [
    lambda p: plots.learning_curves(pd.DataFrame(), ["kl_student"], p),
    lambda p: plots.tabular_kl_layout(pd.DataFrame(), p, variants=VARIANTS),
    lambda p: plots.aggregate_intervals(pd.DataFrame(columns=["variant", "statistic", "estimate", "lo", "hi"]), p,
                                        variants=VARIANTS),
    lambda p: plots.performance_profiles(pd.DataFrame(), p, variants=VARIANTS),
    lambda p: plots.poi_matrix(pd.DataFrame(columns=["x", "y", "poi", "lo", "hi"]), p, variants=VARIANTS),
    lambda p: plots.interaction_heatmap(pd.DataFrame(columns=["a", "b", "value"]), p, row="a", col="b"),
    lambda p: plots.phase_portrait({}, p),
], ids=["curves", "tabular", "intervals", "profiles", "poi", "interaction", "phase"])
def test_empty_input_raises(tmp_path: Path, call) -> None:
    with pytest.raises(ValueError, match=r"empty|no fields"):
        call(tmp_path / "fig")
    assert not list(tmp_path.iterdir())


def test_all_nan_values_raise(tmp_path: Path) -> None:
    table = intervals().assign(estimate=np.nan)
    with pytest.raises(ValueError, match="missing value"):
        plots.aggregate_intervals(table, tmp_path / "a", variants=VARIANTS)


def test_aggregate_intervals_degenerate_interval_keeps_its_colour() -> None:
    table = intervals()
    first = table["variant"] == VARIANTS[0]
    table.loc[first, "lo"] = table.loc[first, "estimate"]
    table.loc[first, "hi"] = table.loc[first, "estimate"]
    table.loc[table["variant"] == VARIANTS[1], ["lo", "hi"]] = np.nan
    fig = plots._figure_aggregate_intervals(table, variants=VARIANTS, statistics=("mean",))
    bars = {b.get_gid(): b for b in fig.axes[0].patches}
    palette = plots.variant_palette(VARIANTS)
    for name in VARIANTS[:2]:
        estimate = table.loc[(table["variant"] == name) & (table["statistic"] == "mean"), "estimate"].iloc[0]
        assert bars[name].get_width() > 0
        assert bars[name].get_x() < estimate < bars[name].get_x() + bars[name].get_width()
        assert rgb(bars[name].get_facecolor()) == rgb(palette[name])

"""Paper-ready figures of the analysis layer, with one colour per variant in every figure.

Every public function takes plain frames or arrays whose statistics were computed elsewhere, writes the
figure as PNG and PDF next to ``path`` and returns the written paths. Each has a ``_figure_*`` builder that
returns the open Figure, so tests can inspect what was drawn before it is saved.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

METRIC_LABELS = {
    "kl_student": "KL(pi_T || pi_theta)\nstudent's states",
    "kl_teacher": "KL(pi_T || pi_theta)\nteacher's states",
    "kl_uniform": "KL(pi_T || pi_theta)\nuniform states",
    "return": "return",
    "return_norm": "normalised return\n(uniform 0, teacher 1)",
    "agreement": "argmax agreement",
    "entropy": "student entropy",
    "loss": "distillation loss",
    "score": "score",
}

STATISTIC_TITLES = {"mean": "Mean", "median": "Median", "iqm": "IQM", "optimality_gap": "Optimality gap"}

TABULAR_KL_METRICS = ("kl_student", "kl_teacher", "kl_uniform", "return_norm")

# Font sizes that stay readable when a figure is shrunk to a column width; TrueType fonts in the PDF so the
# text remains editable and searchable.
STYLE = {
    **sns.axes_style("ticks"),
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "figure.titlesize": 11,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
}

# Above this many variants the probability-of-improvement cells only fit the point estimate.
POI_INTERVAL_MAX_VARIANTS = 8


COLOURS = 10  # the colour-blind-safe palette's distinct colours
# line dashes of the first, second... cycle through the colours, so no two variants' lines look alike
DASHES: tuple[tuple[float, ...], ...] = ((), (5.0, 2.0), (1.5, 1.5), (6.0, 2.0, 1.5, 2.0))


def variant_palette(names: Sequence[str]) -> dict[str, tuple]:
    """A colour-blind-safe colour per variant, fixed by the variants' order (repeating after COLOURS)."""
    colours = sns.color_palette("colorblind", COLOURS)
    return {name: colours[i % COLOURS] for i, name in enumerate(names)}


def variant_dashes(names: Sequence[str]) -> dict[str, tuple[float, ...]]:
    """Each variant's line dashes (``()``: solid): solid for the first COLOURS, then a new dash per cycle."""
    return {name: DASHES[(i // COLOURS) % len(DASHES)] for i, name in enumerate(names)}


def _dash_kwargs(dashes: tuple[float, ...]) -> dict[str, Any]:
    return {"dashes": dashes} if dashes else {"linestyle": "-"}


def save(fig: Figure, path: Path) -> list[Path]:
    """Write ``fig`` as PNG and PDF beside ``path`` (its suffix replaced) and close it, so no figure leaks.
    The PDF carries no creation date: the same results give the same bytes, wherever they are drawn."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    written = []
    try:
        with plt.rc_context(STYLE):
            for suffix in (".png", ".pdf"):
                out = path.with_suffix(suffix)
                metadata = {"CreationDate": None} if suffix == ".pdf" else None
                fig.savefig(out, dpi=150, bbox_inches="tight", metadata=metadata)
                written.append(out)
    finally:
        plt.close(fig)
    return written


# ----------------------------------------------------------------------------------------------------------
# input checks and small helpers


def _checked(frame: pd.DataFrame, columns: Iterable[str], who: str, *, dropna: Iterable[str] = ()) -> pd.DataFrame:
    """The frame with rows lacking a needed value dropped; a clear error instead of an empty or broken figure."""
    if frame is None or len(frame) == 0:
        raise ValueError(f"{who}: the frame is empty, there is nothing to plot")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{who}: the frame lacks column(s) {missing}; it has {list(frame.columns)}")
    kept = frame.dropna(subset=list(dropna)) if dropna else frame
    if len(kept) == 0:
        raise ValueError(f"{who}: every row has a missing value in {list(dropna)}, there is nothing to plot")
    return kept


def _present(variants: Sequence[str], observed: Iterable[object]) -> list[str]:
    """The variants that have data, in the caller's order (the order that fixes their colours)."""
    seen = set(observed)
    return [v for v in variants if v in seen]


def _sorted_levels(values: Iterable[object]) -> list[object]:
    """Distinct levels, numbers in numeric order (so 10 follows 9), anything else alphabetically."""
    levels = list(pd.unique(pd.Series(list(values)).dropna()))
    numeric = pd.to_numeric(pd.Series(levels, dtype=object), errors="coerce")
    if levels and not numeric.isna().any():
        return [levels[i] for i in np.argsort(numeric.to_numpy(float), kind="stable")]
    return sorted(levels, key=str)


def _level_text(level: object) -> str:
    """A level as short text: 0.1 rather than 0.1000000001, integers without a decimal point."""
    if isinstance(level, bool | np.bool_):
        return str(level)
    if isinstance(level, int | np.integer):
        return str(int(level))
    if isinstance(level, float | np.floating):
        return f"{level:g}"
    return str(level)


def _variant_legend(fig: Figure, names: Sequence[str], palette: Mapping[str, tuple],
                    dashes: Mapping[str, tuple[float, ...]] | None = None) -> None:
    """One legend for the whole figure, outside on the right, so it never covers data."""
    dashes = dashes or {}
    handles = [Line2D([], [], color=palette[n], lw=2, **_dash_kwargs(dashes.get(n, ()))) for n in names]
    fig.legend(handles, list(names), loc="outside right center", frameon=False)


def _legend_width(names: Iterable[str]) -> float:
    """Inches a right-hand legend of these names takes, so the panels keep their size beside it."""
    return 0.9 + 0.075 * max((len(n) for n in names), default=0)


def _metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric)


# ----------------------------------------------------------------------------------------------------------
# learning curves


def _figure_learning_curves(
    frame: pd.DataFrame,
    metrics: Sequence[str],
    *,
    variants: Sequence[str] | None = None,
    facet: str | None = None,
    log_metrics: Sequence[str] = ("kl_student", "kl_teacher", "kl_uniform"),
    title: str | None = None,
    ci: float | None = 95,
    n_boot: int = 500,
    x_label: str = "iteration",
) -> Figure:
    who = "learning_curves"
    needed = ["variant", "step", "metric", "value"] + ([facet] if facet else [])
    data = _checked(frame, needed, who, dropna=needed)
    metrics = list(metrics)
    if not metrics:
        raise ValueError(f"{who}: no metrics were asked for")
    absent = [m for m in metrics if m not in set(data["metric"])]
    if absent:
        raise ValueError(f"{who}: no data for metric(s) {absent}; the frame has {sorted(set(data['metric']))}")
    names = list(variants) if variants is not None else list(dict.fromkeys(data["variant"]))
    palette, dashes = variant_palette(names), variant_dashes(names)
    data = data[data["metric"].isin(metrics) & data["variant"].isin(names)]
    if data.empty:
        raise ValueError(f"{who}: none of the variants {names} has data for {metrics}")
    shown = _present(names, data["variant"])
    levels = _sorted_levels(data[facet]) if facet else [None]
    errorbar = ("ci", ci) if ci else None
    log = {m for m in metrics if m in log_metrics and bool((data.loc[data["metric"] == m, "value"] > 0).all())}

    with plt.rc_context(STYLE):
        size = (3.3 * len(metrics) + _legend_width(shown), 2.7 * len(levels) + 0.4)
        fig, axes = plt.subplots(len(levels), len(metrics), figsize=size, squeeze=False, sharex=True,
                                 layout="constrained")
        for r, level in enumerate(levels):
            rows = data if facet is None else data[data[facet] == level]
            for c, metric in enumerate(metrics):
                ax = axes[r][c]
                cell = rows[rows["metric"] == metric]
                if not cell.empty:
                    sns.lineplot(data=cell, x="step", y="value", hue="variant", hue_order=shown, palette=palette,
                                 style="variant", style_order=shown, dashes={n: dashes[n] or "" for n in shown},
                                 errorbar=errorbar, n_boot=n_boot, seed=0, ax=ax, legend=False)
                if metric in log:
                    ax.set_yscale("log")
                ax.set_title(_metric_label(metric) if r == 0 else "")
                ax.set_xlabel(x_label if r == len(levels) - 1 else "")
                _step_ticks(ax)
                ax.set_ylabel(f"{facet} = {_level_text(level)}" if facet and c == 0 else "")
                ax.grid(True, alpha=0.3, lw=0.5)
        _variant_legend(fig, shown, palette, dashes)
        if title:
            fig.suptitle(title)
    return fig


def _step_ticks(ax: plt.Axes) -> None:
    """At most five iteration ticks, in thousands (5k, 10k) on an axis that reaches 10,000, so that long
    runs' labels do not run into each other."""
    ax.xaxis.set_major_locator(plt.MaxNLocator(5, integer=True))
    ax.xaxis.set_major_formatter(plt.FuncFormatter(
        lambda x, _: f"{x / 1000:g}k" if ax.get_xlim()[1] >= 10_000 and x != 0 else f"{x:,.0f}"))


def learning_curves(
    frame: pd.DataFrame,
    metrics: Sequence[str],
    path: Path,
    *,
    variants: Sequence[str] | None = None,
    facet: str | None = None,
    log_metrics: Sequence[str] = ("kl_student", "kl_teacher", "kl_uniform"),
    title: str | None = None,
    ci: float | None = 95,
    n_boot: int = 500,
    x_label: str = "iteration",
) -> list[Path]:
    """A metric per column and a ``facet`` level per row: the mean over runs with a bootstrap band.

    ``frame`` is tidy: columns variant, step, metric, value (one row per run, step and metric) and the facet
    column if any. KL metrics get a log axis because they shrink by orders of magnitude, unless a value is not
    positive. ``ci=None`` draws the mean alone. ``x_label`` names what a step counts (network tiers record
    agent steps).
    """
    fig = _figure_learning_curves(frame, metrics, variants=variants, facet=facet, log_metrics=log_metrics,
                                  title=title, ci=ci, n_boot=n_boot, x_label=x_label)
    return save(fig, path)


def tabular_kl_layout(
    frame: pd.DataFrame,
    path: Path,
    *,
    variants: Sequence[str],
    facet: str | None = None,
    title: str | None = None,
) -> list[Path]:
    """Czarnecki et al. (2019) Fig. 3: KL to the teacher under three state distributions beside the return.

    The three state distributions (the student's, the teacher's, uniform) separate variants that only match the
    teacher where the teacher goes from those that match it where the student goes. Metrics absent from
    ``frame`` are left out.
    """
    if frame is None or len(frame) == 0:
        raise ValueError("tabular_kl_layout: the frame is empty, there is nothing to plot")
    if "metric" not in frame.columns:
        raise ValueError("tabular_kl_layout: the frame lacks the column 'metric'")
    observed = set(frame.dropna(subset=["value"])["metric"]) if "value" in frame.columns else set()
    metrics = [m for m in TABULAR_KL_METRICS if m in observed]
    if not metrics:
        raise ValueError(f"tabular_kl_layout: the frame has none of the metrics {list(TABULAR_KL_METRICS)}")
    return learning_curves(frame, metrics, path, variants=variants, facet=facet, title=title)


# ----------------------------------------------------------------------------------------------------------
# aggregate interval estimates


def _figure_aggregate_intervals(
    table: pd.DataFrame,
    *,
    variants: Sequence[str],
    statistics: Sequence[str] = ("mean", "median", "iqm", "optimality_gap"),
    reference: Mapping[str, float] | None = None,
    xlabel: str = "normalised score",
) -> Figure:
    who = "aggregate_intervals"
    data = _checked(table, ["variant", "statistic", "estimate", "lo", "hi"], who, dropna=["estimate"])
    palette = variant_palette(variants)
    data = data[data["variant"].isin(list(variants)) & data["statistic"].isin(list(statistics))]
    stats = [s for s in statistics if s in set(data["statistic"])]
    if not stats:
        raise ValueError(f"{who}: no estimates for the statistics {list(statistics)} of the variants {list(variants)}")
    shown = _present(variants, data["variant"])
    ypos = {name: len(shown) - 1 - i for i, name in enumerate(shown)}
    reference = dict(reference or {})

    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, len(stats), figsize=(2.6 * len(stats) + 1.6, 0.42 * len(shown) + 1.2),
                                 squeeze=False, sharey=True, layout="constrained")
        for ax, stat in zip(axes[0], stats, strict=True):
            rows = data[data["statistic"] == stat].drop_duplicates("variant", keep="last")
            # A bar never gets narrower than this, so a degenerate interval still shows the variant's colour.
            values = rows[["estimate", "lo", "hi"]].to_numpy(float)
            values = values[np.isfinite(values)]
            span = float(np.ptp(values)) if values.size else 0.0
            least = 0.03 * (span if span > 0 else max(float(np.abs(values).max(initial=0.0)), 1.0))
            for row in rows.itertuples(index=False):
                y, colour = ypos[row.variant], palette[row.variant]
                lo, hi = (row.lo, row.hi) if np.isfinite(row.lo) and np.isfinite(row.hi) else (row.estimate,) * 2
                if hi - lo < least:
                    lo, hi = (lo + hi - least) / 2, (lo + hi + least) / 2
                bar = ax.barh(y, hi - lo, left=lo, height=0.6, color=colour, alpha=0.8, edgecolor="none")
                bar.patches[0].set_gid(row.variant)
                ax.vlines(row.estimate, y - 0.3, y + 0.3, color="black", lw=1.3)
            if stat in reference:
                value = float(reference[stat])
                ax.axvline(value, color="0.35", ls="--", lw=1)
                ax.annotate(f"{value:.3g}", (value, 1.0), xycoords=("data", "axes fraction"), xytext=(0, 2),
                            textcoords="offset points", ha="center", va="bottom", fontsize=8, color="0.35")
            ax.set_title(STATISTIC_TITLES.get(stat, stat), pad=12 if reference else 6)
            ax.set_yticks(list(ypos.values()), list(ypos.keys()))
            ax.set_ylim(-0.6, len(shown) - 0.4)
            ax.tick_params(axis="y", length=0)
            ax.spines["left"].set_visible(False)
            ax.grid(True, axis="x", alpha=0.3, lw=0.5)
            ax.xaxis.set_major_locator(plt.MaxNLocator(4))
        fig.supxlabel(xlabel, fontsize=STYLE["axes.labelsize"])
    return fig


def aggregate_intervals(
    table: pd.DataFrame,
    path: Path,
    *,
    variants: Sequence[str],
    statistics: Sequence[str] = ("mean", "median", "iqm", "optimality_gap"),
    reference: Mapping[str, float] | None = None,
    xlabel: str = "normalised score",
) -> list[Path]:
    """Interval estimates of aggregate scores (Agarwal et al. 2021): a panel per statistic, a bar per variant.

    ``table`` has columns variant, statistic, estimate, lo, hi. Intervals rather than point estimates show
    whether two variants are distinguishable at all; an interval too narrow to see is drawn at a small minimum
    width. ``reference`` maps a statistic to a value drawn as a dashed line, e.g. ``{"mean": 1.0}`` for the
    teacher's normalised score.
    """
    fig = _figure_aggregate_intervals(table, variants=variants, statistics=statistics, reference=reference,
                                      xlabel=xlabel)
    return save(fig, path)


# ----------------------------------------------------------------------------------------------------------
# performance profiles


def _figure_performance_profiles(
    profile: pd.DataFrame,
    *,
    variants: Sequence[str],
    xlabel: str = "normalised score tau",
    log_x: bool = False,
) -> Figure:
    who = "performance_profiles"
    data = _checked(profile, ["variant", "tau", "fraction", "lo", "hi"], who, dropna=["tau", "fraction"])
    palette, dashes = variant_palette(variants), variant_dashes(variants)
    data = data[data["variant"].isin(list(variants))]
    shown = _present(variants, data["variant"])
    if not shown:
        raise ValueError(f"{who}: none of the variants {list(variants)} is in the profile")

    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(4.4 + _legend_width(shown), 3.6), layout="constrained")
        for name in shown:
            rows = data[data["variant"] == name].sort_values("tau")
            tau = rows["tau"].to_numpy(float)
            ax.fill_between(tau, rows["lo"].to_numpy(float), rows["hi"].to_numpy(float), color=palette[name],
                            alpha=0.2, lw=0)
            ax.plot(tau, rows["fraction"].to_numpy(float), color=palette[name], lw=1.8, label=name, clip_on=False,
                    **_dash_kwargs(dashes[name]))
        if log_x and bool((data["tau"] > 0).all()):
            ax.set_xscale("log")
        ax.set_ylim(0.0, 1.0)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("fraction of runs with score > tau")
        ax.grid(True, alpha=0.3, lw=0.5)
        _variant_legend(fig, shown, palette, dashes)
    return fig


def performance_profiles(
    profile: pd.DataFrame,
    path: Path,
    *,
    variants: Sequence[str],
    xlabel: str = "normalised score tau",
    log_x: bool = False,
) -> list[Path]:
    """Score distributions as performance profiles: the fraction of runs above each threshold, with a band.

    ``profile`` has columns variant, tau, fraction, lo, hi. A profile shows the whole distribution of scores,
    so a variant that wins on the mean through a few outliers is visible as such. ``log_x`` applies only when
    every threshold is positive.
    """
    return save(_figure_performance_profiles(profile, variants=variants, xlabel=xlabel, log_x=log_x), path)


# ----------------------------------------------------------------------------------------------------------
# probability of improvement


def _figure_poi_matrix(frame: pd.DataFrame, *, variants: Sequence[str]) -> Figure:
    who = "poi_matrix"
    data = _checked(frame, ["x", "y", "poi", "lo", "hi"], who, dropna=["x", "y"])
    data = data[data["x"].isin(list(variants)) & data["y"].isin(list(variants)) & (data["x"] != data["y"])]
    if data.duplicated(["x", "y"]).any():
        pairs = data.loc[data.duplicated(["x", "y"]), ["x", "y"]].drop_duplicates().to_records(index=False).tolist()
        raise ValueError(f"{who}: more than one row for the pair(s) {pairs}")
    names = _present(variants, set(data["x"]) | set(data["y"]))
    if not names:
        raise ValueError(f"{who}: no pair of distinct variants among {list(variants)}")
    index = {name: i for i, name in enumerate(names)}
    n = len(names)
    poi, lo, hi = (np.full((n, n), np.nan) for _ in range(3))
    for row in data.itertuples(index=False):
        i, j = index[row.x], index[row.y]
        poi[i, j], lo[i, j], hi[i, j] = row.poi, row.lo, row.hi
    with_interval = n <= POI_INTERVAL_MAX_VARIANTS
    annot = np.full((n, n), "", dtype=object)
    for i in range(n):
        for j in range(n):
            if np.isnan(poi[i, j]):
                continue
            text = f"{poi[i, j]:.2f}"
            if with_interval and np.isfinite(lo[i, j]) and np.isfinite(hi[i, j]):
                text += f"\n[{lo[i, j]:.2f}, {hi[i, j]:.2f}]"
            annot[i, j] = text

    cell = 0.95 if with_interval else 0.6
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(cell * n + 2.6, cell * n + 1.4), layout="constrained")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PendingDeprecationWarning)  # seaborn's use of Colormap.set_bad
            sns.heatmap(pd.DataFrame(poi, index=names, columns=names), ax=ax, cmap="RdBu", vmin=0.0, vmax=1.0,
                        center=0.5, annot=annot, fmt="", annot_kws={"fontsize": 8 if with_interval else 7},
                        linewidths=0.5, linecolor="white", square=True,
                        cbar_kws={"label": "probability of improvement", "shrink": 0.8})
        ax.set_title("P(row > column)")
        ax.set_xlabel("")
        ax.set_ylabel("")
        ax.tick_params(length=0)
        plt.setp(ax.get_xticklabels(), rotation=35, ha="right", rotation_mode="anchor")
        plt.setp(ax.get_yticklabels(), rotation=0)
    return fig


def poi_matrix(frame: pd.DataFrame, path: Path, *, variants: Sequence[str]) -> list[Path]:
    """Pairwise probability of improvement: cell (x, y) is the chance a run of x scores above a run of y.

    ``frame`` has columns x, y, poi, lo, hi. Unlike differences of means, this reads the same on every
    normalisation of the score. Cells carry the interval only while the matrix is small enough to read it.
    """
    return save(_figure_poi_matrix(frame, variants=variants), path)


# ----------------------------------------------------------------------------------------------------------
# interaction of two factors


def _figure_interaction_heatmap(
    frame: pd.DataFrame,
    *,
    row: str,
    col: str,
    value: str = "value",
    title: str | None = None,
    fmt: str = ".3g",
) -> Figure:
    who = "interaction_heatmap"
    data = _checked(frame, [row, col, value], who, dropna=[row, col])
    rows, cols = _sorted_levels(data[row]), _sorted_levels(data[col])
    numbers = data.assign(**{value: pd.to_numeric(data[value], errors="coerce")}).dropna(subset=[value])
    if numbers.empty:
        raise ValueError(f"{who}: the column {value!r} has no numeric value")
    means = numbers.groupby([row, col], sort=False)[value].mean().unstack(col)
    means = means.reindex(index=rows, columns=cols)
    means.index = [_level_text(v) for v in rows]
    means.columns = [_level_text(v) for v in cols]

    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(0.85 * len(cols) + 2.6, 0.55 * len(rows) + 1.6), layout="constrained")
        sns.heatmap(means.astype(float), ax=ax, cmap="viridis", annot=True, fmt=fmt, annot_kws={"fontsize": 8},
                    linewidths=0.5, linecolor="white", cbar_kws={"label": value})
        ax.set_xlabel(col)
        ax.set_ylabel(row)
        ax.tick_params(length=0)
        plt.setp(ax.get_yticklabels(), rotation=0)
        ax.set_title(title if title is not None else f"mean {value} by {row} and {col}")
    return fig


def interaction_heatmap(
    frame: pd.DataFrame,
    path: Path,
    *,
    row: str,
    col: str,
    value: str = "value",
    title: str | None = None,
    fmt: str = ".3g",
) -> list[Path]:
    """The mean of ``value`` over the runs in each (``row`` level, ``col`` level) cell, annotated.

    A two-factor table shows at a glance whether one factor's effect depends on the other. Cells without runs
    stay blank; levels are sorted, numbers numerically.
    """
    return save(_figure_interaction_heatmap(frame, row=row, col=col, value=value, title=title, fmt=fmt), path)


# ----------------------------------------------------------------------------------------------------------
# phase portraits


def _field_arrays(name: str, field: Sequence[np.ndarray]) -> tuple[np.ndarray, ...]:
    """X, Y, U, V as float arrays in the xy layout streamplot needs (a meshgrid of indexing "ij" is transposed)."""
    if len(field) != 4:
        raise ValueError(f"phase_portrait: field {name!r} must be (X, Y, U, V), got {len(field)} arrays")
    x, y, u, v = (np.asarray(a, dtype=float) for a in field)
    if x.ndim != 2 or not (x.shape == y.shape == u.shape == v.shape):
        raise ValueError(f"phase_portrait: field {name!r} needs four 2-D arrays of one shape, got "
                         f"{[a.shape for a in (x, y, u, v)]}")
    if x.shape[0] > 1 and np.allclose(x, x[:, :1]) and not np.allclose(x, x[:1, :]):
        x, y, u, v = x.T, y.T, u.T, v.T
    return x, y, u, v


def _figure_phase_portrait(
    fields: Mapping[str, Sequence[np.ndarray]],
    *,
    trajectories: Mapping[str, np.ndarray] | None = None,
    xlabel: str = "theta_0",
    ylabel: str = "theta_1",
    title: str | None = None,
) -> Figure:
    who = "phase_portrait"
    if not fields:
        raise ValueError(f"{who}: no fields to plot")
    trajectories = dict(trajectories or {})
    unknown = [name for name in trajectories if name not in fields]
    if unknown:
        raise ValueError(f"{who}: trajectories for {unknown} have no field; fields are {list(fields)}")
    arrays = {name: _field_arrays(name, field) for name, field in fields.items()}
    logs = {}
    for name, (_, _, u, v) in arrays.items():
        speed = np.hypot(u, v)
        with np.errstate(divide="ignore", invalid="ignore"):
            logs[name] = np.where(speed > 0, np.log10(np.where(speed > 0, speed, 1.0)), np.nan)
    finite = np.concatenate([a[np.isfinite(a)] for a in logs.values()])
    if finite.size == 0:
        raise ValueError(f"{who}: every field is zero or missing everywhere")
    # One colour scale for all panels, so speeds compare across the objectives shown side by side.
    norm = Normalize(vmin=float(finite.min()), vmax=float(finite.max()) if finite.max() > finite.min()
                     else float(finite.min()) + 1.0)
    cmap = plt.get_cmap("viridis")

    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, len(arrays), figsize=(3.6 * len(arrays) + 0.8, 3.5), squeeze=False,
                                 layout="constrained")
        for ax, (name, (x, y, u, v)) in zip(axes[0], arrays.items(), strict=True):
            bad = ~(np.isfinite(u) & np.isfinite(v))
            colour = np.where(np.isfinite(logs[name]), logs[name], norm.vmin)
            ax.streamplot(x, y, np.ma.array(u, mask=bad), np.ma.array(v, mask=bad), color=colour, cmap=cmap,
                          norm=norm, density=1.1, linewidth=0.9, arrowsize=0.8)
            step = (max(1, x.shape[0] // 7), max(1, x.shape[1] // 7))
            sub = (slice(step[0] // 2, None, step[0]), slice(step[1] // 2, None, step[1]))
            speed = np.hypot(u[sub], v[sub])
            with np.errstate(divide="ignore", invalid="ignore"):
                du, dv = np.where(speed > 0, u[sub] / speed, 0.0), np.where(speed > 0, v[sub] / speed, 0.0)
            ax.quiver(x[sub], y[sub], du, dv, color="0.3", alpha=0.7, angles="xy", pivot="mid", scale=None,
                      width=0.006, headwidth=4)
            for path in _trajectory_list(trajectories.get(name)):
                ax.plot(path[:, 0], path[:, 1], color="#d55e00", lw=2.0, zorder=4)
                ax.plot(*path[0], marker="o", ms=7, mfc="white", mec="black", mew=1.2, ls="none", zorder=5)
                ax.plot(*path[-1], marker="X", ms=8, mfc="black", mec="white", mew=0.8, ls="none", zorder=5)
            ax.set_xlim(float(np.nanmin(x)), float(np.nanmax(x)))
            ax.set_ylim(float(np.nanmin(y)), float(np.nanmax(y)))
            ax.set_title(name)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel if ax is axes[0][0] else "")
        mappable = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
        fig.colorbar(mappable, ax=list(axes[0]), label="log10 speed", shrink=0.9)
        if trajectories:
            handles = [Line2D([], [], color="#d55e00", lw=2),
                       Line2D([], [], marker="o", ms=7, mfc="white", mec="black", ls="none"),
                       Line2D([], [], marker="X", ms=8, mfc="black", mec="white", ls="none")]
            fig.legend(handles, ["trajectory", "start", "end"], loc="outside lower center", ncols=3, frameon=False)
        if title:
            fig.suptitle(title)
    return fig


def _trajectory_list(value: np.ndarray | Sequence[np.ndarray] | None) -> list[np.ndarray]:
    """A panel's trajectories: one [T, 2] array, or several as [K, T, 2] or a list of [T, 2] arrays."""
    if value is None:
        return []
    if isinstance(value, np.ndarray):
        paths = [value] if value.ndim == 2 else list(value)
    else:
        items = list(value)
        paths = [np.asarray(items)] if items and np.ndim(items[0]) == 1 else items
    out = []
    for p in paths:
        p = np.asarray(p, dtype=float)
        if p.ndim != 2 or p.shape[1] != 2:
            raise ValueError(f"phase_portrait: a trajectory must be a [T, 2] array, got shape {p.shape}")
        p = p[np.isfinite(p).all(axis=1)]
        if len(p):
            out.append(p)
    return out


def phase_portrait(
    fields: Mapping[str, Sequence[np.ndarray]],
    path: Path,
    *,
    trajectories: Mapping[str, np.ndarray] | None = None,
    xlabel: str = "theta_0",
    ylabel: str = "theta_1",
    title: str | None = None,
) -> list[Path]:
    """Czarnecki et al. (2019) Fig. 2: the flow each update rule induces on a two-parameter policy.

    ``fields`` maps a panel name to (X, Y, U, V): a meshgrid and the signed direction the parameters move.
    Streamlines are coloured by log speed on one scale for all panels; ``trajectories`` maps a panel name to a
    [T, 2] path, drawn with its start (circle) and end (cross).
    """
    fig = _figure_phase_portrait(fields, trajectories=trajectories, xlabel=xlabel, ylabel=ylabel, title=title)
    return save(fig, path)


def policy_curves(curves: Mapping[str, Mapping[str, np.ndarray]], path: Path, *, title: str | None = None,
                  loss_label: str = "expected loss") -> list[Path]:
    """Czarnecki et al. (2019) Fig. 2's curves: per recipe (one column each), the probabilities of R in s0 and
    in sR over steps (top) and the loss (bottom). ``curves`` maps a recipe to arrays ``step``, ``pi_R_s0``,
    ``pi_R_sR`` and ``loss`` of one length."""
    who = "policy_curves"
    if not curves:
        raise ValueError(f"{who}: no curves to plot")
    need = ("step", "pi_R_s0", "pi_R_sR", "loss")
    for name, c in curves.items():
        missing = [k for k in need if k not in c]
        if missing or len({len(c[k]) for k in need if k in c}) != 1:
            raise ValueError(f"{who}: {name!r} needs arrays {', '.join(need)} of one length; missing {missing}")
    palette = sns.color_palette("colorblind")
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(2, len(curves), figsize=(3.6 * len(curves) + 0.4, 4.6), squeeze=False,
                                 sharex="col", layout="constrained")
        for col, (name, c) in enumerate(curves.items()):
            top, bottom = axes[0][col], axes[1][col]
            top.plot(c["step"], c["pi_R_s0"], color=palette[0], lw=1.4, label="pi(R | s0)")
            top.plot(c["step"], c["pi_R_sR"], color=palette[1], lw=1.4, label="pi(R | sR)")
            top.set_ylim(-0.02, 1.02)
            top.set_title(name)
            bottom.plot(c["step"], c["loss"], color=palette[2], lw=1.4)
            bottom.set_xlabel("step")
            for ax in (top, bottom):
                ax.grid(True, alpha=0.3, lw=0.5)
            if col == 0:
                top.set_ylabel("probability")
                bottom.set_ylabel(loss_label)
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=2, frameon=False)
        if title:
            fig.suptitle(title)
    return save(fig, path)


def training_curve(frame: pd.DataFrame, path: Path, *, title: str, window: int = 100) -> list[Path]:
    """A teacher's learning curve: every training episode's unclipped score (faint) and its running mean
    over ``window`` episodes, against agent steps. ``frame``: columns step, score."""
    data = _checked(frame, ["step", "score"], "training_curve", dropna=["step", "score"])
    if data.empty:
        raise ValueError("training_curve: no finished training episodes")
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(5.5, 3.2), layout="constrained")
        ax.plot(data["step"], data["score"], lw=0.4, alpha=0.25, color="grey", label="episode")
        ax.plot(data["step"], data["score"].rolling(window, min_periods=1).mean(), lw=1.6,
                color=sns.color_palette("colorblind")[0], label=f"mean of {window}")
        ax.set_xlabel("agent steps")
        ax.set_ylabel("score (unclipped)")
        ax.set_title(title)
        ax.grid(True, alpha=0.3, lw=0.5)
        ax.legend(frameon=False)
    return save(fig, path)

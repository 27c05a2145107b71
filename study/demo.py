"""`distill demo`: the built-in demo study through the grid runner, then a table and a figure."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from analysis.load import load_curves
from analysis.plots import learning_curves
from analysis.stats import bootstrap_mean_ci
from study.grid import Study, load_study, parse_study, to_toml
from study.output import write_text
from study.runner import RunReport, run_study

SUMMARY_METRICS = ("return_norm", "kl_student", "kl_teacher", "kl_uniform", "agreement")


def demo_study(mdps: int | None = None, seeds: int | None = None, iterations: int | None = None) -> Study:
    """The built-in ``demo`` study, optionally changed. A changed study is another study: it needs its own
    results folder (the store refuses to mix it with the default demo's)."""
    study = load_study("demo")
    if mdps is None and seeds is None and iterations is None:
        return study
    spec = study.spec.model_copy(deep=True)
    if mdps is not None:
        spec.fixed["mdps"] = mdps
    if iterations is not None:
        spec.fixed["iterations"] = iterations
        spec.fixed["eval_every"] = max(1, min(spec.fixed.get("eval_every", 20), iterations))
    if seeds is not None:
        spec.seeds = seeds
    return parse_study(to_toml(spec), f"{study.path} with overrides")


def summarise(frame: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """Final metrics per variant: mean over MDPs (seeds averaged first) with a 95% bootstrap CI."""
    last = frame[frame["step"] == frame["step"].max()]
    rows = []
    for name in names:
        row: dict[str, object] = {"variant": name}
        sub = last[last["variant"] == name]
        for metric in SUMMARY_METRICS:
            per_mdp = sub[sub["metric"] == metric].groupby("mdp")["value"].mean().to_numpy()
            lo, hi = bootstrap_mean_ci(per_mdp)
            row[metric] = per_mdp.mean() if len(per_mdp) else float("nan")
            row[f"{metric}_lo"] = lo
            row[f"{metric}_hi"] = hi
        rows.append(row)
    return pd.DataFrame(rows)


def markdown_table(summary: pd.DataFrame) -> str:
    """The summary as a Markdown table, mean [95% CI]."""
    head = "| variant | " + " | ".join(SUMMARY_METRICS) + " |"
    sep = "|---|" + "---|" * len(SUMMARY_METRICS)
    lines = [head, sep]
    for _, r in summary.iterrows():
        cells = [f"{r[m]:.3g} [{r[m + '_lo']:.3g}, {r[m + '_hi']:.3g}]" for m in SUMMARY_METRICS]
        lines.append(f"| {r['variant']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_demo(out: Path, study: Study | None = None, *, workers: int | None = None,
             progress: Callable[[RunReport], None] | None = None) -> tuple[RunReport, dict[str, Path]]:
    """Run (or resume) the demo study into ``out``, then write its table and figure there."""
    study = study or demo_study()
    out = Path(out)
    report = run_study(study, out, workers=workers, on_update=progress)
    frame = load_curves(out)
    names = list(study.spec.factors["variant"])
    summary = summarise(frame, names)
    paths = {name: out / name for name in ("summary.md", "summary.csv", "curves.png", "curves.pdf")}
    write_text(paths["summary.md"], markdown_table(summary))
    write_text(paths["summary.csv"], summary.to_csv(index=False))
    p = study.cells[0].params
    seeds = study.spec.seed_list
    learning_curves(frame, ["return_norm", "kl_student", "kl_teacher", "kl_uniform"], out / "curves",
                    variants=names,
                    title=f"{p['mdps']} grid worlds ({p['size']}x{p['size']}) x {len(seeds)} seeds, "
                          f"teacher tau {p['tau']:g}")
    return report, paths

"""`distill analyze`: statistics, tables, figures and a report from a study's results folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from study.cli.common import cli_errors, err, out


@cli_errors
def analyze_cmd(
    folder: Annotated[Path, typer.Argument(help="A study results folder (finished or not).")],
    out_dir: Annotated[Path | None, typer.Option("--out", help="Where to write (default: FOLDER/analysis).")] = None,
    metric: Annotated[str, typer.Option(help="Run-level metric to compare (final value).")] = "return_norm",
    baseline: Annotated[str | None, typer.Option(help="Test every variant against this one only.")] = None,
    factors: Annotated[str | None, typer.Option(help="Comma-separated factors for the ANOVA; the first two "
                                                     "make the interaction heatmap (default: all).")] = None,
    facet: Annotated[str | None, typer.Option(help="Facet learning curves by this factor (default: task).")] = None,
    reps: Annotated[int, typer.Option(help="Bootstrap resamples.")] = 2000,
    permutations: Annotated[int, typer.Option(help="Permutations of the ANOVA's permutation test.")] = 2000,
    threshold: Annotated[float, typer.Option(help="Fraction of the teacher's score for steps-to-threshold.")] = 0.9,
    plan_seeds: Annotated[bool, typer.Option("--plan-seeds", help="Seeds needed to detect --delta.")] = False,
    delta: Annotated[float | None, typer.Option(help="Difference to detect (default: the observed one).")] = None,
    power: Annotated[float, typer.Option(help="Power for --plan-seeds.")] = 0.8,
    seed: Annotated[int, typer.Option(help="Seed of every bootstrap and permutation draw.")] = 0,
) -> None:
    """Statistics, tables (CSV, Markdown, LaTeX), figures (PNG, PDF) and a report (report.md and a
    self-contained report.html) from a study's results folder."""
    from analysis.analyze import Options, analyze

    names = None if factors is None else [f.strip() for f in factors.split(",") if f.strip()]
    options = Options(metric=metric, baseline=baseline, factors=names, facet=facet, reps=reps,
                      permutations=permutations, threshold=threshold, plan_seeds=plan_seeds, delta=delta,
                      power=power, seed=seed)
    with err.status("analysing") as status:
        outcome = analyze(folder, out_dir, options, progress=lambda msg: status.update(f"analysing: {msg}"))
    out.print(f"cells: {outcome.done} done, {outcome.failed} failed, {outcome.missing} not finished")
    for line in outcome.headline:
        out.print(f"- {line}", soft_wrap=True)
    out.print(f"report: {outcome.report_html} (and report.md, tables/, figures/)")

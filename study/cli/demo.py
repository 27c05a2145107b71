"""`distill demo`: the built-in demo study through the grid runner, then its analysis report.

Imports of the runner and the analysis wait for the call, so that registering the command costs nothing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from study.cli.common import UsageError, cli_errors, err, out, progress

if TYPE_CHECKING:
    from analysis.analyze import Outcome
    from study.run.runner import RunReport
    from study.spec.grid import Study


def demo_study(mdps: int | None = None, seeds: int | None = None, iterations: int | None = None) -> Study:
    """The built-in ``demo`` study, optionally changed. A changed study is another study: it needs its own
    results folder (the store refuses to mix it with the default demo's)."""
    from study.spec.grid import load_study, parse_study, to_toml

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


def run_demo(out: Path, study: Study | None = None, *, workers: int | None = None,
             progress: Callable[[RunReport], None] | None = None) -> tuple[RunReport, Outcome]:
    """Run (or resume) the demo study into ``out``, then analyse it into ``out/analysis``."""
    from analysis.analyze import analyze
    from study.run.runner import run_study

    study = study or demo_study()
    out = Path(out)
    report = run_study(study, out, workers=workers, on_update=progress)
    return report, analyze(out)


@cli_errors
def demo_cmd(
    out_dir: Annotated[Path, typer.Option("--out", help="Results folder of the demo study.")] = Path("results/demo"),
    mdps: Annotated[int | None, typer.Option(help="Number of grid worlds (default: the demo study's).")] = None,
    seeds: Annotated[int | None, typer.Option(help="Seeds per grid world and variant (default: the study's).")] = None,
    iterations: Annotated[int | None, typer.Option(help="Training iterations (default: the study's).")] = None,
    workers: Annotated[int | None, typer.Option(help="Parallel workers (default: one per core).")] = None,
) -> None:
    """Run the built-in demo study (7 variants, 20 grid worlds x 3 seeds) through the grid runner, then
    analyse it (`distill analyze`) and print where the report is. Interrupted, it resumes where it stopped."""
    for name, value in (("mdps", mdps), ("seeds", seeds), ("iterations", iterations), ("workers", workers)):
        if value is not None and value < 1:
            raise UsageError(f"--{name}: {value} is out of range; allowed: {name} >= 1")
    study = demo_study(mdps=mdps, seeds=seeds, iterations=iterations)
    with progress() as bar:
        task = bar.add_task("demo cells", total=None)

        def update(r: RunReport) -> None:
            bar.update(task, total=r.total - r.skipped, completed=len(r.done) + len(r.failed),
                       description=f"demo cells: {len(r.done)} done, {len(r.failed)} failed, {r.left} left")

        try:
            report, outcome = run_demo(out_dir, study, workers=workers, progress=update)
        except KeyboardInterrupt:
            err.print(f"interrupted; finished cells are kept in {out_dir}; run the same command to resume",
                      soft_wrap=True)
            raise typer.Exit(130) from None
    out.print(final_table(outcome.out / "tables" / "final.csv"))
    if report.failed:
        out.print(f"[red]{len(report.failed)} cells failed[/]: distill grid status {out_dir}")
    out.print(f"cells:  {out_dir}/<cell id>/ (config, metrics.parquet, summary, provenance)")
    out.print(f"report: {outcome.report_html} (and report.md, tables/, figures/)")


def final_table(csv: Path) -> Table:
    """Final metrics per arm as a terminal table of means (the intervals are in the report)."""
    import pandas as pd

    final = pd.read_csv(csv)
    wide = final.pivot(index="arm", columns="metric", values="mean").reindex(list(dict.fromkeys(final["arm"])))
    headers = {"return_norm": "return", "kl_student": "KL stu.", "kl_teacher": "KL tea.",
               "kl_uniform": "KL uni.", "agreement": "agree"}
    metrics = [m for m in headers if m in wide.columns]
    table = Table(title="final metrics: mean over runs (intervals in the report)")
    table.add_column("variant", overflow="fold", max_width=22)
    for metric in metrics:
        table.add_column(headers[metric], justify="right", no_wrap=True, min_width=6)
    for arm, r in wide.iterrows():
        table.add_row(str(arm), *(f"{r[m]:.3f}" for m in metrics))
    table.caption = ("return: normalised (uniform 0, teacher 1); KL(pi_T || pi_theta) under the student's, "
                     "the teacher's and the uniform state distribution; agree: argmax agreement")
    return table

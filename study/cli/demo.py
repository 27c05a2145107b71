"""`distill demo`: the built-in demo study through the grid runner, then its analysis report."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from analysis.analyze import Outcome, analyze
from study.run.runner import RunReport, run_study
from study.spec.grid import Study, load_study, parse_study, to_toml


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


def run_demo(out: Path, study: Study | None = None, *, workers: int | None = None,
             progress: Callable[[RunReport], None] | None = None) -> tuple[RunReport, Outcome]:
    """Run (or resume) the demo study into ``out``, then analyse it into ``out/analysis``."""
    study = study or demo_study()
    out = Path(out)
    report = run_study(study, out, workers=workers, on_update=progress)
    return report, analyze(out)

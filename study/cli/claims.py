"""`distill claims`: the papers' convergence claims on toy MDPs, with the Fig. 2 toy's phase portrait."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from study.cli.common import UsageError, cli_errors, err, out, progress


@cli_errors
def claims_cmd(
    quick: Annotated[bool, typer.Option("--quick", help="A smaller version (seconds instead of minutes).")] = False,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the verdicts and evidence here.")] = None,
    only: Annotated[list[str] | None, typer.Option("--only", help="Run only this claim (repeatable).")] = None,
    figures: Annotated[Path | None, typer.Option(help="Also draw the Fig. 2 toys' phase portraits and curves "
                                                     "over steps into this folder (fig2_paper_toy, "
                                                     "fig2_cross_entropy_toy, each with _curves; .png and .pdf)."
                                                     )] = None,
    fig3_results: Annotated[Path | None, typer.Option(
        "--fig3-results", help="Also grade Fig. 3's claim on a finished study of its arms (control teacher, "
                               "student, uniform, with return_norm and the three KL metrics), at each setting of "
                               "its other factors: e.g. results/czarnecki_fig3.")] = None,
) -> None:
    """Check the papers' convergence claims on toy MDPs; exit 1 if a claim does not hold or holds only in
    part (a claim the run could not evaluate, as --quick without Fig. 4's largest action counts, does not
    count)."""
    import torch

    from study.store.format import check_writable_file, write_json
    from study.tabular.claims import CLAIMS, run_claims

    keys = [c.key for c in CLAIMS]
    for key in only or []:
        if key not in keys:
            raise UsageError(f"--only: unknown claim {key!r}; allowed: {', '.join(keys)}")
    if json_path is not None:
        check_writable_file(json_path)
    if figures is not None and figures.exists() and not figures.is_dir():
        raise UsageError(f"--figures {figures}: is a file; allowed: a folder (created if missing)")
    graded = fig3_on_results(fig3_results) if fig3_results is not None else []
    torch.set_num_threads(1)
    todo = [c for c in CLAIMS if not only or c.key in only]
    with progress() as bar:
        task = bar.add_task("checking claims", total=len(todo))
        results = run_claims(quick=quick, only=only, on_done=lambda r: bar.advance(task))
    results += graded
    table = Table(title="claims" + (" (quick)" if quick else ""), show_lines=True)
    for col in ("claim", "reference", "holds", "evidence"):
        table.add_column(col, overflow="fold")
    colour = {"yes": "green", "partly": "yellow", "no": "red", "not evaluated": "dim"}
    for r in results:
        table.add_row(escape(r.claim), escape(r.reference), f"[{colour[r.verdict]}]{r.verdict}[/]", escape(r.summary))
    out.print(table)
    if json_path is not None:
        write_json(json_path, {"quick": quick, "claims": [r.to_dict() for r in results]})
        out.print(f"wrote {json_path}")
    if figures is not None:
        figures.mkdir(parents=True, exist_ok=True)
        with err.status("drawing the Fig. 2 toys' phase portraits and curves"):
            written = draw_toy_figures(figures, quick=quick)
        out.print(f"wrote {', '.join(str(p) for p in written)}")
    failed = [f"{r.key} ({r.verdict})" for r in results if r.failed]
    skipped = [r.key for r in results if r.verdict == "not evaluated"]
    if skipped:
        out.print(f"not evaluated in this run: {escape(', '.join(skipped))}")
    if failed:
        out.print(f"[red]{len(failed)} of {len(results)} claims do not hold in full:[/] {escape(', '.join(failed))}")
        raise typer.Exit(1)
    out.print(f"all {len(results) - len(skipped)} claims evaluated hold")


def fig3_on_results(folder: Path) -> list:
    """Fig. 3's verdict on a finished study, one per setting of its other factors (the teacher's temperature,
    the grid worlds' noise...), graded by the claim's own rule
    (``study.tabular.claims._fig3_grade``) on the study's measurements: per grid world, the first evaluation
    at which each arm's normalised return reaches 0.9, and the area under each KL curve. The numbers come from
    ``analysis``, the grading from ``study``, and only the command line knows both."""
    import numpy as np

    from analysis.load import AnalysisError, load_results
    from analysis.stats import curve_metrics
    from study.tabular import claims as C

    try:
        results = load_results(folder)
    except AnalysisError as exc:
        raise UsageError(f"--fig3-results {folder}: {exc}") from None
    cells = results.cells[results.cells["status"] == "done"]
    if "control" not in cells.columns or set(cells["control"]) != set(C.FIG3_ARMS):
        raise UsageError(f"--fig3-results {folder}: not a study of Fig. 3's arms; allowed: a finished study whose "
                         f"cells vary control over {', '.join(C.FIG3_ARMS)}, as czarnecki_fig3")
    reach = curve_metrics(results.curves, "return_norm", threshold=0.9)
    areas = {metric: curve_metrics(results.curves, metric) for metric in C.FIG3_KL.values()}
    steps = np.sort(results.curves["step"].unique())
    every = float(steps[steps > 0][0])
    out = []
    keys = [k for k in (*results.arm_keys, *results.task_keys) if k != "control"]

    def per_mdp(frame, column, cell):
        rows = frame[frame["cell"] == cell].sort_values("mdp")
        return rows[column].to_numpy(dtype=float)

    groups = cells.groupby(keys, sort=False) if keys else [((), cells)]
    for values, group in groups:
        values = values if isinstance(values, tuple) else (values,)
        setting = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                            for k, v in zip(keys, values, strict=True))
        if group["control"].duplicated().any():
            raise UsageError(f"--fig3-results {folder}: several cells per arm at {setting or 'one setting'} (seeds "
                             "> 1); allowed: one cell per arm and setting, as czarnecki_fig3")
        by_control = dict(zip(group["control"], group["cell"], strict=True))
        if set(by_control) != set(C.FIG3_ARMS):
            missing = sorted(set(C.FIG3_ARMS) - set(by_control))
            raise UsageError(f"--fig3-results {folder}: at {setting or 'one setting'} the arms {', '.join(missing)} "
                             "are not finished; allowed: a study whose every arm has finished")
        first = {a: np.nan_to_num(per_mdp(reach, "steps_to_threshold", by_control[a]), nan=np.inf)
                 for a in C.FIG3_ARMS}
        kl = {m: {a: per_mdp(areas[m], "auc", by_control[a]) for a in C.FIG3_ARMS} for m in C.FIG3_KL.values()}
        verdict, evidence = C._fig3_grade(first, kl, every)
        evidence.update({"study": str(folder), "setting": dict(zip(keys, values, strict=True)),
                         "mdps": len(first["teacher"])})
        summary = (f"{folder.name}, {setting or 'all cells'}, {len(first['teacher'])} grid worlds: "
                   f"{C.fig3_summary(evidence)}")
        out.append(C.ClaimResult(f"fig3_student_driven_faster@{folder.name}/{setting.replace(', ', '/')}",
                                 next(c.claim for c in C.CLAIMS if c.key == "fig3_student_driven_faster"),
                                 "Czarnecki et al. 2019, Fig. 3", verdict, summary, evidence))
    return out


def draw_toy_figures(folder: Path, quick: bool = False) -> list[Path]:
    """Fig. 2 as the paper draws it, for the paper's toy and the cross-entropy toy: the flow of both recipes
    on the policy (pi(R|s0), pi(R|sR)) with their paths from the figure's start (NAME.png and .pdf), and
    pi(R|s0), pi(R|sR) and the expected loss over steps (NAME_curves). The numbers come from ``study``, the
    drawing from ``analysis``, and only the command line knows both."""
    import numpy as np

    from analysis.plots import phase_portrait, policy_curves
    from study.tabular import paper_toy

    lr, steps = 0.1, 6000 if quick else 20000
    written: list[Path] = []
    for name, choice in (("fig2_paper_toy", paper_toy.PAPER), ("fig2_cross_entropy_toy", paper_toy.CROSS_ENTROPY)):
        fields = {recipe: paper_toy.policy_field(recipe, choice, n=11 if quick else 21)
                  for recipe in paper_toy.RECIPES}
        lines = {recipe: paper_toy.curves(recipe, choice, lr, steps, every=10) for recipe in paper_toy.RECIPES}
        paths = {recipe: np.stack([c["pi_R_s0"], c["pi_R_sR"]], -1) for recipe, c in lines.items()}
        label = f"{choice.label()}; lr {lr:g}, from pi(R|s0) = 0.12, pi(R|sR) = 0.10"
        written += phase_portrait(fields, folder / name, trajectories=paths, xlabel="pi(R | s0)",
                                  ylabel="pi(R | sR)", title=label)
        written += policy_curves(lines, folder / f"{name}_curves", title=label)
    return written

"""`distill grid plan|run|status`: check a study, run its cells (resumably), and count what is done."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from study.cli.common import UsageError, cli_errors, err, out, progress

if TYPE_CHECKING:
    from study.run.runner import RunReport


@cli_errors
def grid_plan_cmd(
    study: Annotated[str, typer.Argument(help="A built-in study name or a path to a TOML file.")],
    show: Annotated[int, typer.Option(help="How many cells to list.")] = 10,
) -> None:
    """Validate a study and show its factors, cell count and first cells, without running anything."""
    from study.run.checks import check_study
    from study.spec import load_study

    if show < 0:
        raise UsageError(f"--show: {show} is out of range; allowed: show >= 0")
    s = check_study(load_study(study))
    spec = s.spec
    out.print(f"[bold]{spec.name}[/] ({spec.tier}) from {s.path}")
    if spec.description:
        out.print(spec.description)
    for key, values in spec.factors.items():
        out.print(f"  factor {key}: {', '.join(map(str, values))}")
    for key, value in spec.fixed.items():
        out.print(f"  fixed  {key} = {value}")
    if spec.exclude or spec.include:
        out.print(f"  {len(spec.exclude)} exclude and {len(spec.include)} include rule(s)")
    seeds = spec.seed_list
    out.print(f"{s.points} grid points x {len(seeds)} seeds ({', '.join(map(str, seeds))}) = {len(s.cells)} cells")
    table = Table(title=f"first {min(show, len(s.cells))} cells")
    table.add_column("cell id", no_wrap=True)
    keys = list(spec.factors) or ["variant"]
    for key in keys:
        table.add_column(key)
    table.add_column("seed")
    for cell in s.cells[:show]:
        table.add_row(cell.id, *(str(cell.params.get(k, "")) for k in keys), str(cell.seed))
    out.print(table)


@cli_errors
def grid_run_cmd(
    study: Annotated[str, typer.Argument(help="A built-in study name or a path to a TOML file.")],
    out_dir: Annotated[Path | None, typer.Option("--out", help="Results folder (default: results/<study>).")] = None,
    workers: Annotated[int | None, typer.Option(help="Parallel workers (default: one per core).")] = None,
    backend: Annotated[str, typer.Option(help="local (process pool) or ray.")] = "local",
    ray_address: Annotated[str | None, typer.Option(help="Join this Ray cluster instead of starting one.")] = None,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Run failed cells again.")] = False,
    device: Annotated[str, typer.Option(help="Where network cells run their networks: cpu, auto (the GPU "
                                             "when present) or cuda. Not part of a cell's id. Tabular studies "
                                             "run on the CPU.")] = "cpu",
    reuse: Annotated[list[Path] | None, typer.Option(
        "--reuse", help="Another study's results folder: its finished cells that this study also has (the "
                        "same cell id) are copied instead of run. Repeatable.")] = None,
    batch_cells: Annotated[int | None, typer.Option(
        help="At most this many cells per task (default 32). A task's cells are written when the whole task "
             "finishes, so smaller tasks keep more of a long run that is stopped; the numbers do not change.")] = None,
) -> None:
    """Run every cell of a study that is not finished yet; interrupt and rerun to resume."""
    from study.run.checks import check_study
    from study.run.runner import BATCH_CELLS, run_study
    from study.spec import load_study

    if backend not in ("local", "ray"):
        raise UsageError(f"--backend: {backend!r} is not a backend; allowed: local, ray")
    if workers is not None and workers < 1:
        raise UsageError(f"--workers: {workers} is out of range; allowed: workers >= 1")
    if ray_address and backend != "ray":
        raise UsageError("--ray-address needs --backend ray")
    if batch_cells is not None and batch_cells < 1:
        raise UsageError(f"--batch-cells: {batch_cells} is out of range; allowed: batch_cells >= 1")
    from study.network.rl.common import pick_device

    pick_device(device)  # refused before anything is written when it is not there
    s = check_study(load_study(study))
    target = out_dir or Path("results") / s.name
    if s.spec.tier == "tabular" and device != "cpu":
        err.print(f"note: --device {device} applies to network cells; a tabular study runs on the CPU (compiled "
                  "numba loops and LAPACK solves), whatever --device says", soft_wrap=True)
    resume = resume_command(study, target, backend, ray_address, workers, device, reuse or [], batch_cells)
    with progress(transient=False) as bar, watching(target) as running:
        task = bar.add_task("cells", total=None)
        last: list[RunReport] = []

        def update(r: RunReport | None = None) -> None:
            if r is not None:
                last[:] = [r]
            if not last:
                return
            r = last[0]
            inside = running()
            bar.update(task, total=r.total - r.skipped, completed=len(r.done) + len(r.failed),
                       description=f"cells: {len(r.done)} done, {len(r.failed)} failed, {r.left} left"
                                   + (f" ({inside})" if inside else ""))

        running.on_change = update
        try:
            report = run_study(s, target, workers=workers, backend=backend, ray_address=ray_address,
                               retry_failed=retry_failed, on_update=update, device=device, reuse=reuse or [],
                               batch_cells=batch_cells or BATCH_CELLS)
        except KeyboardInterrupt:
            err.print(f"interrupted; finished cells are kept in {target}. Resume with: {resume}", soft_wrap=True)
            raise typer.Exit(130) from None
    copied = f" ({report.reused} copied from --reuse)" if reuse else ""
    out.print(f"{s.name}: {len(report.done)} cells run, {report.skipped} already there{copied}, "
              f"{len(report.failed)} failed; results in {target}")
    if report.failed:
        out.print(f"see the error.json of failed cells (distill grid status {target}); rerun them with: "
                  f"{resume} --retry-failed", soft_wrap=True)


class _Watch:
    """Reads how far the running batches of a results folder have got, every ``every`` seconds, on a thread;
    calling it gives the latest line (empty before the first report)."""

    def __init__(self, folder: Path, every: float) -> None:
        self.folder, self.every = folder, every
        self.line = ""
        self.on_change: Callable[[], None] | None = None
        self.stop = threading.Event()

    def __call__(self) -> str:
        return self.line

    def loop(self) -> None:
        from study.store import format as F

        while not self.stop.wait(self.every):
            line = F.describe_progress(F.running_progress(self.folder)) if self.folder.is_dir() else ""
            if line != self.line:
                self.line = line
                if self.on_change is not None:
                    self.on_change()


@contextlib.contextmanager
def watching(folder: Path, every: float = 2.0) -> Iterator[_Watch]:
    """A :class:`_Watch` of ``folder`` for the length of the block: long batches report their iterations
    through their running markers, so the display moves between finished batches too."""
    watch = _Watch(folder, every)
    thread = threading.Thread(target=watch.loop, daemon=True)
    thread.start()
    try:
        yield watch
    finally:
        watch.stop.set()
        thread.join()


def resume_command(study: str, target: Path, backend: str, ray_address: str | None, workers: int | None,
                   device: str, reuse: list[Path], batch_cells: int | None = None) -> str:
    """The `distill grid run` line that continues this run, printed when it is interrupted or cells fail:
    the settings that were given, and nothing that was left at its default."""
    line = f"distill grid run {study} --out {target}"
    line += f" --backend {backend}" if backend != "local" else ""
    line += f" --ray-address {ray_address}" if ray_address else ""
    line += f" --workers {workers}" if workers else ""
    line += f" --device {device}" if device != "cpu" else ""
    line += f" --batch-cells {batch_cells}" if batch_cells else ""
    return line + "".join(f" --reuse {p}" for p in reuse)


@cli_errors
def grid_status_cmd(
    folder: Annotated[Path, typer.Argument(help="A study results folder.")],
) -> None:
    """Count done, failed, running and missing cells of a results folder (the cells its manifest lists)."""
    from study.store import format as F

    try:
        manifest = F.read_manifest(folder)
    except F.FormatError as exc:
        raise UsageError(str(exc)) from None
    live = F.running(folder)
    state: dict[str, list[str]] = {key: [] for key in F.STATUSES}
    for cell in manifest.cells:
        state[F.cell_status(folder, cell.id, live)].append(cell.id)
    table = Table(title=f"{manifest.name}: {len(manifest.cells)} cells")
    for col in ("state", "cells"):
        table.add_column(col)
    for key in F.STATUSES:
        table.add_row(key, str(len(state[key])))
    out.print(table)
    inside = F.describe_progress(F.running_progress(folder))
    if inside:
        out.print(f"running batches: {inside}")
    for cell_id in state["failed"]:
        out.print(f"failed {cell_id}: {F.error_line(folder, cell_id)}", soft_wrap=True)

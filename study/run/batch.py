"""Running a batch of cells in a worker and writing each into the store; a failure is recorded per cell.

Tabular cells that share a batch key run as one batched program (``study.run.tabular``); network cells run
one at a time (``study.run.network``).
"""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
import torch

from study.spec import Cell
from study.spec.cells import NetworkCell, TabularCell
from study.store.format import Summary, partial_path, provenance
from study.store.store import Store


def run_cells(cells: Sequence[Cell], device: str = "cpu", partial: Path | None = None,
              progress: Callable[[int, int], None] | None = None) -> list[tuple[pd.DataFrame, Summary]]:
    """Per cell, its tidy metrics and its summary: tabular cells of one batch together (checkpointed to
    ``partial`` while they train), network cells one by one; each batch or cell reports (iterations done,
    total) to ``progress``, when given."""
    if all(isinstance(c, TabularCell) for c in cells):
        from study.run.tabular import run_tabular_cells

        return run_tabular_cells([c for c in cells if isinstance(c, TabularCell)], partial=partial,
                                 progress=progress)
    from study.run.network import run_network_cell

    return [run_network_cell(c, device, progress) for c in cells if isinstance(c, NetworkCell)]


def run_batch(root: str, cells: Sequence[Cell], device: str = "cpu") -> list[tuple[str, str]]:
    """Run cells and write each into the store; a failure is recorded per cell.

    If the batch as a whole raises, its cells are retried one at a time, so the
    error lands on the cell that causes it and the others still finish.
    Returns (cell id, "done" | "failed") pairs.
    """
    torch.set_num_threads(1)
    store = Store(Path(root))
    with store.mark_running([c.id for c in cells]) as note:
        return _run_marked(store, root, cells, device, note)


def _run_marked(store: Store, root: str, cells: Sequence[Cell], device: str = "cpu",
                note: Callable[[int, int], None] | None = None) -> list[tuple[str, str]]:
    start = time.time()
    partial = partial_path(store.root, [c.id for c in cells])
    try:
        results = run_cells(cells, device, partial, note)
    except Exception as exc:
        partial.unlink(missing_ok=True)  # a batch that fails is not resumed
        if len(cells) > 1:
            return [pair for cell in cells for pair in run_batch(root, [cell], device)]
        _write_failed(store, cells[0], exc, start)
        return [(cells[0].id, "failed")]
    end = time.time()
    out = []
    for cell, (metrics, summary) in zip(cells, results, strict=True):
        prov = provenance(start, end, len(cells))
        bad = [k for k, v in summary.final.items() if not math.isfinite(v) and k != "return_norm"]
        if bad:
            _write_failed(store, cell, FloatingPointError(f"non-finite final metrics: {', '.join(bad)}"), start,
                          metrics)
            out.append((cell.id, "failed"))
            continue
        store.write_cell(cell, metrics=metrics, summary=summary, provenance=prov)
        out.append((cell.id, "done"))
    partial.unlink(missing_ok=True)  # every cell is written: nothing left to resume
    return out


def record_failed(root: str, cells: Sequence[Cell], reason: str) -> list[tuple[str, str]]:
    """Record cells as failed from outside the worker that ran them (it died)."""
    store = Store(Path(root))
    now = time.time()
    out = []
    for cell in cells:
        if store.is_done(cell.id):  # finished before the worker died
            out.append((cell.id, "done"))
            continue
        _write_failed(store, cell, RuntimeError(reason), now)
        out.append((cell.id, "failed"))
    return out


def _write_failed(store: Store, cell: Cell, exc: BaseException, start: float,
                  metrics: pd.DataFrame | None = None) -> None:
    error = {"error": f"{type(exc).__name__}: {exc}",
             "traceback": "".join(traceback.format_exception(exc))}
    store.write_cell(cell, metrics=metrics, summary=None, provenance=provenance(start, time.time(), 1), error=error)

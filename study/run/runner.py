"""Running a study's missing cells on a backend: local processes or Ray.

Workers write each finished cell into the store themselves, so a finished
cell survives whatever happens to the process that launched it; a rerun of
the same study runs only what is missing.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import signal
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from typing import Literal

from study.run.batch import record_failed, run_batch
from study.run.checks import check_study
from study.run.tabular import batch_key
from study.spec import Cell, Study, StudyError
from study.store.store import Store

Backend = Literal["local", "ray"]
BATCH_CELLS = 32  # at most this many cells per task: batched speed, and progress in steps


@dataclass
class RunReport:
    """What a run did."""

    total: int
    skipped: int
    reused: int = 0  # of the skipped: copied from another study's folder (--reuse)
    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    @property
    def left(self) -> int:
        """Cells still to run: neither skipped, finished nor failed."""
        return self.total - self.skipped - len(self.done) - len(self.failed)


def batches(cells: Sequence[Cell], workers: int = 1, size: int = BATCH_CELLS) -> list[list[Cell]]:
    """Group cells that share MDPs into tasks of at most ``size`` cells.

    A batch costs about the same whatever its size (the engine's per-step
    overhead dominates), so groups are split only when there are fewer of
    them than workers.
    """
    ordered = sorted(cells, key=batch_key)
    groups = [list(g) for _, g in groupby(ordered, key=batch_key)]
    if not groups:
        return []
    splits = max(1, math.ceil(max(workers, 1) / len(groups)))
    out = []
    for g in groups:
        per_task = max(1, min(size, math.ceil(len(g) / splits)))
        out.extend(g[i:i + per_task] for i in range(0, len(g), per_task))
    return out


def default_workers() -> int:
    """The CPUs this process may run on: one local worker each."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def run_study(
    study: Study,
    out: Path,
    *,
    workers: int | None = None,
    backend: Backend = "local",
    ray_address: str | None = None,
    retry_failed: bool = False,
    on_update: Callable[[RunReport], None] | None = None,
    device: str = "cpu",
    reuse: Sequence[Path] = (),
    batch_cells: int = BATCH_CELLS,
) -> RunReport:
    """Run every cell of ``study`` that is not finished (and failed ones with ``retry_failed``). ``device``
    is where network cells run their networks (an execution setting: it is not part of a cell's id).
    A cell that one of the ``reuse`` folders (other studies' results) has finished is copied, not run.
    ``batch_cells`` caps the cells of one task: a task's cells are kept only when all of them finish, so
    smaller tasks lose less to an interruption (the numbers do not depend on it: every instance draws
    from its own keyed streams)."""
    workers = workers or default_workers()
    if batch_cells < 1:
        raise StudyError(f"batch_cells: {batch_cells} is out of range; allowed: batch_cells >= 1")
    study = check_study(study)  # refused before anything is written
    sources = [Store.existing(p) for p in reuse]
    with contextlib.ExitStack() as stack:
        if backend == "ray":  # connect first: a bad address fails before anything is written
            workers = stack.enter_context(_ray_session(workers, ray_address))
        store = Store.open(out, study)
        stack.enter_context(store.exclusive())
        store.write_manifest(study)
        reused = _adopt(store, study, sources)
        report = _run_open(store, study, workers, backend, ray_address, retry_failed, on_update, device,
                           batch_cells)
        report.reused = reused
        return report


def _adopt(store: Store, study: Study, sources: Sequence[Store]) -> int:
    """Copy the cells other studies' folders have finished; how many were copied."""
    copied = 0
    for cell in study.cells:
        copied += any(store.adopt(cell, source) for source in sources)
    return copied


@contextlib.contextmanager
def _ray_session(workers: int, address: str | None) -> Iterator[int]:
    """Start a local Ray instance (or join ``address``); yields the CPUs tasks can spread over."""
    try:
        import ray
    except ImportError:
        raise StudyError("--backend ray: ray is not installed; allowed: --backend local, or install the [ray] "
                         "extra (pip install -c constraints.txt -e \".[ray]\")") from None

    started_here = not ray.is_initialized()
    if started_here:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    try:
        yield int(ray.cluster_resources().get("CPU", workers)) if address else workers
    finally:
        if started_here:
            ray.shutdown()


def _run_open(store: Store, study: Study, workers: int, backend: Backend, ray_address: str | None,
              retry_failed: bool, on_update: Callable[[RunReport], None] | None, device: str = "cpu",
              batch_cells: int = BATCH_CELLS) -> RunReport:
    store.clean_stale()
    state = store.status(study.cells)
    wanted = set(state["missing"]) | (set(state["failed"]) if retry_failed else set())
    todo = [c for c in study.cells if c.id in wanted]
    report = RunReport(total=len(study.cells), skipped=len(study.cells) - len(todo))
    if on_update is not None:
        on_update(report)
    work = batches(todo, workers, batch_cells)
    runner = _run_ray if backend == "ray" else _run_local
    for results in runner(str(store.root.resolve()), work, workers, ray_address, device):
        for cell_id, status in results:
            (report.done if status == "done" else report.failed).append(cell_id)
        if on_update is not None:
            on_update(report)
    return report


def _run_local(root: str, work: list[list[Cell]], workers: int, _address: str | None,
               device: str = "cpu") -> Iterator[list]:
    if workers <= 1 or len(work) <= 1:
        for batch in work:
            yield run_batch(root, batch, device)
        return
    queue = list(work)
    while queue:  # a pool whose worker dies is replaced; that worker's batch is recorded as failed
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_worker_init)
        try:
            pending = {pool.submit(run_batch, root, batch, device): batch for batch in queue}
            queue = []
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    batch = pending.pop(future)
                    try:
                        yield future.result()
                    except BrokenProcessPool:
                        queue = list(pending.values())  # not started or cut short: run them again
                        pending = {}
                        yield record_failed(root, batch, "a worker process died while this batch (or one "
                                                         "running beside it) ran; --retry-failed runs it again")
                        break
        except BaseException:
            # Ctrl-C (or an error): stop the workers now; a cell they were writing is left as a
            # temporary folder, which the next run removes
            for process in list(getattr(pool, "_processes", {}).values()):
                process.terminate()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=not queue, cancel_futures=True)


def _worker_init() -> None:
    """Workers leave Ctrl-C to the parent, which stops them and says how to resume, and die with it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:  # Linux: end this worker when its parent dies, even by SIGKILL
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _run_ray(root: str, work: list[list[Cell]], workers: int, address: str | None,
             device: str = "cpu") -> Iterator[list]:
    import ray

    task = ray.remote(num_cpus=1)(run_batch)
    pending = []
    try:
        pending = [task.remote(root, batch, device) for batch in work]
        while pending:
            finished, pending = ray.wait(pending, num_returns=1)
            yield ray.get(finished[0])
    finally:
        for ref in pending:  # Ctrl-C or an error: do not leave tasks running on the cluster
            ray.cancel(ref, force=True)

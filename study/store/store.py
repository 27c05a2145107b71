"""The results store: one folder per cell, written whole or not at all (the files are described in
``study.store.format``).

A cell folder is assembled in a temporary folder and renamed into place, so it
appears complete or not at all; a finished cell is never run again.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from study.spec import Cell, Study, StudyError, canonical_json
from study.spec.schema import KEY_SECTION
from study.store import format as F
from study.store.format import RUNNING_PREFIX, TMP_PREFIX, CellRecord, Manifest, ManifestCell, Summary, pid_alive


def study_fingerprint(study: Study) -> str:
    """A hash of the validated definition: comments and key order do not change it."""
    import hashlib

    return hashlib.sha256(canonical_json(study.spec.model_dump()).encode()).hexdigest()[:16]


@dataclass
class Store:
    """A study's results folder."""

    root: Path

    @classmethod
    def open(cls, root: Path, study: Study) -> Store:
        """Open (or create) the folder for ``study``; refuse a folder of another study. A new folder gets the
        study file and its fingerprint; the whole manifest is written by ``write_manifest`` once the caller
        holds the folder (``exclusive``)."""
        root = Path(root)
        if root.exists() and not root.is_dir():
            raise StudyError(f"--out {root}: is a file; allowed: a folder (new, empty, or one this study wrote)")
        marker = root / F.MANIFEST
        fingerprint = study_fingerprint(study)
        if not marker.exists() and (root / F.STUDY_TOML).is_file():
            # a run killed between writing the two files: adopt the folder if it is this study
            from study.spec import parse_study

            try:
                if study_fingerprint(parse_study((root / F.STUDY_TOML).read_text())) == fingerprint:
                    F.write_json(marker, {"name": study.name, "fingerprint": fingerprint})
            except StudyError:
                pass
        if marker.exists():
            existing = json.loads(marker.read_text())
            if existing.get("fingerprint") != fingerprint:
                raise StudyError(
                    f"{root}: holds results of another study definition ({existing.get('name')!r}, "
                    f"fingerprint {existing.get('fingerprint')}); this one is {study.name!r} ({fingerprint}). "
                    "Running it here would mix results; allowed: the same study file, or another --out"
                )
        elif root.exists() and any(p for p in root.iterdir() if not p.name.startswith(".")):
            raise StudyError(f"{root}: exists and is not a study results folder (no {F.MANIFEST}); "
                             "allowed: an empty or new folder, or one this study wrote")
        else:
            root.mkdir(parents=True, exist_ok=True)
            F.write_text(root / F.STUDY_TOML, study.source)
            F.write_json(marker, {"name": study.name, "fingerprint": fingerprint})
        return cls(root)

    def write_manifest(self, study: Study) -> None:
        """The folder's study.json with every cell of the (checked) study: rewritten on every run, since a
        retrained teacher gives a network study new cell ids."""
        if not study.checked:
            raise ValueError("a manifest lists cell ids: check the study first (study.run.checks.check_study)")
        F.write_json(self.root / F.MANIFEST, manifest(study, study_fingerprint(study)).to_dict())

    @classmethod
    def existing(cls, root: Path) -> Store:
        """A results folder some study wrote, to read finished cells from (any study)."""
        root = Path(root)
        if not (root / F.MANIFEST).is_file():
            raise StudyError(f"--reuse {root}: not a results folder (no {F.MANIFEST}); allowed: a folder that "
                             "`distill grid run` wrote")
        return cls(root)

    # ---- cell states ---------------------------------------------------------------------

    def cell_dir(self, cell_id: str) -> Path:
        """The folder a cell's files are in, once it has finished or failed."""
        return self.root / cell_id

    def is_done(self, cell_id: str) -> bool:
        """Whether the cell has finished (its summary is there)."""
        return F.is_done(self.root, cell_id)

    def is_failed(self, cell_id: str) -> bool:
        """Whether the cell failed (its error record is there)."""
        return F.is_failed(self.root, cell_id)

    def running(self) -> set[str]:
        """Cells a live process on this host is computing right now."""
        return F.running(self.root)

    @contextlib.contextmanager
    def mark_running(self, cell_ids: list[str]) -> Iterator[Callable[[int, int], None]]:
        """Markers that say which cells this process is computing (for `distill grid status` and the run's
        progress display); yields a function that records how far they have got (done, total)."""
        markers = [self.root / f"{RUNNING_PREFIX}{cell_id}-{os.getpid()}" for cell_id in cell_ids]
        for m in markers:
            m.touch()

        since: list[tuple[int, float]] = []  # the first report: a resumed batch starts part-way

        def note(done: int, total: int) -> None:
            if not since:
                since.append((done, time.time()))
            line = F.progress_line(done, total, *since[0])
            for m in markers:
                m.write_text(line)

        try:
            yield note
        finally:
            for m in markers:
                m.unlink(missing_ok=True)

    def clean_stale(self) -> int:
        """Remove temporary folders and markers left by processes that died (a kill mid-write)."""
        removed = 0
        for prefix in (TMP_PREFIX, RUNNING_PREFIX):
            for tmp in self.root.glob(f"{prefix}*"):
                _, _, pid = tmp.name[len(prefix):].rpartition("-")
                if not (pid.isdigit() and pid_alive(int(pid))):
                    if tmp.is_dir():
                        shutil.rmtree(tmp, ignore_errors=True)
                    else:
                        tmp.unlink(missing_ok=True)
                    removed += 1
        return removed

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """One run at a time per folder: a second run is refused instead of racing the first."""
        handle = open(self.root / ".lock", "a+")
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StudyError(f"{self.root}: another run is writing this folder; wait for it to finish, "
                                 "or use another --out") from None
            yield
        finally:
            handle.close()

    def status(self, cells: list[Cell]) -> dict[str, list[str]]:
        """Cell ids by state: done, failed, running, missing."""
        live = self.running()
        out: dict[str, list[str]] = {status: [] for status in F.STATUSES}
        for cell in cells:
            out[F.cell_status(self.root, cell.id, live)].append(cell.id)
        return out

    def adopt(self, cell: Cell, source: Store) -> bool:
        """Copy ``cell``'s finished result from another study's folder (cell ids hash what a cell computes,
        so the same id there is the same computation); False when ``source`` has not finished it. The
        copy is assembled aside and renamed into place, and its provenance says where it came from."""
        src = source.cell_dir(cell.id)
        if self.is_done(cell.id) or not source.is_done(cell.id):
            return False
        tmp = self._tmp(cell.id)
        try:
            theirs = json.loads((src / F.CONFIG).read_text())
            if theirs.get("identity") != cell.identity() or theirs.get("seed") != cell.seed:
                return False
            shutil.copytree(src, tmp, ignore=shutil.ignore_patterns(F.ERROR))
            (tmp / F.CONFIG).write_text(json.dumps(record(cell).to_dict(), indent=2))
            prov = json.loads((tmp / F.PROVENANCE).read_text())
            prov.setdefault("copied_from", str(source.root.resolve()))  # where it was first computed
            (tmp / F.PROVENANCE).write_text(json.dumps(prov, indent=2))
        except (OSError, ValueError):  # an unreadable or incomplete cell there: this study runs it instead
            shutil.rmtree(tmp, ignore_errors=True)
            return False
        self._place(tmp, cell.id)
        return True

    def _tmp(self, cell_id: str) -> Path:
        """A fresh folder name to assemble a cell in (``clean_stale`` removes it if this process dies)."""
        tmp = self.root / f"{TMP_PREFIX}{cell_id}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        return tmp

    # ---- writing ---------------------------------------------------------------------------

    def write_cell(self, cell: Cell, *, metrics: pd.DataFrame | None, summary: Summary | None,
                   provenance: dict[str, Any], error: dict[str, Any] | None = None) -> None:
        """Assemble the cell's folder aside, then rename it into place (replacing a failed one)."""
        tmp = self._tmp(cell.id)
        tmp.mkdir()
        (tmp / F.CONFIG).write_text(json.dumps(record(cell).to_dict(), indent=2))
        (tmp / F.PROVENANCE).write_text(json.dumps(provenance, indent=2))
        if metrics is not None:
            metrics.to_parquet(tmp / F.METRICS, index=False)
        if error is not None:
            (tmp / F.ERROR).write_text(json.dumps(error, indent=2))
        if summary is not None:
            (tmp / F.SUMMARY).write_text(json.dumps(summary.to_dict(), indent=2))
        self._place(tmp, cell.id)

    def _place(self, tmp: Path, cell_id: str) -> None:
        """Rename an assembled cell folder into place, replacing a failed attempt; a finished cell keeps
        its first result."""
        target = self.cell_dir(cell_id)
        if target.exists():
            if self.is_done(cell_id):
                shutil.rmtree(tmp, ignore_errors=True)
                return
            old = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}old-", dir=self.root))
            os.replace(target, old / cell_id)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, target)


def record(cell: Cell) -> CellRecord:
    """What a cell's config.json holds."""
    config = cell.config()
    return CellRecord(cell.id, config["params"], config["identity"], cell.seed, cell.tier)


def manifest(study: Study, fingerprint: str) -> Manifest:
    """The study.json of a checked study: enough for the analysis to read the folder without the study."""
    keys = sorted({k for cell in study.cells for k in cell.params})
    return Manifest(study.name, fingerprint, study.spec.tier, study.spec.description,
                    {k: KEY_SECTION[k] for k in keys}, [ManifestCell(c.id, c.seed, c.params) for c in study.cells])

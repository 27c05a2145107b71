"""The results folder's format: file names, the typed records in them, and atomic writes.

    results/<study>/
        study.toml                 the study file as given
        study.json                 the manifest: name, fingerprint, tier, each key's section, every cell
        <cell id>/                 a finished or failed cell
            config.json            the cell's parameters, identity and seed
            metrics.parquet        tidy rows: cell, mdp, step, metric, value
            summary.json           final metrics and reference scores (only in finished cells)
            provenance.json        commit, versions, host, times
            error.json             error and traceback (only in failed cells)
        .running-<cell id>-<pid>   a live process is computing that cell
        .tmp-<cell id>-<pid>/      a cell being assembled (renamed into place when whole)

A leaf: it imports nothing of the project, so the analysis reads a folder through it alone, wherever the
folder was copied to, without the study definitions or the teacher files that made it.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple

STUDY_TOML = "study.toml"
MANIFEST = "study.json"
CONFIG = "config.json"
METRICS = "metrics.parquet"
SUMMARY = "summary.json"
PROVENANCE = "provenance.json"
ERROR = "error.json"
TMP_PREFIX = ".tmp-"
RUNNING_PREFIX = ".running-"
# a batch's training state while it runs (resumed by the next run of the same batch; removed when it ends)
PARTIAL_DIR = ".partial"


def partial_path(root: Path, cell_ids: list[str]) -> Path:
    """Where a batch of cells keeps its training state between checkpoints: named by its cells."""
    import hashlib

    return Path(root) / PARTIAL_DIR / (hashlib.sha256(",".join(cell_ids).encode()).hexdigest()[:16] + ".pt")
CELL_DIR = re.compile(r"^[0-9a-f]{16}$")
METRIC_COLUMNS = ("cell", "mdp", "step", "metric", "value")
#: references a score is normalised between (random 0, teacher 1); optimal is shown beside them
REFERENCES = ("random", "teacher", "optimal")
STATUSES = ("done", "failed", "running", "missing")


class OutputError(ValueError):
    """An output path that cannot or must not be written."""


class FormatError(ValueError):
    """A folder or file that is not what this format says: the message names it and what is allowed."""


# ---- atomic writes -------------------------------------------------------------------------------


def write_text(path: Path, text: str) -> None:
    """Write a file atomically: a reader sees the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def write_json(path: Path, data: object) -> None:
    """Write JSON atomically."""
    write_text(path, json.dumps(data, indent=2) + "\n")


def check_writable_file(path: Path) -> None:
    """Fail before long work when a result file could not be written afterwards."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; allowed: a file path")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}-", delete=True)
        probe.close()
    except OSError as exc:
        raise OutputError(f"{path}: cannot write there ({exc.strerror or exc})") from None


def write_torch(path: Path, payload: object) -> Path:
    """``torch.save`` into a temporary file renamed into place: a reader (or a resume after a kill) sees the
    previous file or the new one, never half of one."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# ---- records -------------------------------------------------------------------------------------


@dataclass
class Summary:
    """A finished cell's summary.json: its final metrics (the mean over its runs) and, per run (a tabular
    cell's MDP, a network cell's game), the reference scores its return is normalised between.

    ``instances`` labels runs that are different tasks (a multi-task student's games, ``game=breakout``);
    the parameter counts and width are a network student's."""

    cell: str
    step: int
    mdps: int
    final: dict[str, float]
    teacher_return: float
    uniform_return: float
    references: dict[str, list[float]]
    instances: list[str] | None = None
    student_parameters: int | None = None
    teacher_parameters: int | None = None
    width: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data; fields a cell does not have (a tabular cell's network student fields) are left out."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Summary:
        """Read a summary written by this or an earlier version (fields it lacks take their defaults)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class CellRecord:
    """A cell's config.json: its id, the study's parameters (flat keys), the identity its id hashes, the
    seed and the tier."""

    id: str
    params: dict[str, Any]
    identity: dict[str, Any]
    seed: int
    tier: str = "tabular"

    def to_dict(self) -> dict[str, Any]:
        """Plain data, as config.json holds it."""
        return asdict(self)


@dataclass
class ManifestCell:
    """One cell as the manifest lists it: enough to label and group it without the study definition."""

    id: str
    seed: int
    params: dict[str, Any]


@dataclass
class Manifest:
    """A study folder's study.json: which study wrote it (name and fingerprint: what "the same study"
    means), its tier and description, the section each of its keys belongs to (variant, env, teacher,
    student, train), and every cell of the study, finished or not."""

    name: str
    fingerprint: str
    tier: str = "tabular"
    description: str = ""
    sections: dict[str, str] = field(default_factory=dict)
    cells: list[ManifestCell] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain data, as study.json holds it."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        """Parse study.json's data; cells are typed."""
        cells = [ManifestCell(**c) for c in data.get("cells", [])]
        return cls(data["name"], data["fingerprint"], data.get("tier", "tabular"), data.get("description", ""),
                   dict(data.get("sections", {})), cells)


# ---- provenance ----------------------------------------------------------------------------------


def provenance(start: float, end: float, cells_in_batch: int) -> dict[str, Any]:
    """Where and with what a cell ran."""
    return {
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "python": sys.version.split()[0],
        "torch": _version("torch"),
        "gymnasium": _version("gymnasium"),
        "ale-py": _version("ale-py"),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "start": datetime.fromtimestamp(start, UTC).isoformat(),
        "end": datetime.fromtimestamp(end, UTC).isoformat(),
        "wall_seconds": round(end - start, 3),  # of the whole batch the cell ran in
        "cells_in_batch": cells_in_batch,
    }


@functools.cache
def _git(*args: str) -> str | None:
    try:
        root = Path(__file__).resolve().parents[2]
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
        return done.stdout.strip() if done.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


# ---- reading a folder ----------------------------------------------------------------------------


def read_json(path: Path) -> Any:
    """A JSON file's data."""
    return json.loads(Path(path).read_text())


def read_manifest(root: Path) -> Manifest:
    """The manifest of a study folder; a folder without one, or with one from before cells were listed,
    is refused with what to do."""
    root = Path(root)
    if not root.is_dir():
        raise FormatError(f"{root}: no such folder; allowed: a study results folder written by `distill grid "
                          "run` (it holds study.json and one folder per cell)")
    path = root / MANIFEST
    if not path.is_file():
        raise FormatError(f"{root}: not a study results folder (no {MANIFEST}); allowed: a folder written by "
                          "`distill grid run` or `distill demo`")
    try:
        data = read_json(path)
        if not isinstance(data, dict):
            raise TypeError(f"a {type(data).__name__}, not an object")
        manifest = Manifest.from_dict(data)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise FormatError(f"{path}: unreadable ({type(exc).__name__}: {exc}); allowed: the study.json that "
                          "`distill grid run` writes") from None
    if "cells" not in data:
        raise FormatError(f"{path}: written by an older version, without the list of cells; `distill grid run "
                          f"{root / STUDY_TOML} --out {root}` writes it (finished cells are kept; missing ones "
                          "run)")
    return manifest


def cell_dir(root: Path, cell_id: str) -> Path:
    """The folder of one cell."""
    return Path(root) / cell_id


def is_done(root: Path, cell_id: str) -> bool:
    """Finished cells have a summary (written last, by renaming the whole folder into place)."""
    return (cell_dir(root, cell_id) / SUMMARY).is_file()


def is_failed(root: Path, cell_id: str) -> bool:
    """Failed cells have an error record."""
    return (cell_dir(root, cell_id) / ERROR).is_file()


def read_summary(root: Path, cell_id: str) -> Summary:
    """A finished cell's summary."""
    return Summary.from_dict(read_json(cell_dir(root, cell_id) / SUMMARY))


def error_line(root: Path, cell_id: str) -> str:
    """The first line of a failed cell's error (its traceback stays in error.json)."""
    try:
        text = str(read_json(cell_dir(root, cell_id) / ERROR).get("error", "unknown error")).strip()
        return text.splitlines()[0] if text else "unknown error"
    except (OSError, ValueError):
        return "unreadable error.json"


def running(root: Path) -> set[str]:
    """Cells a live process on this host is computing right now (its marker names a live pid)."""
    live = set()
    for marker in Path(root).glob(f"{RUNNING_PREFIX}*"):
        cell, _, pid = marker.name[len(RUNNING_PREFIX):].rpartition("-")
        if pid.isdigit() and pid_alive(int(pid)):
            live.add(cell)
    return live


class Progress(NamedTuple):
    """How far one running cell has got, as its marker last said."""

    done: int  # iterations done
    total: int  # iterations in all
    seconds_left: float | None  # at the rate since its process started on it; None until it can be told


def progress_line(done: int, total: int, since_done: int, since: float) -> str:
    """A marker's text: iterations done and in all, and where and when (epoch seconds) this process began,
    so that a reader can tell the rate, and the time left, of a batch that resumed part-way."""
    return f"{done} {total} {since_done} {since:.3f}"


def running_progress(root: Path, now: float | None = None) -> dict[str, Progress]:
    """How far the live batches have got: per running cell, its marker's iterations done and in all and
    the time left at the rate since the process began on it (markers are written every few seconds;
    cells whose runner does not report are absent)."""
    now = time.time() if now is None else now
    progress = {}
    for marker in Path(root).glob(f"{RUNNING_PREFIX}*"):
        cell, _, pid = marker.name[len(RUNNING_PREFIX):].rpartition("-")
        if not (pid.isdigit() and pid_alive(int(pid))):
            continue
        try:
            fields_ = marker.read_text().split()
            done, total = int(fields_[0]), int(fields_[1])
            written = marker.stat().st_mtime
        except (OSError, ValueError, IndexError):  # not reported yet, or read while it was written
            continue
        left = None
        if len(fields_) == 4:
            since_done, since = int(fields_[2]), float(fields_[3])
            if done > since_done and written > since:
                rate = (done - since_done) / (written - since)
                left = max(0.0, (total - done) / rate - max(0.0, now - written))
        progress[cell] = Progress(done, total, left)
    return progress


def describe_progress(progress: dict[str, Progress]) -> str:
    """One line for a progress display: how many cells run, how far the least advanced has got and, when
    every running cell can tell it, about how long the slowest has left."""
    if not progress:
        return ""
    least = min(progress.values(), key=lambda p: p.done / max(p.total, 1))
    line = f"{len(progress)} running, at iteration {least.done:,} of {least.total:,}"
    lefts = [p.seconds_left for p in progress.values() if p.seconds_left is not None]
    if len(lefts) == len(progress):
        line += f", the slowest done in {describe_seconds(max(lefts))}"
    return line


def describe_seconds(seconds: float) -> str:
    """A time left as a person says it: about 3 h 10 min, about 52 min, under a minute."""
    minutes = round(seconds / 60)
    if minutes < 1:
        return "under a minute"
    hours, minutes = divmod(minutes, 60)
    if not hours:
        return f"about {minutes} min"
    return f"about {hours} h {minutes} min" if minutes else f"about {hours} h"


def cell_status(root: Path, cell_id: str, live: set[str]) -> str:
    """done, running, failed or missing (one of STATUSES); a finished cell is done even if marked."""
    if is_done(root, cell_id):
        return "done"
    if cell_id in live:
        return "running"
    return "failed" if is_failed(root, cell_id) else "missing"


def pid_alive(pid: int) -> bool:
    """Whether a process of this host has that id (markers and temporary folders name their writer)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

"""Output folders that are written whole or not at all, and never over someone else's files."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path


class OutputError(ValueError):
    """An output path that cannot or must not be written."""


def check_replaceable(target: Path, kind: str) -> None:
    """Refuse a target that exists and is not an earlier output of the same ``kind``.

    An earlier output carries ``config.json`` with a top-level ``kind`` key;
    anything else (a file, another study, a folder of notes) is left alone.
    """
    target = Path(target)
    if not target.exists():
        return
    config = target / "config.json"
    if target.is_dir():
        try:
            if kind in json.loads(config.read_text()):
                return
        except (OSError, ValueError):
            pass
    raise OutputError(
        f"--out {target}: exists and is not an earlier {kind} output (no config.json with a {kind!r} entry); "
        "allowed: a new path or an earlier output of the same command"
    )


def staging_dir(target: Path) -> Path:
    """A temporary folder beside ``target`` to write into; fails early if the place is not writable."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    except OSError as exc:
        raise OutputError(f"--out {target}: cannot write there ({exc.strerror or exc})") from None


def replace_dir(new: Path, target: Path) -> None:
    """Swap ``new`` in for ``target``: a reader sees the old folder or the new one, never half."""
    target = Path(target)
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}-old-", dir=target.parent))
        os.replace(target, old / target.name)
        os.replace(new, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, target)


def write_json(path: Path, data: object) -> None:
    """Write JSON atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


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

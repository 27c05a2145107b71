"""Output files that are written whole or not at all."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


class OutputError(ValueError):
    """An output path that cannot or must not be written."""


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
    import os
    import tempfile

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

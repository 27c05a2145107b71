"""Tidy frames from a study's results folder; reads the store's files and nothing else."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

CELL_DIR = re.compile(r"^[0-9a-f]{16}$")


def load_cells(root: Path) -> pd.DataFrame:
    """One row per cell folder of the study: id, status (done or failed), seed and every parameter.

    Temporary folders and cells that are not part of the folder's study file are left out.
    """
    root = Path(root)
    wanted = None
    if (root / "study.toml").is_file():
        from study.grid import parse_study

        wanted = {c.id for c in parse_study((root / "study.toml").read_text()).cells}
    rows = []
    for config in sorted(root.glob("*/config.json")):
        name = config.parent.name
        if not CELL_DIR.match(name) or (wanted is not None and name not in wanted):
            continue
        cell = json.loads(config.read_text())
        status = "done" if (config.parent / "summary.json").exists() else "failed"
        rows.append({"cell": cell["id"], "status": status, "seed": cell["seed"], **cell["params"]})
    return pd.DataFrame(rows)


def load_curves(root: Path) -> pd.DataFrame:
    """Tidy curves of the finished cells (cell, mdp, step, metric, value) with each cell's parameters."""
    cells = load_cells(root)
    if cells.empty:
        return pd.DataFrame(columns=["cell", "mdp", "step", "metric", "value"])
    done = cells[cells["status"] == "done"]
    if done.empty:
        return pd.DataFrame(columns=["cell", "mdp", "step", "metric", "value"])
    frames = [pd.read_parquet(Path(root) / cell / "metrics.parquet") for cell in done["cell"]]
    curves = pd.concat(frames, ignore_index=True)
    return curves.merge(done.drop(columns="status"), on="cell", how="left")

"""Tidy frames from a study's results folder; reads the store's files and nothing else."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd


def load_cells(root: Path) -> pd.DataFrame:
    """One row per cell folder: id, status (done or failed), seed and every parameter."""
    rows = []
    for config in sorted(Path(root).glob("*/config.json")):
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
    frames = [pd.read_parquet(Path(root) / cell / "metrics.parquet") for cell in done["cell"]]
    curves = pd.concat(frames, ignore_index=True)
    return curves.merge(done.drop(columns="status"), on="cell", how="left")

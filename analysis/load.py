"""Tidy frames from a study's results folder; reads the store's files and nothing else.

A *run* is one trained student: a cell's MDP instance (tabular cells train
``mdps`` students, one per generated MDP) or a cell (network tiers, one
environment per cell). Runs are grouped two ways:

- the *arm* is what a comparison compares: the values of the varying keys of
  the variant, student and budget sections (``on_policy_distill``, or
  ``control=student, lr=0.1``);
- the *task* is what the student is asked to learn: the values of the varying
  keys of the environment and teacher sections (``n_actions=40``), one task
  when nothing there varies. Bootstrap intervals resample runs within tasks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from study.store import format as F
from study.store.format import REFERENCES

ARM_SECTIONS = ("variant", "student", "train")
TASK_SECTIONS = ("env", "teacher")
HIGHER_IS_BETTER = {"kl_student": False, "kl_teacher": False, "kl_uniform": False}
NORMALISED = "return_norm"


class AnalysisError(ValueError):
    """A folder or option the analysis cannot use: the message names it and what is allowed."""


@dataclass
class Results:
    """A study's results as frames: cells (every cell of the study file: its parameters, seed, status and,
    when finished, its final metrics as ``final_<metric>``), curves (tidy, finished cells) and runs (one row
    per trained student: final metrics and reference scores)."""

    root: Path
    name: str
    tier: str
    cells: pd.DataFrame
    curves: pd.DataFrame
    runs: pd.DataFrame
    arm_keys: list[str]
    task_keys: list[str]
    arms: list[str]
    tasks: list[str]
    errors: dict[str, str] = field(default_factory=dict)
    #: for each arm key, every arm's label without that key: a figure faceted by the key colours by these
    arms_without: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def metrics(self) -> list[str]:
        """The metrics recorded in the finished cells' curves, sorted (none before a cell finishes)."""
        return sorted(self.curves["metric"].unique()) if len(self.curves) else []

    @property
    def factors(self) -> list[str]:
        """Keys that take more than one value across the study's cells."""
        return self.arm_keys + self.task_keys

    @property
    def clustered(self) -> bool:
        """Whether tasks hold several environment instances (a tabular cell's MDPs, shared by its seeds)."""
        return bool(len(self.runs)) and int(self.runs.groupby("task", observed=True)["instance"].nunique().max()) > 1

    @property
    def unit_name(self) -> str:
        """What a comparison's units are, in words for the report: MDPs when tasks are clustered, else seeds."""
        return "MDPs" if self.clustered else "seeds"

    def colour_keys(self, facet: str | None) -> dict[str, str]:
        """Each arm's colour in a figure faceted by ``facet``: its label without the facet's key (the row
        says it), so an arm keeps its colour from row to row."""
        return self.arms_without.get(facet or "", {arm: arm for arm in self.arms})

    def units(self, metric: str) -> pd.DataFrame:
        """The independent units of comparison: a tabular arm's MDPs (its seeds averaged: every seed
        trains on the same MDPs), or runs (seeds) where a task is one environment. Columns: arm, task,
        unit, seeds, the factors, and ``metric``."""
        keys = ["arm", "task", *self.factors]
        runs = self.runs[self.runs[metric].notna()]
        if not self.clustered:
            out = runs[[*keys, "seed", metric]].rename(columns={"seed": "unit"})
            return out.assign(seeds=1)
        grouped = runs.groupby(["arm", "task", "instance"], observed=True, sort=False)
        out = grouped[metric].mean().reset_index().rename(columns={"instance": "unit"})
        out["seeds"] = grouped[metric].size().to_numpy()
        first = grouped[self.factors].first().reset_index(drop=True) if self.factors else None
        return pd.concat([out, first], axis=1) if first is not None else out

    def counts(self) -> pd.DataFrame:
        """Cells per arm by status (done, failed, running, missing)."""
        table = pd.crosstab(self.cells["arm"], self.cells["status"]).reindex(self.arms, fill_value=0)
        for status in ("done", "failed", "running", "missing"):
            if status not in table:
                table[status] = 0
        table = table[["done", "failed", "running", "missing"]]
        table.index.name = "arm"
        return table.reset_index()


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` is the better one (every metric but the KL divergences)."""
    return HIGHER_IS_BETTER.get(metric, True)


def load_results(root: Path) -> Results:
    """Read a results folder written by ``distill grid run`` (finished or not) through its manifest alone:
    neither the study definition nor the teachers that made it need to be here."""
    root = Path(root)
    try:
        manifest = F.read_manifest(root)
    except F.FormatError as exc:
        raise AnalysisError(str(exc)) from None
    section = manifest.sections
    rows = []
    errors: dict[str, str] = {}
    live = F.running(root)
    for cell in manifest.cells:
        status = F.cell_status(root, cell.id, live)
        if status == "failed":
            errors[cell.id] = F.error_line(root, cell.id)
        rows.append({"cell": cell.id, "status": status, "seed": cell.seed, **cell.params})
    cells = pd.DataFrame(rows)
    params = [c for c in cells.columns if c not in ("cell", "status", "seed")]
    varying = [k for k in params if cells[k].astype(str).nunique(dropna=False) > 1]
    arm_keys = [k for k in varying if section.get(k) in ARM_SECTIONS]
    task_keys = [k for k in varying if section.get(k) in TASK_SECTIONS]
    cells["arm"] = _labels(rows, arm_keys, default="all")
    arms_without = {key: dict(zip(cells["arm"], _labels(rows, [k for k in arm_keys if k != key], default="all"),
                                  strict=True)) for key in arm_keys}
    name_of = next((k for k in ("game", "generator") if k in cells), None)
    cells["task"] = _labels(rows, task_keys, default=str(cells[name_of].iloc[0]) if name_of else manifest.name)
    arms = list(dict.fromkeys(cells["arm"]))
    tasks = list(dict.fromkeys(cells["task"]))
    done = cells[cells["status"] == "done"]
    summaries = {cell: F.read_summary(root, cell) for cell in done["cell"]}
    cells = _with_finals(cells, summaries)
    done = cells[cells["status"] == "done"]
    curves = _curves(root, done, arm_keys + task_keys)
    runs = _runs(done, curves, arm_keys + task_keys, summaries)
    instances = _instances(summaries)
    if instances is not None:  # multi-task cells: each run under its own game
        curves, runs = _relabel(curves, instances), _relabel(runs, instances)
        tasks = list(dict.fromkeys([*(t for t in tasks if t in set(runs["task"])), *runs["task"]]))
    return Results(root, manifest.name, manifest.tier, cells, curves, runs, arm_keys, task_keys, arms, tasks,
                   errors, arms_without)


def _format(value: Any) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return repr(value)
    return str(value)


def _labels(rows: list[dict[str, Any]], keys: list[str], default: str) -> list[str]:
    """``key=value, ...`` over the given keys (a preset's name alone for ``variant``), from the cells'
    own parameters: a frame column would show a whole number that some cells leave unset as 1.0."""

    def label(row: dict[str, Any]) -> str:
        parts = []
        for k in keys:
            value = row.get(k)
            if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
                continue
            parts.append(str(value) if k == "variant" else f"{k}={_format(value)}")
        return ", ".join(parts) or default

    return [label(row) for row in rows]


def _curves(root: Path, done: pd.DataFrame, factors: list[str]) -> pd.DataFrame:
    """Tidy curves of the finished cells with their arm, task, seed and varying keys (not every parameter,
    so a thousand-MDP study stays small)."""
    columns = list(F.METRIC_COLUMNS)
    if done.empty:
        return pd.DataFrame(columns=[*columns, "arm", "task", "seed", *factors])
    frames = [pd.read_parquet(F.cell_dir(root, cell) / F.METRICS, columns=columns) for cell in done["cell"]]
    curves = pd.concat(frames, ignore_index=True)
    curves["metric"] = curves["metric"].astype("category")
    keep = done[["cell", "arm", "task", "seed", *factors]]
    curves = curves.merge(keep, on="cell", how="left")
    for col in ("cell", "arm", "task"):
        curves[col] = curves[col].astype("category")
    return curves


def _with_finals(cells: pd.DataFrame, summaries: dict[str, F.Summary]) -> pd.DataFrame:
    """Each finished cell's final metrics (its summary: the mean over its runs) as columns."""
    finals = {cell: summary.final for cell, summary in summaries.items()}
    if not finals:
        return cells
    frame = pd.DataFrame.from_dict(finals, orient="index")
    frame.columns = [f"final_{c}" for c in frame.columns]
    return cells.merge(frame, left_on="cell", right_index=True, how="left")


def _instances(summaries: dict[str, F.Summary]) -> pd.DataFrame | None:
    """(cell, mdp, task) for cells whose runs are different tasks (a multi-task student's games)."""
    rows = []
    for cell, summary in summaries.items():
        rows += [{"cell": cell, "mdp": i, "game_task": label} for i, label in enumerate(summary.instances or [])]
    return pd.DataFrame(rows) if rows else None


def _relabel(frame: pd.DataFrame, instances: pd.DataFrame) -> pd.DataFrame:
    merged = frame.assign(cell=frame["cell"].astype(str)).merge(instances, on=["cell", "mdp"], how="left")
    relabelled = merged["game_task"].notna()
    task = merged["game_task"].where(relabelled, merged["task"].astype(str))
    out = merged.drop(columns="game_task").assign(task=task.astype("category" if frame["task"].dtype == "category"
                                                                   else str))
    if "instance" in out:  # a game of a multi-task student is its task's one environment, not an instance
        out["instance"] = out["instance"].where(~relabelled, 0)
    if frame["cell"].dtype == "category":
        out["cell"] = out["cell"].astype("category")
    return out


def _runs(done: pd.DataFrame, curves: pd.DataFrame, factors: list[str],
          summaries: dict[str, F.Summary]) -> pd.DataFrame:
    """One row per run: final value of every metric, the reference scores and the optimal policy's
    normalised score."""
    base = ["cell", "mdp", "instance", "arm", "task", "seed", *factors]
    if done.empty:
        return pd.DataFrame(columns=base)
    last = curves.groupby("cell", observed=True)["step"].transform("max")
    final = curves[curves["step"] == last]
    runs = final.pivot_table(index=["cell", "mdp"], columns="metric", values="value", observed=True)
    runs.columns = [str(c) for c in runs.columns]
    runs = runs.reset_index()
    refs = []
    for cell in done["cell"]:
        summary = summaries[cell]
        given = summary.references
        n = int(summary.mdps)
        refs.append(pd.DataFrame({"cell": cell, "mdp": np.arange(n),
                                  **{f"{r}_score": given.get(r, [np.nan] * n) for r in REFERENCES}}))
    runs = runs.merge(pd.concat(refs, ignore_index=True), on=["cell", "mdp"], how="left")
    runs["instance"] = runs["mdp"]  # the environment instance: a tabular cell's MDP (shared by its seeds)
    span = runs["teacher_score"] - runs["random_score"]
    runs["optimal_norm"] = (runs["optimal_score"] - runs["random_score"]) / span.where(span.abs() > 1e-9)
    runs["cell"] = runs["cell"].astype(str)
    keep = done[["cell", "arm", "task", "seed", *factors]].astype({"cell": str})
    runs = runs.merge(keep, on="cell", how="left")
    metrics = [c for c in runs.columns if c not in base]
    return runs[base + metrics]

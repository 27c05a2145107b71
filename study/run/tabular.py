"""Running tabular cells: build MDPs and teachers from a cell's parameters, train, and store.

Cells that share their MDPs, teacher, student and budget (they differ only in
variant and seed) run as one batched program; the engine's per-instance
random streams make each cell's numbers the same as if it ran alone.
"""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from study.spec.grid import KEY_SECTION, Cell, canonical_json
from study.store import Store, provenance
from study.tabular import generators as gen
from study.tabular import teachers as T
from study.tabular.engine import Curves, Plan, TrainConfig, distill
from study.tabular.mdp import TabularMDP
from study.tabular.metrics import METRICS
from study.tabular.students import Student

SHARED_SECTIONS = ("env", "teacher", "student", "train")


def batch_key(cell: Cell) -> str:
    """Cells with the same key share MDPs, teacher, student and budget (a network cell runs alone)."""
    if cell.tier != "tabular":
        return cell.id
    return canonical_json({k: v for k, v in cell.params.items() if KEY_SECTION[k] in SHARED_SECTIONS})


def build_mdp(p: dict[str, Any]) -> TabularMDP:
    """The cell's ``mdps`` MDPs from its environment parameters."""
    n, g = p["mdps"], p["generator"]
    if g == "gridworld":
        return gen.gridworld(n, size=p["size"], n_actions=p["n_actions"], wall_frac=p["wall_frac"],
                             penalty_frac=p["penalty_frac"], noise=p["noise"], absorb=p["absorb"],
                             seed=p["mdp_seed"])
    if g == "garnet":
        return gen.garnet(n, n_states=p["n_states"], n_actions=p["n_actions"], branching=p["branching"],
                          absorb=p["absorb"], n_terminal=p["n_terminal"], seed=p["mdp_seed"])
    if g == "corridor":
        return gen.corridor(n, length=p["length"], noise=p["noise"], absorb=p["absorb"])
    if g == "exit_chain":
        return gen.exit_chain(n, length=p["length"], absorb=p["absorb"])
    return gen.bandit(n, n_actions=p["n_actions"])


def build_teacher(mdp: TabularMDP, p: dict[str, Any]) -> torch.Tensor:
    """Teacher outputs: optimal Q, Q-learning, or -Q* (adversarial); optionally noisy states.

    Noisy states get outputs ``log p`` with ``p ~ Dirichlet(1)``: a random
    distribution that each variant's temperature then sharpens or flattens.
    """
    if p["teacher"] == "q_learning":
        q = T.q_learning(mdp, episodes=p["q_episodes"], gamma=p["teacher_gamma"], seed=p["mdp_seed"])
    else:
        q = T.value_iteration(mdp, gamma=p["teacher_gamma"])
        if p["teacher"] == "adversarial":
            q = T.adversarial(q)
    if p["teacher_noise"] > 0:
        q = T.noisy(q, p["teacher_noise"], tau=1.0, seed=p["mdp_seed"], mask=~mdp.terminal)
    return q


def train_config(p: dict[str, Any]) -> TrainConfig:
    return TrainConfig(mode=p["mode"], iterations=p["iterations"], lr=p["lr"], optimizer=p["optimizer"],
                       eval_every=p["eval_every"], episodes=p["episodes"], max_steps=p["max_steps"],
                       init_scale=p["init_scale"])


def run_cells(cells: Sequence[Cell], device: str = "cpu") -> list[tuple[pd.DataFrame, dict[str, Any]]]:
    """Train cells that share a batch key together; per cell, its tidy metrics and its summary."""
    if cells[0].tier != "tabular":
        from study.run.network import run_network_cell

        return [run_network_cell(cell, device) for cell in cells]
    p = cells[0].params
    if any(batch_key(c) != batch_key(cells[0]) for c in cells):
        raise ValueError("run_cells needs cells that share MDPs, teacher, student and budget")
    mdp = build_mdp(p)
    teacher = build_teacher(mdp, p)
    variants = []
    variant_of: list[int] = []
    for cell in cells:
        v = cell.variant()
        if v not in variants:
            variants.append(v)
        variant_of.append(variants.index(v))
    n = mdp.n_mdps
    plan = Plan(
        torch.arange(n).repeat(len(cells)),
        torch.tensor(variant_of).repeat_interleave(n),
        torch.tensor([c.seed for c in cells]).repeat_interleave(n),
    )
    curves = distill(mdp, teacher, variants, plan, train_config(p), student=Student(p["student"]))
    optimal = optimal_return(mdp)
    return [_cell_results(cell, curves, slice(i * n, (i + 1) * n), optimal) for i, cell in enumerate(cells)]


def optimal_return(mdp: TabularMDP) -> torch.Tensor:
    """The optimal policy's expected undiscounted return per MDP ``[N]``: the ceiling the analysis shows
    next to the teacher's, since a softmax, noisy or adversarial teacher sits below it."""
    v_star = T.value_iteration(mdp.to(torch.float64)).max(-1).values
    return (mdp.start.double() * v_star).sum(-1)


def _cell_results(cell: Cell, curves: Curves, rows: slice,
                  optimal: torch.Tensor) -> tuple[pd.DataFrame, dict[str, Any]]:
    values = {name: curves.values[name][:, rows] for name in METRICS}
    values["return_norm"] = curves.normalised_return()[:, rows]
    steps = torch.tensor(curves.steps)
    n_steps, n_mdps = values["return"].shape
    frames = []
    for name, tensor in values.items():
        frames.append(pd.DataFrame({
            "cell": cell.id,
            "mdp": torch.arange(n_mdps).repeat(n_steps).numpy(),
            "step": steps.repeat_interleave(n_mdps).numpy(),
            "metric": name,
            "value": tensor.double().reshape(-1).numpy(),
        }))
    metrics = pd.concat(frames, ignore_index=True)
    final = {name: float(tensor[-1].double().mean()) for name, tensor in values.items()}
    summary = {"cell": cell.id, "step": int(curves.steps[-1]), "mdps": n_mdps, "final": final,
               "teacher_return": float(curves.teacher_return[rows].double().mean()),
               "uniform_return": float(curves.uniform_return[rows].double().mean()),
               # per MDP, for score normalisation: random (the uniform policy) 0, teacher 1; optimal shown
               "references": {"random": curves.uniform_return[rows].double().tolist(),
                              "teacher": curves.teacher_return[rows].double().tolist(),
                              "optimal": optimal.tolist()}}
    return metrics, summary


def run_batch(root: str, cells: Sequence[Cell], device: str = "cpu") -> list[tuple[str, str]]:
    """Run cells and write each into the store; a failure is recorded per cell.

    If the batch as a whole raises, its cells are retried one at a time, so the
    error lands on the cell that causes it and the others still finish.
    Returns (cell id, "done" | "failed") pairs.
    """
    torch.set_num_threads(1)
    store = Store(Path(root))
    with store.mark_running([c.id for c in cells]):
        return _run_marked(store, root, cells, device)


def _run_marked(store: Store, root: str, cells: Sequence[Cell], device: str = "cpu") -> list[tuple[str, str]]:
    start = time.time()
    try:
        results = run_cells(cells, device)
    except Exception as exc:
        if len(cells) > 1:
            return [pair for cell in cells for pair in run_batch(root, [cell], device)]
        _write_failed(store, cells[0], exc, start)
        return [(cells[0].id, "failed")]
    end = time.time()
    out = []
    for cell, (metrics, summary) in zip(cells, results, strict=True):
        prov = provenance(start, end, len(cells))
        bad = [k for k, v in summary["final"].items() if not math.isfinite(v) and k != "return_norm"]
        if bad:
            _write_failed(store, cell, FloatingPointError(f"non-finite final metrics: {', '.join(bad)}"), start,
                          metrics)
            out.append((cell.id, "failed"))
            continue
        store.write_cell(cell, metrics=metrics, summary=summary, provenance=prov)
        out.append((cell.id, "done"))
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

"""Running a cell of the network tiers (MinAtar, Atari): load its teacher, distil, and report in the
store's format, with the score normalised between a random policy and the teacher."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from study.envs import EnvSpec
from study.grid import Cell, file_digest
from study.loop import LoopConfig, distill_network
from study.nets import width_for_fraction
from study.rl.common import evaluate
from study.rl.train import _acting
from study.teacher import Teacher

LOOP_KEYS = ("iterations", "num_envs", "rollout", "replay", "batch", "updates", "lr", "optimizer", "eval_every",
             "eval_episodes", "eval_epsilon")
REFERENCE_SEED = 1_000_003  # the same reference episodes for every cell of a game


def env_spec(cell: Cell) -> EnvSpec:
    p = cell.params
    return EnvSpec(cell.tier, p["game"], p["sticky"], p["noop_max"], p["frame_cap"])


@functools.cache
def references(teacher_file: str, digest: str, spec: EnvSpec, episodes: int, epsilon: float) -> tuple[float, float]:
    """Mean unclipped scores of a uniform random policy and of the teacher (acting as it was trained to:
    epsilon-greedy for DQN, sampling for PPO) under the cell's evaluation protocol."""
    teacher = Teacher.load(Path(teacher_file), spec)
    rng = np.random.default_rng(REFERENCE_SEED)
    n = teacher.meta.n_actions
    random = evaluate(lambda obs: rng.integers(0, n, len(obs)), spec, episodes, REFERENCE_SEED, torch.device("cpu"))
    acting = _acting(teacher.net, teacher.meta.algo, epsilon, REFERENCE_SEED)
    scores = evaluate(acting, spec, episodes, REFERENCE_SEED, torch.device("cpu"))
    return float(random.mean()), float(scores.mean())


def run_network_cell(cell: Cell) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Distil one cell; its metrics (tidy) and summary, in the tabular cells' format (one run: mdp 0)."""
    p = cell.params
    spec = env_spec(cell)
    teacher = Teacher.load(Path(p["teacher_file"]), spec)
    width = p["width"]
    if p.get("student_fraction") is not None:
        m = teacher.meta
        width = width_for_fraction(m.arch, m.obs_shape, m.n_actions, p["student_fraction"])
    cfg = LoopConfig(**{k: p[k] for k in LOOP_KEYS}, width=width)
    random, teacher_score = references(p["teacher_file"], file_digest(p["teacher_file"]), spec, cfg.eval_episodes,
                                       cfg.eval_epsilon)
    result = distill_network(spec, teacher, cell.variant(), cfg, seed=cell.seed)
    span = teacher_score - random
    rows = []
    for step, ev in zip(result.steps, result.evals, strict=True):
        norm = (ev.score - random) / span if abs(span) > 1e-9 else float("nan")
        for metric, value in (("score", ev.score), ("return_norm", norm), ("agreement", ev.agreement),
                              ("kl_student", ev.kl)):
            rows.append({"cell": cell.id, "mdp": 0, "step": step, "metric": metric, "value": float(value)})
    metrics = pd.DataFrame(rows)
    last = metrics[metrics["step"] == metrics["step"].max()]
    final = dict(zip(last["metric"], last["value"].astype(float), strict=True))
    summary = {"cell": cell.id, "step": int(result.steps[-1]), "mdps": 1, "final": final,
               "teacher_return": teacher_score, "uniform_return": random,
               "references": {"random": [random], "teacher": [teacher_score], "optimal": [float("nan")]},
               "student_parameters": sum(x.numel() for x in result.student.parameters()),
               "teacher_parameters": sum(x.numel() for x in teacher.net.parameters()), "width": width}
    return metrics, summary

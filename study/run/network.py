"""Running a cell of the network tiers (MinAtar, Atari): load its teacher, distil, and report in the
store's format, with the score normalised between a random policy and the teacher."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from study.network.envs import EnvSpec
from study.network.loop import distill_multitask, distill_network
from study.network.nets import width_for_fraction
from study.network.rl.common import act_greedy, evaluate, pick_device
from study.network.rl.dqn import DQNConfig, DQNLearner
from study.network.teacher import Teacher
from study.run.progress import throttled
from study.spec import LoopParams, NetworkCell
from study.store.format import Summary

REFERENCE_SEED = 1_000_003  # the same reference episodes for every cell of a game


def env_specs(cell: NetworkCell) -> list[EnvSpec]:
    """The cell's game, or each game of a multi-task cell, as it is played."""
    return [EnvSpec(cell.tier, g, cell.env.sticky, cell.env.noop_max, cell.env.frame_cap) for g in cell.games]


@functools.cache
def references(teacher_file: str, digest: str, spec: EnvSpec, episodes: int, epsilon: float) -> tuple[float, float]:
    """Mean unclipped scores of a uniform random policy and of the teacher under the protocol the student is
    scored by (argmax with the evaluation epsilon, whether the teacher is a DQN or a PPO one)."""
    teacher = Teacher.load(Path(teacher_file), spec)
    rng = np.random.default_rng(REFERENCE_SEED)
    n = teacher.meta.n_actions
    random = evaluate(lambda obs: rng.integers(0, n, len(obs)), spec, episodes, REFERENCE_SEED, torch.device("cpu"))
    teacher_rng = np.random.default_rng(REFERENCE_SEED)
    scores = evaluate(lambda obs: act_greedy(teacher.net(obs), epsilon, teacher_rng), spec, episodes, REFERENCE_SEED,
                      torch.device("cpu"))
    return float(random.mean()), float(scores.mean())


def online_teacher(spec: EnvSpec, trained: Teacher, cfg: LoopParams, online_steps: int, seed: int,
                   device: str = "cpu") -> DQNLearner:
    """A DQN teacher learning from scratch alongside the student, with the trained teacher's settings;
    its exploration decays over the steps it will take in the ``cfg.iterations`` of this cell."""
    config = DQNConfig.for_tier(spec.tier)
    for key, value in (trained.meta.extra.get("config") or {}).items():
        if hasattr(config, key) and key != "precision":  # a teacher computes in fp32 (LoopParams.precision)
            setattr(config, key, value)
    horizon = online_steps * config.num_envs * cfg.iterations
    return DQNLearner(spec, config, seed=seed + 15_485_863, device=pick_device(device), horizon=horizon)


def run_network_cell(cell: NetworkCell, device: str = "cpu",
                     progress: Callable[[int, int], None] | None = None) -> tuple[pd.DataFrame, Summary]:
    """Distil one cell; its metrics (tidy) and summary in the tabular cells' format. A single-game cell is
    one run (mdp 0); a multi-task cell is one run per game (mdp i: its i-th game), labelled in the
    summary's ``instances`` so the analysis files each under its game. ``progress`` hears (iterations
    done, iterations in all) every few seconds, as a tabular batch reports them."""
    specs = env_specs(cell)
    files = cell.teacher_files()
    teachers = [Teacher.load(Path(f), spec) for f, spec in zip(files, specs, strict=True)]
    width = cell.student.width
    if cell.student.student_fraction is not None:
        m = teachers[0].meta
        width = width_for_fraction(m.arch, m.obs_shape, m.n_actions, cell.student.student_fraction)
    cfg = cell.train
    report = throttled(progress, cfg.iterations)

    def heard(done: int, _result: object) -> None:
        report(done)

    online_steps = cell.teacher.online_steps
    refs = [references(f, digest, spec, cfg.eval_episodes, cfg.eval_epsilon)
            for f, digest, spec in zip(files, cell.teacher_digests, specs, strict=True)]
    if len(specs) == 1 and online_steps:
        learner = online_teacher(specs[0], teachers[0], cfg, online_steps, cell.seed, device)
        result = distill_network(specs[0], Teacher(learner.net, teachers[0].meta), cell.variant, cfg,
                                 seed=cell.seed, width=width, device=device, online=learner,
                                 online_steps=online_steps, progress=heard)
        learner.close()
    elif len(specs) == 1:
        result = distill_network(specs[0], teachers[0], cell.variant, cfg, seed=cell.seed, width=width,
                                 device=device, progress=heard)
    else:
        result = distill_multitask({s.game: (s, t) for s, t in zip(specs, teachers, strict=True)}, cell.variant,
                                   cfg, seed=cell.seed, width=width, device=device, progress=heard)
    rows = []
    for index, (spec, (random, teacher_score)) in enumerate(zip(specs, refs, strict=True)):
        span = teacher_score - random
        for step, ev in zip(result.steps, result.games[spec.game], strict=True):
            norm = (ev.score - random) / span if abs(span) > 1e-9 else float("nan")
            for metric, value in (("score", ev.score), ("return_norm", norm), ("agreement", ev.agreement),
                                  ("kl_student", ev.kl)):
                rows.append({"cell": cell.id, "mdp": index, "step": step, "metric": metric, "value": float(value)})
    for step, score in zip(result.steps, result.teacher_scores, strict=False):
        if np.isfinite(score):  # before its first finished episode an online teacher has no score
            rows.append({"cell": cell.id, "mdp": 0, "step": step, "metric": "teacher_score", "value": score})
    metrics = pd.DataFrame(rows)
    last = metrics[metrics["step"] == metrics["step"].max()]
    final = last.groupby("metric")["value"].mean().astype(float).to_dict()
    teacher_params = sum(x.numel() for x in teachers[0].net.parameters())
    summary = Summary(cell=cell.id, step=int(result.steps[-1]), mdps=len(specs), final=final,
                      teacher_return=float(np.mean([t for _, t in refs])),
                      uniform_return=float(np.mean([r for r, _ in refs])),
                      references={"random": [r for r, _ in refs], "teacher": [t for _, t in refs],
                                  "optimal": [float("nan")] * len(specs)},
                      instances=[f"game={s.game}" for s in specs] if len(specs) > 1 else None,
                      student_parameters=sum(x.numel() for x in result.student.parameters()),
                      teacher_parameters=teacher_params, width=width)
    return metrics, summary

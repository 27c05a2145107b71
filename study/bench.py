"""Benchmarks: speed targets are measured here, never asserted in tests."""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass

import torch

import variants as V
from study.network.envs import EnvSpec
from study.tabular import generators as gen
from study.tabular import teachers as T
from study.tabular.engine import Plan, TrainConfig, distill
from study.tabular.mdp import MDPError


@dataclass
class TabularBench:
    """MDP-iterations per second of the batched engine and of a per-MDP loop on the same work."""

    mdps: int
    size: int
    iterations: int
    loop_mdps: int
    batched_seconds: float
    loop_seconds: float
    batched_rate: float
    loop_rate: float
    ratio: float
    fig3_hours_per_curve: float
    fig3_hours_all_curves: float
    machine: str


def machine_description() -> str:
    """What the numbers were measured on."""
    return (f"{platform.machine()} {platform.processor() or ''} {torch.get_num_threads()} torch thread(s), "
            f"{_cpu_count()} cores, torch {torch.__version__}").replace("  ", " ")


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _timed_run(mdp, teacher, variant: V.Variant, iterations: int, plan: Plan) -> float:
    """Seconds for iterations 2..N (the first iteration pays one-off set-up costs)."""
    marks: dict[int, float] = {}

    def tick(done: int) -> None:
        marks[done] = time.perf_counter()

    config = TrainConfig(mode="sampled", iterations=iterations, lr=0.05, optimizer="adam",
                         eval_every=iterations, max_steps=400)
    distill(mdp, teacher, [variant], plan, config, progress=tick, record_metrics=False)
    return marks[iterations] - marks[1]


def bench_tabular(mdps: int = 1000, size: int = 20, iterations: int = 6, loop_mdps: int | None = None,
                  progress=None) -> TabularBench:
    """The batched sampled engine on ``mdps`` grid worlds against a loop over single MDPs.

    Both run the same sampled on-policy distillation with the same keys, so
    they draw the same episodes: the work is identical. The loop covers
    ``loop_mdps`` of the MDPs (all of them by default).
    """
    torch.set_num_threads(1)
    loop_mdps = mdps if loop_mdps is None else min(loop_mdps, mdps)
    for name, value, low in (("mdps", mdps, 1), ("size", size, 3), ("iterations", iterations, 2),
                             ("loop_mdps", loop_mdps, 1)):
        if value < low:
            raise MDPError(f"{name}: {value} is out of range; allowed: {name} >= {low}"
                           + (" (the first iteration is set-up and is not timed)" if name == "iterations" else ""))
    mdp = gen.gridworld(mdps, size=size, seed=0)
    teacher = T.value_iteration(mdp)
    variant = V.variant("on_policy_distill", tau=0.1)
    batched = _timed_run(mdp, teacher, variant, iterations, Plan.product(mdps, 1, [0]))
    timed_its = iterations - 1
    loop = 0.0
    for i in range(loop_mdps):
        # MDP i alone, keyed as MDP i of the batch: it replays the batched run's episodes
        one = torch.tensor([i])
        plan = Plan(one, torch.tensor([0]), torch.tensor([0]))
        loop += _timed_run(mdp, teacher, variant, iterations, plan)
        if progress is not None:
            progress(i + 1)
    batched_rate = mdps * timed_its / batched
    loop_rate = loop_mdps * timed_its / loop
    per_curve = 1000 * 30_000 / batched_rate / 3600
    return TabularBench(mdps, size, iterations, loop_mdps, batched, loop, batched_rate, loop_rate,
                        batched_rate / loop_rate, per_curve, 9 * per_curve, machine_description())


@dataclass
class GridBench:
    """The runner's own cost per cell, and what a second worker buys on a real tabular study."""

    empty_cells: int
    seconds_per_empty_cell: float
    study_cells: int
    seconds_1_worker: float
    seconds_2_workers: float
    speedup: float
    machine: str


EMPTY_STUDY = """
name = "bench-empty"
seeds = {seeds}
[fixed]
generator = "bandit"
mdps = 1
n_actions = 2
mode = "exact"
iterations = 1
eval_every = 1
lr = 0.1
optimizer = "sgd"
variant = "on_policy_distill"
"""

REAL_STUDY = """
name = "bench-real"
seeds = 2
[fixed]
mdps = 20
tau = 0.1
iterations = 300
eval_every = 50
max_steps = 300
[factors]
variant = ["teacher_distill", "on_policy_distill", "n_distill", "expected_entropy_regularised"]
size = [8, 9, 10, 11]
"""


def bench_grid(empty_cells: int = 200) -> GridBench:
    """Time the runner on ``empty_cells`` trivial cells (its overhead: store writes, provenance,
    scheduling) and a small real study with 1 and with 2 workers, in fresh temporary folders."""
    import tempfile
    from pathlib import Path

    from study.run.runner import run_study
    from study.spec.grid import parse_study

    if empty_cells < 1:
        raise MDPError(f"empty_cells: {empty_cells} is out of range; allowed: empty_cells >= 1")
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        empty = parse_study(EMPTY_STUDY.format(seeds=empty_cells))
        start = time.perf_counter()
        run_study(empty, Path(tmp) / "empty", workers=1)
        per_cell = (time.perf_counter() - start) / empty_cells
        real = parse_study(REAL_STUDY)
        seconds = []
        for workers in (1, 2):
            start = time.perf_counter()
            run_study(real, Path(tmp) / f"real-{workers}", workers=workers)
            seconds.append(time.perf_counter() - start)
    return GridBench(empty_cells, per_cell, len(real.cells), seconds[0], seconds[1], seconds[0] / seconds[1],
                     machine_description())


@dataclass
class AtariBench:
    """Frames per second on Pong with the same number of environments: raw stepping, the distillation
    loop, our PPO and stable-baselines3's PPO (agent steps x 4 frames). The loop and our PPO run in fp32 and
    in bf16 mixed precision (``*_bf16``)."""

    num_envs: int
    steps: int
    raw_fps: float
    distill_fps: float
    distill_bf16_fps: float
    ppo_fps: float
    ppo_bf16_fps: float
    sb3_fps: float | None
    distill_over_raw: float
    distill_bf16_over_raw: float
    ppo_over_sb3: float | None
    ppo_bf16_over_sb3: float | None
    student_fraction: float
    threads: int
    device: str
    machine: str


def bench_atari(num_envs: int = 8, steps: int = 4096, threads: int | None = None, device: str = "cpu") -> AtariBench:
    """Each part runs ``steps`` agent steps on ``num_envs`` Pong environments (the distillation loop and
    PPO timed from their first completed iteration, so set-up is left out of both; stable-baselines3's
    PPO is timed in ``learn`` with its first rollout, which favours it slightly)."""
    import numpy as np

    from study.network.envs import VecEnv
    from study.network.nets import Net, parameters, width_for_fraction
    from study.network.rl.common import pick_device

    threads = threads or _cpu_count()
    torch.set_num_threads(threads)
    dev = pick_device(device)
    spec = EnvSpec("atari", "pong", frame_cap=2_000)
    env = VecEnv(spec, num_envs, 0)
    env.reset()
    rng = np.random.default_rng(0)
    actions = rng.integers(0, env.n_actions, (steps // num_envs, num_envs))
    start = time.perf_counter()
    for a in actions:
        env.step(a)
    raw = len(actions) * num_envs * 4 / (time.perf_counter() - start)
    env.close()

    width = width_for_fraction("nature", (4, 84, 84), 6, 0.25)
    distill = {p: _distill_fps(spec, num_envs, steps, width, device, p) for p in ("fp32", "bf16")}
    shape = (4, 84, 84)
    fraction = parameters(Net("nature", shape, 6, width)) / parameters(Net("nature", shape, 6))
    ppo = {p: _ppo_fps(spec, num_envs, steps, dev, p) for p in ("fp32", "bf16")}
    sb3 = _sb3_fps(num_envs, steps, dev.type)
    return AtariBench(num_envs, steps, raw, distill["fp32"], distill["bf16"], ppo["fp32"], ppo["bf16"], sb3,
                      distill["fp32"] / raw, distill["bf16"] / raw, ppo["fp32"] / sb3 if sb3 else None,
                      ppo["bf16"] / sb3 if sb3 else None, fraction, threads, str(dev), machine_description())


def _distill_fps(spec: EnvSpec, num_envs: int, steps: int, width: float, device: str, precision: str) -> float:
    """The loop with a Nature CNN teacher (random weights: speed does not depend on them) acting with
    epsilon 0.05 and the student learning with Rusu's KL from replay."""
    from study.network.loop import distill_network
    from study.network.nets import Net
    from study.network.teacher import Teacher, TeacherMeta
    from study.spec import LoopParams

    torch.manual_seed(0)
    teacher = Teacher(Net("nature", (4, 84, 84), 6), TeacherMeta(env=spec.to_dict(), obs_shape=[4, 84, 84],
                                                                 n_actions=6, algo="dqn", arch="nature"))
    rollout = 32
    iterations = max(2, steps // (num_envs * rollout))
    marks: dict[int, float] = {}
    cfg = LoopParams(iterations=iterations, num_envs=num_envs, rollout=rollout, eval_every=10**9, eval_episodes=1,
                     precision=precision)
    distill_network(spec, teacher, V.variant("rusu_kl"), cfg, seed=0, width=width, device=device,
                    progress=lambda it, _r: marks.__setitem__(it, time.perf_counter()))
    return (iterations - 1) * num_envs * rollout * 4 / (marks[iterations] - marks[1])


def _ppo_fps(spec: EnvSpec, num_envs: int, steps: int, dev: torch.device, precision: str) -> float:
    from study.network.rl.ppo import PPOConfig, train_ppo

    marks: list[tuple[int, float]] = []
    train_ppo(spec, steps, PPOConfig(num_envs=num_envs, precision=precision), seed=0, device=dev, resume=None,
              checkpoint=lambda _p: None, checkpoint_every=10**12,
              progress=lambda s, _r: marks.append((s, time.perf_counter())))
    (s0, t0), (s1, t1) = marks[0], marks[-1]
    return (s1 - s0) * 4 / (t1 - t0)


def _sb3_fps(num_envs: int, steps: int, device: str = "cpu") -> float | None:
    """stable-baselines3's PPO with the same settings, on its standard Atari pipeline (None if absent)."""
    try:
        import ale_py
        import gymnasium as gym
        from stable_baselines3 import PPO
        from stable_baselines3.common.env_util import make_atari_env
        from stable_baselines3.common.vec_env import VecFrameStack
    except ImportError:
        return None
    gym.register_envs(ale_py)
    env = VecFrameStack(make_atari_env("ALE/Pong-v5", n_envs=num_envs, seed=0,
                                       env_kwargs={"frameskip": 1, "repeat_action_probability": 0.25}), n_stack=4)
    model = PPO("CnnPolicy", env, n_steps=128, n_epochs=4, batch_size=num_envs * 128 // 4, learning_rate=2.5e-4,
                clip_range=0.1, ent_coef=0.01, vf_coef=0.5, max_grad_norm=0.5, device=device, seed=0, verbose=0)
    start = time.perf_counter()
    model.learn(total_timesteps=steps)
    seconds = time.perf_counter() - start
    env.close()
    return model.num_timesteps * 4 / seconds

"""Benchmarks: speed targets are measured here, never asserted in tests."""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

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
    profile: LoopProfile


@dataclass
class LoopProfile:
    """The distillation loop's work per agent step (one env's step), each part timed alone in this process
    with the loop's shapes, against the target's budget: the loop at half the raw stepping rate may spend
    twice the emulator's time per agent step, on ``cores`` cores. ``parts`` maps a part to microseconds of
    CPU time per agent step."""

    parts: dict[str, float]
    cpu_us: float  # the parts' sum
    cores: int
    budget_us: float  # wall time per agent step at 0.5 x raw stepping
    floor_us: float  # the parts spread perfectly over the cores: no overlap can do better
    loop_us: float  # the loop as measured (fp32)
    over_budget_us: float  # loop_us - budget_us (negative: met)


def profile_loop(spec: EnvSpec, num_envs: int, width: float, raw_fps: float, loop_fps: float,
                 reps: int = 64) -> LoopProfile:
    """Time each part of the loop's per-step work alone, as microseconds per agent step: the emulator (from
    ``raw_fps``), the teacher's forward pass on one env group, the control policy's draw, storing a rollout
    in the replay memory, and the student's replayed updates (``updates`` minibatches of ``batch`` drawn
    and learned per ``num_envs x rollout`` agent steps). Alone, a part has the core to itself: in the loop
    they share the cores, so the sum over the cores is a floor on the loop's time."""
    from study.network.loop.actor import env_groups
    from study.network.loop.learner import Learner
    from study.network.loop.memory import Memory
    from study.network.nets import Net
    from study.spec import LoopParams
    from variants.acting import control_probs

    def per_call(work: Callable[[], object], calls: int) -> float:
        work()  # warm-up: first-call allocations are set-up, as the loop's first iteration is
        start = time.perf_counter()
        for _ in range(calls):
            work()
        return (time.perf_counter() - start) / calls

    torch.manual_seed(0)
    cfg = LoopParams(num_envs=num_envs)
    variant = V.variant("rusu_kl")
    generator = torch.Generator().manual_seed(0)
    groups = env_groups(spec, num_envs, 0)
    obs = torch.as_tensor(groups[0].reset())
    n_actions = groups[0].n_actions
    for env in groups:
        env.close()
    group, shape = len(obs), tuple(obs.shape[1:])
    teacher = Net("nature", shape, n_actions).eval()
    with torch.no_grad():
        out = teacher(obs)
        forward = per_call(lambda: teacher(obs), reps) / group

    def act() -> None:
        q = control_probs(variant, out, out, 0)
        torch.multinomial(q, 1, generator=generator).squeeze(-1).numpy()

    rollout = num_envs * cfg.rollout
    memory = Memory(cfg.replay, shape, n_actions)
    copies = -(-rollout // group)
    frames, targets = obs.repeat(copies, 1, 1, 1)[:rollout], out.repeat(copies, 1)[:rollout]
    store = per_call(lambda: memory.add(frames, targets), reps) / rollout
    student = Net("nature", shape, n_actions, width)
    learner = Learner(student, variant, cfg, generator=generator, device=torch.device("cpu"), background=False)
    update = per_call(lambda: learner.learn_replayed(student, memory), max(2, reps // 8)) / rollout
    parts = {"emulator (ale-py: frame skip 4, max-pool, resize, frame stack)": 4e6 / raw_fps,
             f"teacher forward pass (batch of {group}, no gradients)": forward * 1e6,
             "control policy and action draw": per_call(act, reps * 4) / group * 1e6,
             "storing the rollout in the replay memory": store * 1e6,
             f"student updates ({cfg.updates} minibatches of {cfg.batch} per {rollout} agent steps)": update * 1e6}
    cpu, cores = sum(parts.values()), _cpu_count()
    budget, loop = 2 * 4e6 / raw_fps, 4e6 / loop_fps
    return LoopProfile(parts, cpu, cores, budget, cpu / cores, loop, loop - budget)


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
    profile = profile_loop(spec, num_envs, width, raw, distill["fp32"])
    return AtariBench(num_envs, steps, raw, distill["fp32"], distill["bf16"], ppo["fp32"], ppo["bf16"], sb3,
                      distill["fp32"] / raw, distill["bf16"] / raw, ppo["fp32"] / sb3 if sb3 else None,
                      ppo["bf16"] / sb3 if sb3 else None, fraction, threads, str(dev), machine_description(), profile)


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


@dataclass
class EnginePart:
    """One engine's cost on the timed slice of a study, and its estimate for the whole study."""

    teacher_seconds_per_mdp: float
    setup_seconds_per_instance: float
    train_rate: float  # instance-iterations per second
    evaluate_seconds_per_instance: float
    timed_seconds: float
    study_seconds: float
    rollout_share: float  # of the training time, sampling episodes (NaN where not measured)


@dataclass
class StudyBench:
    """A real study's first batch of cells, timed on its first ``mdps`` MDPs with this engine and with the
    previous code path, and the whole study's time estimated from both."""

    study: str
    arms: int
    mdps: int
    iterations: int
    reference_iterations: int
    workers: int
    study_instances: int
    study_iterations: int
    study_evaluations: int
    now: EnginePart
    before: EnginePart
    ratio: float
    timed_ratio: float
    peak_rss_gib: float
    machine: str
    device: str = "cpu"  # where the previous code path ran


def bench_study(ref: str, mdps: int = 100, iterations: int = 60, reference_iterations: int | None = None,
                workers: int = 2, device: str = "cpu") -> StudyBench:
    """Time a study's first batch of cells (every arm that shares its MDPs) on its first ``mdps`` MDPs.

    Both engines train the same arms on the same MDPs and keys: the compiled engine for ``iterations``
    iterations, the previous code path for ``reference_iterations`` (the same by default: the same work);
    each evaluates four times, and each builds the slice's teachers. Rates are measured at the slice's batch
    size and scaled linearly to the study's tasks (a larger batch runs at least as fast per instance, most
    of all on the previous path, whose per-step cost barely grows with the batch). The whole study's time
    is the runner's tasks (:func:`study.run.runner.batches`) spread over ``workers``, each task paying its
    teacher, set-up, iterations and evaluations at the measured rates.

    With a ``device`` other than the CPU, the previous code path (plain tensor operations, so it runs on any
    torch device) trains and evaluates the students there instead, with the teachers the compiled engine
    builds on the CPU (its tensor Q-learning steps one batch of operations per step, bound by kernel launches
    on a GPU). The compiled engine itself runs on the CPU only (numba loops, LAPACK's banded solver).
    """
    import resource

    from study.network.rl.common import pick_device
    from study.run.checks import check_study
    from study.run.runner import batches
    from study.run.tabular import batch_key, build_mdp, build_teacher, train_config
    from study.spec import load_study
    from study.spec.cells import TabularCell
    from study.tabular import reference
    from study.tabular.students import Student

    dev = pick_device(device)  # refused before any work when it is not there
    torch.set_num_threads(1)
    for name, value, low in (("mdps", mdps, 1), ("iterations", iterations, 2), ("workers", workers, 1)):
        if value < low:
            raise MDPError(f"{name}: {value} is out of range; allowed: {name} >= {low}")
    reference_iterations = iterations if reference_iterations is None else reference_iterations
    if reference_iterations < 2:
        raise MDPError(f"reference_iterations: {reference_iterations} is out of range; allowed: >= 2")
    study = load_study(ref)
    if study.spec.tier != "tabular":
        raise MDPError(f"study {study.name!r} is not a tabular study (tier {study.spec.tier!r}); allowed: a "
                       "tabular study")
    study = check_study(study)
    cells = [c for c in study.cells if isinstance(c, TabularCell)]
    group = [c for c in cells if batch_key(c) == batch_key(cells[0])]
    first = group[0]
    env = first.env.model_copy(update={"mdps": min(mdps, first.env.mdps)})
    mdp = build_mdp(env)
    variants = list(dict.fromkeys(c.variant for c in group))
    plan = Plan(torch.arange(mdp.n_mdps).repeat(len(group)),
                torch.tensor([variants.index(c.variant) for c in group]).repeat_interleave(mdp.n_mdps),
                torch.tensor([c.seed for c in group]).repeat_interleave(mdp.n_mdps))
    student = Student(first.student.student)

    def timed(reference_path: bool, its: int) -> tuple[float, dict[str, float], int]:
        start = time.perf_counter()
        teacher = build_teacher(mdp, first.teacher, env.mdp_seed)
        teacher_seconds = time.perf_counter() - start
        config = replace(train_config(first.train, first.student), iterations=its, eval_every=max(1, its // 3))
        if reference_path and dev.type != "cpu":
            with torch.device(dev):
                curves = distill(mdp.on(dev), teacher.to(dev), variants, plan.on(dev), config, student=student,
                                 reference=True)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            return teacher_seconds, curves.seconds, len(curves.steps)
        if reference_path and first.teacher.teacher in ("q_learning", "q_learning_explored"):
            # the previous batched tensor Q-learning, on the same recipe (it had no expected fall; the work
            # per step is the same)
            kwargs = {} if first.teacher.teacher == "q_learning" else T.explored_recipe(mdp)
            start = time.perf_counter()
            reference.tensor_q_learning(mdp, episodes=first.teacher.q_episodes, gamma=first.teacher.teacher_gamma,
                                        seed=env.mdp_seed, **kwargs)
            teacher_seconds = time.perf_counter() - start
        curves = distill(mdp, teacher, variants, plan, config, student=student, reference=reference_path)
        return teacher_seconds, curves.seconds, len(curves.steps)

    def part(teacher_seconds: float, seconds: dict[str, float], evals: int, its: int) -> EnginePart:
        n = len(plan)
        rate = n * its / max(seconds["train"], 1e-9)
        part_ = EnginePart(teacher_seconds / mdp.n_mdps, seconds["setup"] / n, rate, seconds["evaluate"] / (n * evals),
                           teacher_seconds + seconds["setup"] + seconds["train"] + seconds["evaluate"], 0.0,
                           seconds["rollout"] / seconds["train"] if seconds["rollout"] else math.nan)
        part_.study_seconds = _study_seconds(part_, tasks, first.train.iterations, study_evals, workers)
        return part_

    tasks = [(len(t) * t[0].env.mdps, t[0].env.mdps) for t in batches(cells, workers)]
    study_evals = len(train_config(first.train, first.student).eval_at()) + 1
    now = part(*timed(False, iterations), iterations)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    before = part(*timed(True, reference_iterations), reference_iterations)
    return StudyBench(study.name, len(group), mdp.n_mdps, iterations, reference_iterations, workers,
                      sum(n for n, _ in tasks), first.train.iterations, study_evals, now, before,
                      before.study_seconds / now.study_seconds,
                      before.timed_seconds / now.timed_seconds if reference_iterations == iterations else math.nan,
                      peak / 2**20, machine_description() + _device_description(dev), str(dev))


def _device_description(dev: torch.device) -> str:
    return f"; previous code path on {torch.cuda.get_device_name(dev)}" if dev.type == "cuda" else ""


def _study_seconds(part: EnginePart, tasks: list[tuple[int, int]], iterations: int, evaluations: int,
                   workers: int) -> float:
    """The runner's tasks (instances, MDPs) at the measured rates, longest first onto the least loaded of
    ``workers`` (each task builds its own teachers)."""
    loads = [0.0] * workers
    for instances, n_mdps in sorted(tasks, reverse=True):
        cost = (part.teacher_seconds_per_mdp * n_mdps + part.setup_seconds_per_instance * instances
                + instances * iterations / part.train_rate + part.evaluate_seconds_per_instance * instances
                * evaluations)
        loads[loads.index(min(loads))] += cost
    return max(loads)

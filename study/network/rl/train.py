"""`distill teacher train` and `distill teacher eval`: train a DQN or PPO teacher with periodic checkpoints
that `--resume` continues from, then evaluate it and write the teacher file with its learning curve.

    PATH            the teacher file (weights and metadata; see study.network.teacher)
    PATH.ckpt       the training checkpoint (network, optimiser, replay memory, curve, random state)
    PATH.curve.csv  unclipped score of every finished training episode, by agent step
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from study.network.envs import MINATAR_GAMES, EnvError, EnvSpec
from study.network.nets import set_precision
from study.network.rl.common import act_greedy, act_sample, evaluate, pick_device
from study.network.rl.dqn import DQNConfig, train_dqn
from study.network.rl.ppo import PPOConfig, train_ppo
from study.network.teacher import Teacher, TeacherError, TeacherMeta, read_teacher, save_teacher
from study.store.format import write_torch

TRAINERS = {"dqn": (DQNConfig, train_dqn), "ppo": (PPOConfig, train_ppo)}


def parse_env(text: str, sticky: float | None = None) -> EnvSpec:
    """``minatar/breakout``, ``atari/pong``, or a gymnasium id (``MinAtar/Breakout-v1``, ``ALE/Pong-v5``)."""
    tier, _, game = text.partition("/")
    if tier.lower() == "minatar" and game and game[0].isupper():
        names = {v: k for k, v in MINATAR_GAMES.items()}
        game = names.get(game.removesuffix("-v1"), game)
    elif tier == "ALE":
        tier, game = "atari", "".join(("_" + c.lower()) if c.isupper() else c
                                      for c in game.removesuffix("-v5")).lstrip("_")
    if not game:
        raise EnvError(f"environment {text!r}; allowed: minatar/GAME ({', '.join(MINATAR_GAMES)}) or atari/GAME "
                       "(e.g. atari/pong)")
    return EnvSpec(tier.lower(), game, sticky=sticky)


def paths(out: Path) -> tuple[Path, Path]:
    """Checkpoint and learning-curve files beside the teacher file."""
    return out.with_name(out.name + ".ckpt"), out.with_name(out.name + ".curve.csv")


def teacher_table(folder: Path) -> list[dict[str, Any]]:
    """One row per teacher file in ``folder``: what it is and how well it plays."""
    rows = []
    for path in sorted(Path(folder).glob("*.pt")):
        meta, state = read_teacher(path)
        rows.append({"file": path.name, "environment": meta.env_spec.id, "sticky": meta.env_spec.sticky,
                     "algo": meta.algo, "agent steps": meta.steps, "parameters": sum(v.numel() for v in state.values()),
                     "score": meta.eval_mean, "sd": meta.eval_std, "episodes": meta.eval_episodes,
                     "commit": (meta.commit or "")[:10]})
    return rows


@dataclass
class Trained:
    """What `distill teacher train` made: the teacher's metadata and file, its curve and how fast it trained."""

    meta: TeacherMeta
    path: Path
    curve: Path
    seconds: float
    steps_per_second: float


def train_teacher(spec: EnvSpec, algo: str, steps: int, out: Path, *, resume: bool = False, device: str = "auto",
                  seed: int = 0, checkpoint_every: int | None = None, eval_episodes: int = 30,
                  eval_epsilon: float = 0.05, config: dict[str, Any] | None = None,
                  progress: Callable[[int, int, float], None] | None = None) -> Trained:
    """Train, checkpointing every ``checkpoint_every`` agent steps; evaluate; write the teacher file."""
    if algo not in TRAINERS:
        raise TeacherError(f"--algo {algo!r}; allowed: {', '.join(TRAINERS)}")
    if steps < 1 or eval_episodes < 1:
        raise TeacherError(f"--steps {steps} / --eval-episodes {eval_episodes}; allowed: both >= 1")
    out = Path(out)
    ckpt_path, curve_path = paths(out)
    state = _resume_state(ckpt_path, spec, algo, resume)
    dev = pick_device(device)
    cfg_cls, trainer = TRAINERS[algo]
    cfg = cfg_cls.for_tier(spec.tier)
    for key, value in (state["config"] if state else config or {}).items():
        if not hasattr(cfg, key):
            raise TeacherError(f"{algo} setting {key!r}; allowed: {', '.join(cfg.__dataclass_fields__)}")
        setattr(cfg, key, value)
    try:
        cfg.check()
    except ValueError as exc:
        raise TeacherError(f"--algo {algo}: {exc}") from None
    if checkpoint_every is not None and checkpoint_every < 1:
        raise TeacherError(f"--checkpoint-every {checkpoint_every}; allowed: >= 1")
    every = checkpoint_every or max(10_000, steps // 20)

    def save(payload: dict[str, Any]) -> None:
        payload.update(env=spec.to_dict(), algo=algo, seed=seed)
        write_torch(ckpt_path, payload)

    start, first = time.perf_counter(), int(state["step"]) if state else 0
    net, curve, done = trainer(spec, steps, cfg, seed=seed, device=dev, resume=state, checkpoint=save,
                               checkpoint_every=every, progress=lambda s, r: progress and progress(s, steps, r))
    seconds = time.perf_counter() - start
    curve.write(curve_path)
    net = set_precision(net, "fp32").cpu().eval()  # scored as it will be loaded: a teacher computes in fp32
    scores = evaluate(_acting(net, algo, eval_epsilon, seed), spec, eval_episodes, seed + 7919, torch.device("cpu"))
    from study.store.format import provenance

    meta = TeacherMeta(env=spec.to_dict(), obs_shape=list(net.obs_shape), n_actions=net.head.out_features,
                       algo=algo, arch=net.trunk.arch,
                       width=net.trunk.width, steps=done, eval_mean=float(scores.mean()),
                       eval_std=float(scores.std(ddof=1)) if len(scores) > 1 else 0.0, eval_episodes=len(scores),
                       commit=provenance(0, 0, 0)["git_commit"],
                       extra={"seed": seed, "eval_epsilon": eval_epsilon if algo == "dqn" else None,
                              "config": cfg.__dict__, "frames": done * (4 if spec.tier == "atari" else 1)})
    save_teacher(out, net, meta)
    return Trained(meta, out, curve_path, seconds, (done - first) / max(seconds, 1e-9))


def _resume_state(ckpt: Path, spec: EnvSpec, algo: str, resume: bool) -> dict[str, Any] | None:
    if not resume:
        if ckpt.exists():
            raise TeacherError(f"{ckpt}: a training checkpoint exists; continue it with --resume, or remove it "
                               "to start again")
        return None
    if not ckpt.is_file():
        raise TeacherError(f"--resume: no checkpoint {ckpt} to continue from; run without --resume to start")
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise TeacherError(f"{ckpt}: not a loadable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or "step" not in state:
        raise TeacherError(f"{ckpt}: not a training checkpoint of `distill teacher train`")
    if state.get("env") != spec.to_dict() or state.get("algo") != algo:
        raise TeacherError(f"{ckpt}: a checkpoint of {state.get('algo')} on {state.get('env')}; this run asks for "
                           f"{algo} on {spec.to_dict()}")
    return state


def _acting(net: Any, algo: str, epsilon: float, seed: int,
            greedy: bool = False) -> Callable[[torch.Tensor], np.ndarray]:
    """How a teacher plays: epsilon-greedy on Q-values (DQN), sampling its policy (PPO); ``greedy``: epsilon-
    greedy on its outputs whatever the algorithm, as studies score teachers and students."""
    if algo == "dqn" or greedy:
        rng = np.random.default_rng(seed)
        return lambda obs: act_greedy(net(obs), epsilon, rng)
    gen = torch.Generator().manual_seed(seed)
    return lambda obs: act_sample(net(obs), gen)


def eval_teacher(path: Path, episodes: int = 30, epsilon: float = 0.05, seed: int = 0,
                 greedy: bool = False) -> tuple[Teacher, np.ndarray]:
    """Unclipped scores of a teacher file over whole episodes (``greedy``: see ``_acting``)."""
    teacher = Teacher.load(path)
    policy = _acting(teacher.net, teacher.meta.algo, epsilon, seed, greedy)
    return teacher, evaluate(policy, teacher.meta.env_spec, episodes, seed + 7919, torch.device("cpu"))

"""The distillation loop of the network tiers: one loop for every variant.

Each iteration collects ``rollout`` steps from every env under the variant's
control policy (teacher, student, uniform or a mixture on its schedule; the
teacher queried in batches without gradients), then updates the student:

- teacher-driven variants with no pseudo-reward (Rusu et al.'s recipes,
  teacher distill) learn from a replay memory of (observation, teacher
  output) pairs, as Rusu et al. did;
- everything else (student-driven, mixtures, reward-based variants) learns
  from the fresh rollout with the variant's surrogate. Each env's rollout is
  cut into its episodes' pieces; returns are summed within a piece, so a piece
  cut by the end of the rollout is credited only up to the cut.

Periodic evaluation plays whole episodes with the student and records its
unclipped score, its score normalised between a random policy (0) and the
teacher (1) under the same protocol, its argmax agreement with the teacher and
KL(pi_T || pi_theta) on the states it visits.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from study.network.envs import EnvSpec, VecEnv
from study.network.nets import MultiTaskNet, Net, check_precision, set_precision
from study.network.rl.common import act_greedy, evaluate, pick_device
from study.network.teacher import Teacher
from variants import Variant, VariantError, masked_state_loss, surrogate
from variants.acting import control_probs
from variants.policy import kl, student_log_probs, teacher_log_probs


@dataclass
class LoopConfig:
    """How long and how a network student trains, and how it is evaluated."""

    iterations: int = 1_000
    num_envs: int = 8
    rollout: int = 32  # steps per env per iteration
    replay: int = 50_000  # teacher-driven memory: observations with their teacher outputs
    batch: int = 128
    updates: int = 2  # replay minibatches per iteration
    lr: float = 1e-3
    optimizer: str = "adam"  # or "rmsprop" (Rusu et al.)
    max_grad_norm: float = 10.0
    width: float = 1.0
    eval_every: int = 100
    eval_episodes: int = 10
    eval_epsilon: float = 0.05
    device: str = "cpu"  # or "auto" (the GPU when present), "cuda"; random draws stay on the CPU
    # the student's arithmetic (study.network.nets.PRECISIONS); the teacher always computes in fp32, since at a
    # temperature of 0.01 bf16's rounding of its outputs would move the targets
    precision: str = "fp32"

    def check(self) -> None:
        ints = ("iterations", "num_envs", "rollout", "replay", "batch", "updates", "eval_every", "eval_episodes")
        for name in ints:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} {getattr(self, name)!r}: out of range; allowed: >= 1")
        if self.replay < self.num_envs * self.rollout:
            raise ValueError(f"replay {self.replay} is smaller than one rollout ({self.num_envs} envs x "
                             f"{self.rollout} steps); allowed: replay >= num_envs x rollout")
        if self.optimizer not in ("adam", "rmsprop"):
            raise ValueError(f"optimizer {self.optimizer!r}; allowed: adam, rmsprop")
        if not 0.0 <= self.eval_epsilon <= 1.0 or self.lr <= 0 or self.width <= 0:
            raise ValueError("eval_epsilon in [0, 1], lr > 0 and width > 0 are required")
        check_precision(self.precision)


def uses_replay(variant: Variant) -> bool:
    """Teacher-driven data that does not move with the student and no pseudo-reward: a supervised
    problem, so a replay memory of it is sound (Rusu et al.)."""
    return not variant.control.depends_on_student and variant.reward == "none" and not variant.env_reward


def check_variant(variant: Variant) -> None:
    if variant.v_cond:
        raise VariantError(f"variant {variant.name!r}: +V cond needs the student's value V_theta(s), which "
                           "network students do not have; allowed here: variants without v_cond")
    if variant.critic != "none":
        raise VariantError(f"variant {variant.name!r}: critic {variant.critic!r} is a value table of the tabular "
                           "tier; network students have no critic; allowed here: critic 'none'")


@dataclass
class Evaluation:
    score: float
    agreement: float
    kl: float


@dataclass
class LoopResult:
    """Evaluations along training (agent steps per game so far), per game."""

    steps: list[int] = field(default_factory=list)
    games: dict[str, list[Evaluation]] = field(default_factory=dict)
    student: torch.nn.Module | None = None
    teacher_scores: list[float] = field(default_factory=list)  # online teacher: its recent training score

    @property
    def evals(self) -> list[Evaluation]:
        """The evaluations of a single-game run."""
        if len(self.games) != 1:
            raise ValueError(f"{len(self.games)} games: read result.games")
        return next(iter(self.games.values()))


class GameHead(torch.nn.Module):
    """One game's view of a multi-task student: ``forward(obs)`` as a single-game network has."""

    def __init__(self, net: MultiTaskNet, game: str) -> None:
        super().__init__()
        self.net, self.game = net, game

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(obs, self.game)


@dataclass
class _Game:
    """What the loop keeps per game: its environments (in groups, see ``env_groups``) with their current
    observations, teacher, the student's head and its memory."""

    spec: EnvSpec
    teacher: Teacher
    student: torch.nn.Module
    envs: list[VecEnv]
    replay: Memory | None
    obs: list[Tensor]
    device: torch.device


class Updates:
    """Runs the student's updates. On replayed teacher-driven data the student has no part in collecting,
    so its updates run in a worker thread while the next rollout is collected (torch releases the
    interpreter in its kernels); they run one at a time in the order submitted, so the numbers are those
    of running them in place. Anything that reads the student waits for them first."""

    def __init__(self, background: bool) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="student-updates") if background else None
        self._pending: Future[None] | None = None

    def submit(self, work: Callable[[], None]) -> None:
        if self._pool is None:
            work()
            return
        self.wait()
        self._pending = self._pool.submit(work)

    def wait(self) -> None:
        """Until every submitted update is done (re-raising what one raised)."""
        if self._pending is not None:
            try:
                self._pending.result()
            finally:
                self._pending = None

    def close(self, quiet: bool = False) -> None:
        """Wait for the running update and stop the worker: a loop that stops leaves none behind. ``quiet``
        (the loop is already failing) keeps the worker's own error from hiding the loop's."""
        try:
            self.wait()
        except Exception:
            if not quiet:
                raise
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)


def env_groups(spec: EnvSpec, num_envs: int, seed: int) -> list[VecEnv]:
    """The ``num_envs`` environments (env ``i`` seeded ``seed + i``) as groups that step in turn: Atari in
    two, so that one group's emulators run (in ale-py's thread) while the networks act for the other;
    MinAtar, whose steps hold the interpreter, in one."""
    bounds = [0, num_envs // 2, num_envs] if spec.tier == "atari" and num_envs >= 2 else [0, num_envs]
    return [VecEnv(spec, hi - lo, seed + lo) for lo, hi in itertools.pairwise(bounds)]


class Memory:
    """A circular memory of observations and the teacher's outputs on them."""

    def __init__(self, capacity: int, obs_shape: tuple[int, ...], n_actions: int) -> None:
        self.obs = torch.zeros((capacity, *obs_shape), dtype=torch.uint8)
        self.out = torch.zeros((capacity, n_actions))
        self.capacity, self.size, self.pos = capacity, 0, 0

    def add(self, obs: Tensor, out: Tensor) -> None:
        if self.pos + len(obs) <= self.capacity:  # one slice: a plain copy
            self.obs[self.pos:self.pos + len(obs)], self.out[self.pos:self.pos + len(obs)] = obs.cpu(), out.cpu()
        else:
            idx = (self.pos + torch.arange(len(obs))) % self.capacity
            self.obs[idx], self.out[idx] = obs.cpu(), out.cpu()
        self.pos = int((self.pos + len(obs)) % self.capacity)
        self.size = min(self.size + len(obs), self.capacity)

    def sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        idx = torch.randint(0, self.size, (n,), generator=generator)
        return self.obs[idx], self.out[idx]


def segments(done: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Cut rollouts ``done [N, T]`` into episode pieces: each step's piece and position in it, the number
    of pieces and the longest piece (a piece starts at t = 0 and after every done)."""
    n, t = done.shape
    boundary = np.zeros((n, t), dtype=bool)
    boundary[:, 0] = True
    boundary[:, 1:] = done[:, :-1]
    piece = np.cumsum(boundary.reshape(-1)) - 1  # row-major: env by env
    steps = np.arange(t)[None, :].repeat(n, 0)
    start = np.maximum.accumulate(np.where(boundary, steps, 0), axis=1)
    pos = (steps - start).reshape(-1)
    return piece, pos, int(piece[-1]) + 1, int(pos.max()) + 1


class Learner(Protocol):
    """A teacher that is still learning (Rusu et al.'s online distillation): ``advance`` trains it one
    step; ``curve.recent()`` is its recent training score."""

    curve: Any

    def advance(self) -> None: ...


def distill_network(spec: EnvSpec, teacher: Teacher, variant: Variant, cfg: LoopConfig, *, seed: int,
                    progress: Callable[[int, LoopResult], None] | None = None, online: Learner | None = None,
                    online_steps: int = 0) -> LoopResult:
    """Train a student of ``cfg.width`` on ``spec`` from ``teacher`` with ``variant``. With ``online``, the
    teacher's network is the learner's, which takes ``online_steps`` steps after every iteration."""
    torch.manual_seed(seed)
    shape = tuple(teacher.meta.obs_shape)
    student = Net(teacher.meta.arch, shape, teacher.meta.n_actions, cfg.width)
    return _train({spec.game: (spec, teacher, student)}, student, variant, cfg, seed, progress, online,
                  online_steps)


def distill_multitask(games: dict[str, tuple[EnvSpec, Teacher]], variant: Variant, cfg: LoopConfig, *, seed: int,
                      progress: Callable[[int, LoopResult], None] | None = None) -> LoopResult:
    """Rusu et al.'s multi-task distillation: one student with a head per game (and per-game input layers
    where the games' observations differ), one memory per game; every iteration collects from and
    updates on every game in turn."""
    torch.manual_seed(seed)
    arch = {t.meta.arch for _, t in games.values()}
    if len(arch) != 1:
        raise ValueError(f"multi-task students need teachers of one architecture; got {sorted(arch)}")
    net = MultiTaskNet(arch.pop(), {g: tuple(t.meta.obs_shape) for g, (_, t) in games.items()},
                       {g: t.meta.n_actions for g, (_, t) in games.items()}, cfg.width)
    return _train({g: (spec, t, GameHead(net, g)) for g, (spec, t) in games.items()}, net, variant, cfg, seed,
                  progress)


def _train(parts: dict[str, tuple[EnvSpec, Teacher, torch.nn.Module]], student: torch.nn.Module, variant: Variant,
           cfg: LoopConfig, seed: int, progress: Callable[[int, LoopResult], None] | None,
           online: Learner | None = None, online_steps: int = 0) -> LoopResult:
    cfg.check()
    check_variant(variant)
    dev = pick_device(cfg.device)
    set_precision(student, cfg.precision).to(dev)
    for _, teacher, _ in parts.values():
        teacher.net.to(dev)
    gen = torch.Generator().manual_seed(seed)
    opt = (torch.optim.Adam(student.parameters(), lr=cfg.lr) if cfg.optimizer == "adam"
           else torch.optim.RMSprop(student.parameters(), lr=cfg.lr, alpha=0.95, eps=1e-6))
    games = {}
    for k, (name, (spec, teacher, head)) in enumerate(parts.items()):
        envs = env_groups(spec, cfg.num_envs, seed + 7_919 * k)
        memory = Memory(cfg.replay, envs[0].obs_shape, envs[0].n_actions) if uses_replay(variant) else None
        obs = [torch.as_tensor(env.reset(), device=dev) for env in envs]
        games[name] = _Game(spec, teacher, head, envs, memory, obs, dev)
    result = LoopResult(student=student, games={name: [] for name in games})
    updates = Updates(background=uses_replay(variant))

    def evaluate_all(it: int) -> None:
        updates.wait()
        result.steps.append(it * cfg.num_envs * cfg.rollout)
        if online is not None:
            result.teacher_scores.append(float(online.curve.recent()))
        for k, g in enumerate(games.values()):
            result.games[g.spec.game].append(
                evaluate_student(g.student, g.teacher, variant, g.spec, cfg, seed + 104_729 * (it + 1) + k))

    try:
        for it in range(cfg.iterations):
            if it % cfg.eval_every == 0:
                evaluate_all(it)
            for g in games.values():
                _iteration(g, variant, cfg, it, gen, opt, updates)
            for _ in range(online_steps if online is not None else 0):
                online.advance()
            if progress is not None:  # told when a rollout is collected; its updates may still be running
                progress(it + 1, result)
        evaluate_all(cfg.iterations)
        updates.close()
    except BaseException:
        updates.close(quiet=True)
        raise
    finally:
        for g in games.values():
            for env in g.envs:
                env.close()
    return result


def _iteration(g: _Game, variant: Variant, cfg: LoopConfig, it: int, gen: torch.Generator,
               opt: torch.optim.Optimizer, updates: Updates) -> None:
    """Collect one rollout from a game under the control policy, then update the student on it."""
    needs_v = variant.reward == "teacher_v"
    student_acts = variant.control.weights(it)[1] > 0
    # per group, per step: observation, teacher output, action, reward, done, V_T
    bufs: list[dict[str, list[Tensor]]] = [{k: [] for k in ("obs", "out", "act", "rew", "done", "v")} for _ in g.envs]

    @torch.no_grad()
    def act(k: int) -> None:
        """Choose group k's actions on its current observations and start its step."""
        obs, buf = g.obs[k], bufs[k]
        if needs_v:
            t_out, v_t = g.teacher.outputs_and_value(obs, variant.tau)
            buf["v"].append(v_t)
        else:
            t_out = g.teacher.outputs(obs)
        s_out = g.student(obs) if student_acts else t_out  # unused by a control the student has no share in
        q = control_probs(variant, t_out, s_out, it)
        action = torch.multinomial(q.cpu(), 1, generator=gen).squeeze(-1)  # CPU draws: same on any device
        g.envs[k].send(action.numpy())
        buf["obs"].append(obs)
        buf["out"].append(t_out)
        buf["act"].append(action.to(g.device))

    for k in range(len(g.envs)):
        act(k)
    for t in range(cfg.rollout):
        for k, env in enumerate(g.envs):  # while group k steps, the others' actions are being chosen
            nxt, reward, terminated, truncated = env.recv()
            bufs[k]["rew"].append(torch.as_tensor(reward, dtype=torch.float32, device=g.device))
            bufs[k]["done"].append(torch.as_tensor(terminated | truncated))
            g.obs[k] = torch.as_tensor(nxt, device=g.device)
            if t + 1 < cfg.rollout:
                act(k)
    # each step's groups side by side: [T] lists of [N] tensors, envs in their order
    joined = {key: [torch.cat([b[key][t] for b in bufs]) for t in range(len(bufs[0][key]))] for key in bufs[0]}
    if g.replay is not None:
        g.replay.add(torch.cat(joined["obs"]), torch.cat(joined["out"]))
        batches = [g.replay.sample(cfg.batch, gen) for _ in range(cfg.updates)]  # copies: the memory moves on

        def replayed() -> None:
            for o, out in batches:
                o, out = o.to(g.device), out.to(g.device)
                _step(opt, g.student, masked_state_loss(variant, g.student(o), out).mean(), cfg)

        updates.submit(replayed)
    else:
        updates.wait()
        loss = _rollout_loss(variant, g.student, joined["obs"], joined["out"], joined["act"], joined["rew"],
                             joined["done"], joined["v"] if needs_v else None)
        _step(opt, g.student, loss, cfg)


def _step(opt: torch.optim.Optimizer, net: torch.nn.Module, loss: Tensor, cfg: LoopConfig) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.max_grad_norm)
    opt.step()


def _rollout_loss(variant: Variant, student: torch.nn.Module, obs: list[Tensor], out: list[Tensor], act: list[Tensor],
                  rew: list[Tensor], done: list[Tensor], v: list[Tensor] | None) -> Tensor:
    """The variant's surrogate over the rollout's episode pieces, per valid step."""
    stack = lambda xs: torch.stack(xs, 1).flatten(0, 1)  # noqa: E731  [T, N] lists -> env-major [N*T]
    o, t_out, a, r = stack(obs), stack(out), stack(act), stack(rew)
    d = torch.stack(done, 1).numpy()
    piece, pos, pieces, length = segments(d)
    index = (torch.as_tensor(piece, device=o.device), torch.as_tensor(pos, device=o.device))
    s_out = student(o)

    def padded(x: Tensor) -> Tensor:
        full = x.new_zeros((pieces, length, *x.shape[1:]))
        return full.index_put(index, x)

    valid = torch.zeros((pieces, length), dtype=torch.bool, device=o.device).index_put(
        index, torch.ones(len(o), dtype=torch.bool, device=o.device))
    per_piece = surrogate(variant, student_out=padded(s_out), teacher_out=padded(t_out), actions=padded(a),
                          valid=valid, env_reward=padded(r),
                          v_teacher=padded(stack(v)) if v is not None else None)
    return per_piece.sum() / len(o)


@torch.no_grad()
def evaluate_student(student: torch.nn.Module, teacher: Teacher, variant: Variant, spec: EnvSpec, cfg: LoopConfig,
                     seed: int) -> Evaluation:
    """Whole episodes played by the student (argmax with ``eval_epsilon``): unclipped score, argmax
    agreement with the teacher and KL(pi_T || pi_theta) on the states it visits."""
    rng = np.random.default_rng(seed)
    totals = {"agree": 0.0, "kl": 0.0, "states": 0}

    def on_states(obs: Tensor, counted: Tensor) -> None:
        s_out, t_out = student(obs), teacher.outputs(obs)
        counted = counted.to(obs.device)
        best_t = t_out == t_out.max(-1, keepdim=True).values
        totals["agree"] += float(best_t.gather(1, s_out.argmax(-1, keepdim=True)).squeeze(1)[counted].sum())
        totals["kl"] += float(kl(teacher_log_probs(t_out, variant.tau), student_log_probs(s_out))[counted].sum())
        totals["states"] += int(counted.sum())

    def policy(obs: Tensor) -> np.ndarray:
        return act_greedy(student(obs), cfg.eval_epsilon, rng)

    device = next(student.parameters()).device
    scores = evaluate(policy, spec, cfg.eval_episodes, seed, device, cfg.num_envs, on_states)
    states = max(totals["states"], 1)
    return Evaluation(float(scores.mean()), totals["agree"] / states, totals["kl"] / states)

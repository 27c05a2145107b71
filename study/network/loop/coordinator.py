"""The coordinator: wires actor, memory, learner and evaluation into the distillation loop.

Each iteration, for every game in turn, the actor collects ``cfg.rollout`` steps from every env under the
variant's control policy; then the learner updates the student, from the game's replay memory (teacher-
driven variants with no pseudo-reward, see ``uses_replay``) or from the fresh rollout. An online teacher
takes its training steps after every iteration. Every ``cfg.eval_every`` iterations, and at the end, the
student is evaluated on every game.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor

from study.network.envs import EnvSpec
from study.network.loop.actor import Actor
from study.network.loop.evaluation import Evaluation, evaluate_student, evaluation_seed
from study.network.loop.learner import Learner
from study.network.loop.memory import Memory
from study.network.nets import MultiTaskNet, Net, set_precision
from study.network.rl.common import pick_device
from study.network.teacher import Teacher
from study.spec import LoopParams
from variants import Variant, VariantError

Progress = Callable[[int, "LoopResult"], None]


class OnlineTeacher(Protocol):
    """A teacher that is still learning (Rusu et al.'s online distillation): ``advance`` trains it one
    step; ``curve.recent()`` is its recent training score."""

    curve: Any

    def advance(self) -> None:
        """Train the teacher one step."""
        ...


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
    """One game's view of a multi-task student: ``forward(obs)`` as a single-game network has, so actor,
    learner and evaluation treat both kinds of student alike."""

    def __init__(self, net: MultiTaskNet, game: str) -> None:
        super().__init__()
        self.net, self.game = net, game

    def forward(self, obs: Tensor) -> Tensor:
        """The game's head's outputs on ``obs``."""
        return self.net(obs, self.game)


def uses_replay(variant: Variant) -> bool:
    """Whether the student learns from a replay memory: the variant's own rule (``Variant.replay``), so the
    catalogue and the loop cannot disagree."""
    return variant.replay


def check_variant(variant: Variant) -> None:
    """Refuse, with the reason, variants that need what network students do not have (a value, a critic)."""
    if variant.v_cond:
        raise VariantError(f"variant {variant.name!r}: +V cond needs the student's value V_theta(s), which "
                           "network students do not have; allowed here: variants without v_cond")
    if variant.critic != "none":
        raise VariantError(f"variant {variant.name!r}: critic {variant.critic!r} is a value table of the tabular "
                           "tier; network students have no critic; allowed here: critic 'none'")


def distill_network(spec: EnvSpec, teacher: Teacher, variant: Variant, cfg: LoopParams, *, seed: int,
                    width: float = 1.0, device: str = "cpu", progress: Progress | None = None,
                    online: OnlineTeacher | None = None, online_steps: int = 0) -> LoopResult:
    """Train a student of ``width`` (the teacher's architecture) on ``spec`` from ``teacher`` with ``variant``,
    on ``device`` ("cpu", "cuda" or "auto"; random draws stay on the CPU). With ``online``, the teacher's
    network is the learner's, which takes ``online_steps`` steps after every iteration."""
    _check_width(width)
    torch.manual_seed(seed)
    shape = tuple(teacher.meta.obs_shape)
    student = Net(teacher.meta.arch, shape, teacher.meta.n_actions, width)
    return _train({spec.game: (spec, teacher, student)}, student, variant, cfg, seed=seed, device=device,
                  progress=progress, online=online, online_steps=online_steps)


def distill_multitask(games: dict[str, tuple[EnvSpec, Teacher]], variant: Variant, cfg: LoopParams, *, seed: int,
                      width: float = 1.0, device: str = "cpu", progress: Progress | None = None) -> LoopResult:
    """Rusu et al.'s multi-task distillation: one student with a head per game (and per-game input layers
    where the games' observations differ), one memory per game; every iteration collects from and
    updates on every game in turn."""
    _check_width(width)
    torch.manual_seed(seed)
    arch = {t.meta.arch for _, t in games.values()}
    if len(arch) != 1:
        raise ValueError(f"multi-task students need teachers of one architecture; got {sorted(arch)}")
    net = MultiTaskNet(arch.pop(), {g: tuple(t.meta.obs_shape) for g, (_, t) in games.items()},
                       {g: t.meta.n_actions for g, (_, t) in games.items()}, width)
    return _train({g: (spec, t, GameHead(net, g)) for g, (spec, t) in games.items()}, net, variant, cfg, seed=seed,
                  device=device, progress=progress)


def _check_width(width: float) -> None:
    if not width > 0:
        raise ValueError(f"width {width!r}: out of range; allowed: > 0")


@dataclass
class _Game:
    """One game of the loop: its student (or the multi-task student's head), its actor and, for a
    replayed variant, its memory."""

    student: torch.nn.Module
    actor: Actor
    memory: Memory | None


def _train(parts: dict[str, tuple[EnvSpec, Teacher, torch.nn.Module]], student: torch.nn.Module, variant: Variant,
           cfg: LoopParams, *, seed: int, device: str, progress: Progress | None,
           online: OnlineTeacher | None = None, online_steps: int = 0) -> LoopResult:
    """Build the parts on ``device`` and run the loop; the environments and the update worker are
    closed however it ends."""
    check_variant(variant)
    dev = pick_device(device)
    set_precision(student, cfg.precision).to(dev)
    for _, teacher, _ in parts.values():
        teacher.net.to(dev)
    generator = torch.Generator().manual_seed(seed)  # every draw of the loop, in one order: actions, minibatches
    replay = uses_replay(variant)
    learner = Learner(student, variant, cfg, generator=generator, device=dev, background=replay)
    games: dict[str, _Game] = {}
    try:
        for k, (name, (spec, teacher, head)) in enumerate(parts.items()):
            actor = Actor(spec, teacher, head, variant, num_envs=cfg.num_envs, seed=seed + 7_919 * k, device=dev,
                          generator=generator)
            memory = Memory(cfg.replay, actor.obs_shape, actor.n_actions) if replay else None
            games[name] = _Game(head, actor, memory)
        result = LoopResult(student=student, games={name: [] for name in games})
        _Coordinator(games, learner, variant, cfg, seed, result, progress, online, online_steps).run()
        learner.close()
    except BaseException:
        learner.close(quiet=True)
        raise
    finally:
        for g in games.values():
            g.actor.close()
    return result


class _Coordinator:
    """Runs the iterations: acting, then learning, game by game; the online teacher's steps; evaluations
    into ``result``."""

    def __init__(self, games: dict[str, _Game], learner: Learner, variant: Variant, cfg: LoopParams, seed: int,
                 result: LoopResult, progress: Progress | None, online: OnlineTeacher | None,
                 online_steps: int) -> None:
        self.games, self.learner, self.variant, self.cfg, self.seed = games, learner, variant, cfg, seed
        self.result, self.progress, self.online, self.online_steps = result, progress, online, online_steps

    def run(self) -> None:
        """All ``cfg.iterations`` iterations, evaluating every ``cfg.eval_every`` and at the end."""
        for it in range(self.cfg.iterations):
            if it % self.cfg.eval_every == 0:
                self.evaluate(it)
            for g in self.games.values():
                self.step(g, it)
            if self.online is not None:
                for _ in range(self.online_steps):
                    self.online.advance()
            if self.progress is not None:  # told when a rollout is collected; its updates may still be running
                self.progress(it + 1, self.result)
        self.evaluate(self.cfg.iterations)

    def step(self, g: _Game, it: int) -> None:
        """One game's rollout, then the student's updates on it: from the memory it joins, or on itself."""
        rollout = g.actor.collect(it, self.cfg.rollout)
        if g.memory is not None:
            g.memory.add(torch.cat(rollout.obs), torch.cat(rollout.out))
            self.learner.learn_replayed(g.student, g.memory)
        else:
            self.learner.learn_rollout(g.student, rollout)

    def evaluate(self, it: int) -> None:
        """Evaluate the up-to-date student on every game after ``it`` iterations."""
        self.learner.wait()
        self.result.steps.append(it * self.cfg.num_envs * self.cfg.rollout)
        if self.online is not None:
            self.result.teacher_scores.append(float(self.online.curve.recent()))
        for k, (name, g) in enumerate(self.games.items()):
            self.result.games[name].append(evaluate_student(g.student, g.actor.teacher, self.variant, g.actor.spec,
                                                            self.cfg, evaluation_seed(self.seed, it, k)))

"""Learning: the student's optimiser and its updates, from replay or from the fresh rollout.

- Teacher-driven variants with no pseudo-reward (Rusu et al.'s recipes, teacher distill) take
  ``cfg.updates`` minibatches of ``cfg.batch`` from the game's replay memory per iteration, on the
  variant's per-state loss against the stored teacher outputs.
- Everything else (student-driven, mixtures, reward-based variants) takes one step on the variant's
  surrogate over the fresh rollout, cut into its episodes' pieces.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import torch
from torch import Tensor

from study.network.loop.memory import Memory
from study.network.loop.rollout import Rollout
from study.spec import LoopParams
from variants import Variant, masked_state_loss, surrogate

MAX_GRAD_NORM = 10.0  # the student's gradient clipping: not a budget key, so not part of a cell's id


def make_optimizer(student: torch.nn.Module, cfg: LoopParams) -> torch.optim.Optimizer:
    """Adam, or RMSprop with Rusu et al.'s settings."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(student.parameters(), lr=cfg.lr)
    return torch.optim.RMSprop(student.parameters(), lr=cfg.lr, alpha=0.95, eps=1e-6)


class Updates:
    """Runs the student's updates. On replayed teacher-driven data the student has no part in collecting,
    so its updates run in a worker thread while the next rollout is collected (torch releases the
    interpreter in its kernels); they run one at a time in the order submitted, so the numbers are those
    of running them in place. Anything that reads the student waits for them first."""

    def __init__(self, background: bool) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="student-updates") if background else None
        self._pending: Future[None] | None = None

    def submit(self, work: Callable[[], None]) -> None:
        """Run ``work`` after what was submitted before: in the worker, or here and now without one."""
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


class Learner:
    """Owns the student's optimiser and applies its updates (replayed ones through ``Updates``, in the
    background when ``background``). A multi-task student is updated through each game's head, which
    shares the one optimiser."""

    def __init__(self, student: torch.nn.Module, variant: Variant, cfg: LoopParams, *, generator: torch.Generator,
                 device: torch.device, background: bool) -> None:
        self.variant, self.cfg, self.generator, self.device = variant, cfg, generator, device
        self.opt = make_optimizer(student, cfg)
        self.updates = Updates(background)

    def learn_replayed(self, student: torch.nn.Module, memory: Memory) -> None:
        """Draw this iteration's minibatches from ``memory`` now (in the loop's order of random draws) and
        submit their updates; they may still be running when this returns."""
        batches = [memory.sample(self.cfg.batch, self.generator) for _ in range(self.cfg.updates)]
        self.updates.submit(functools.partial(self._replayed, student, batches))

    def learn_rollout(self, student: torch.nn.Module, rollout: Rollout) -> None:
        """One step on the variant's surrogate over ``rollout``, after any updates still running."""
        self.updates.wait()
        self._step(student, rollout_loss(self.variant, student, rollout))

    def wait(self) -> None:
        """Until the student is up to date (before anything reads it)."""
        self.updates.wait()

    def close(self, quiet: bool = False) -> None:
        """Finish the running update and stop the worker (see ``Updates.close``)."""
        self.updates.close(quiet)

    def _replayed(self, student: torch.nn.Module, batches: list[tuple[Tensor, Tensor]]) -> None:
        for o, out in batches:
            o, out = o.to(self.device), out.to(self.device)
            self._step(student, masked_state_loss(self.variant, student(o), out).mean())

    def _step(self, student: torch.nn.Module, loss: Tensor) -> None:
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), MAX_GRAD_NORM)
        self.opt.step()


def rollout_loss(variant: Variant, student: torch.nn.Module, rollout: Rollout) -> Tensor:
    """The variant's surrogate over the rollout's episode pieces, per valid step."""
    o, t_out = rollout.env_major(rollout.obs), rollout.env_major(rollout.out)
    a, r = rollout.env_major(rollout.act), rollout.env_major(rollout.rew)
    piece, pos, pieces, length = rollout.pieces()
    index = (torch.as_tensor(piece, device=o.device), torch.as_tensor(pos, device=o.device))
    s_out = student(o)

    def padded(x: Tensor) -> Tensor:
        full = x.new_zeros((pieces, length, *x.shape[1:]))
        return full.index_put(index, x)

    valid = torch.zeros((pieces, length), dtype=torch.bool, device=o.device).index_put(
        index, torch.ones(len(o), dtype=torch.bool, device=o.device))
    v = padded(rollout.env_major(rollout.v)) if rollout.v is not None else None
    per_piece = surrogate(variant, student_out=padded(s_out), teacher_out=padded(t_out), actions=padded(a),
                          valid=valid, env_reward=padded(r), v_teacher=v)
    return per_piece.sum() / len(o)

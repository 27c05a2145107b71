"""Running tabular cells: build MDPs and teachers from a cell's sections and train.

Cells that share their MDPs, teacher, student and budget (they differ only in
variant and seed) run as one batched program; the engine's per-instance
random streams make each cell's numbers the same as if it ran alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
import torch

from study.run.progress import throttled
from study.spec import Cell, canonical_json
from study.spec.cells import TabularCell
from study.spec.schema import EnvParams, StudentParams, TeacherParams, TrainParams
from study.store.format import Summary, write_torch
from study.tabular import generators as gen
from study.tabular import teachers as T
from study.tabular.engine import Curves, Plan, TrainConfig, distill
from study.tabular.mdp import TabularMDP
from study.tabular.metrics import METRICS
from study.tabular.students import Student

# how often a running batch writes its training state (a resumed run loses at most this much work)
PARTIAL_SECONDS = 300.0


def batch_key(cell: Cell) -> str:
    """Cells with the same key share MDPs, teacher, student and budget (a network cell runs alone)."""
    if not isinstance(cell, TabularCell):
        return cell.id
    return canonical_json({name: section.model_dump() for name, section in cell.sections.items()})


def build_mdp(env: EnvParams) -> TabularMDP:
    """The cell's ``mdps`` MDPs from its environment section."""
    n, g = env.mdps, env.generator
    if g == "gridworld":
        return gen.gridworld(n, size=env.size, n_actions=env.n_actions, wall_frac=env.wall_frac,
                             penalty_frac=env.penalty_frac, noise=env.noise, absorb=env.absorb, seed=env.mdp_seed,
                             extra_actions=env.extra_actions, extra_cost=env.extra_cost)
    if g == "paper_gridworld":
        return gen.paper_gridworld(n, size=env.size, n_actions=env.n_actions, wall_prob=env.wall_prob,
                                   terminal_prob=env.terminal_prob, penalty_prob=env.penalty_prob, noise=env.noise,
                                   absorb=env.absorb, seed=env.mdp_seed, extra_actions=env.extra_actions,
                                   extra_cost=env.extra_cost)
    if g == "garnet":
        return gen.garnet(n, n_states=env.n_states, n_actions=env.n_actions, branching=env.branching,
                          absorb=env.absorb, n_terminal=env.n_terminal, seed=env.mdp_seed)
    if g == "corridor":
        return gen.corridor(n, length=env.length, noise=env.noise, absorb=env.absorb, goal_reward=env.goal_reward,
                            step_reward=env.step_reward)
    if g == "exit_chain":
        return gen.exit_chain(n, length=env.length, absorb=env.absorb)
    return gen.bandit(n, n_actions=env.n_actions)


def build_teacher(mdp: TabularMDP, teacher: TeacherParams, mdp_seed: int) -> torch.Tensor:
    """Teacher outputs: optimal Q, Q-learning (plain, or exploring the whole MDP), or -Q* (adversarial);
    optionally noisy states.

    Noisy states get outputs ``log p`` with ``p ~ Dirichlet(1)``: a random
    distribution that each variant's temperature then sharpens or flattens.
    """
    if teacher.teacher == "q_learning":
        q = T.q_learning(mdp, episodes=teacher.q_episodes, gamma=teacher.teacher_gamma, seed=mdp_seed)
    elif teacher.teacher == "q_learning_explored":
        q = T.explored_q_learning(mdp, episodes=teacher.q_episodes, gamma=teacher.teacher_gamma, seed=mdp_seed)
    else:
        q = T.value_iteration(mdp, gamma=teacher.teacher_gamma)
        if teacher.teacher == "adversarial":
            q = T.adversarial(q)
    if teacher.teacher_noise > 0:
        q = T.noisy(q, teacher.teacher_noise, tau=1.0, seed=mdp_seed, mask=~mdp.terminal)
    return q


def train_config(train: TrainParams, student: StudentParams) -> TrainConfig:
    """The engine's settings from a cell's budget and student sections."""
    return TrainConfig(mode=train.mode, iterations=train.iterations, lr=train.lr, optimizer=train.optimizer,
                       eval_every=train.eval_every, eval_log=train.eval_log, episodes=train.episodes,
                       max_steps=train.max_steps, init_scale=student.init_scale)


def run_tabular_cells(cells: Sequence[TabularCell], partial: Path | None = None,
                      progress: Callable[[int, int], None] | None = None) -> list[tuple[pd.DataFrame, Summary]]:
    """Train cells that share a batch key together; per cell, its tidy metrics and its summary.

    With ``partial``, the training state is written there every ``PARTIAL_SECONDS`` and a state left by an
    earlier run of the same cells is continued (same numbers as an uninterrupted run), so that a batch of
    hours survives an interruption. ``progress`` hears (iterations done, iterations in all) every
    ``study.run.progress.PROGRESS_SECONDS``, so that a display can show how far a long batch has got.
    """
    first = cells[0]
    if any(batch_key(c) != batch_key(first) for c in cells):
        raise ValueError("run_cells needs cells that share MDPs, teacher, student and budget")
    mdp = build_mdp(first.env)
    teacher = build_teacher(mdp, first.teacher, first.env.mdp_seed)
    variants = []
    variant_of: list[int] = []
    for cell in cells:
        v = cell.variant
        if v not in variants:
            variants.append(v)
        variant_of.append(variants.index(v))
    n = mdp.n_mdps
    plan = Plan(
        torch.arange(n).repeat(len(cells)),
        torch.tensor(variant_of).repeat_interleave(n),
        torch.tensor([c.seed for c in cells]).repeat_interleave(n),
    )
    ids = [c.id for c in cells]
    resume = None
    if partial is not None and partial.is_file():
        saved = torch.load(partial, map_location="cpu", weights_only=True)
        resume = saved["engine"] if isinstance(saved, dict) and saved.get("cells") == ids else None

    def save(state: dict) -> None:
        assert partial is not None  # only passed as a checkpoint with a partial path
        write_torch(partial, {"cells": ids, "engine": state})

    config = train_config(first.train, first.student)
    curves = distill(mdp, teacher, variants, plan, config, progress=throttled(progress, config.iterations),
                     student=Student(first.student.student), resume=resume,
                     checkpoint=save if partial is not None else None, checkpoint_seconds=PARTIAL_SECONDS)
    optimal = optimal_return(mdp)
    return [_cell_results(cell, curves, slice(i * n, (i + 1) * n), optimal) for i, cell in enumerate(cells)]


def optimal_return(mdp: TabularMDP) -> torch.Tensor:
    """The optimal policy's expected undiscounted return per MDP ``[N]``: the ceiling the analysis shows
    next to the teacher's, since a softmax, noisy or adversarial teacher sits below it."""
    v_star = T.value_iteration(mdp.to(torch.float64)).max(-1).values
    return (mdp.start.double() * v_star).sum(-1)


def _cell_results(cell: Cell, curves: Curves, rows: slice,
                  optimal: torch.Tensor) -> tuple[pd.DataFrame, Summary]:
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
    summary = Summary(cell=cell.id, step=int(curves.steps[-1]), mdps=n_mdps, final=final,
                      teacher_return=float(curves.teacher_return[rows].double().mean()),
                      uniform_return=float(curves.uniform_return[rows].double().mean()),
                      # per MDP, for score normalisation: random (the uniform policy) 0, teacher 1; optimal shown
                      references={"random": curves.uniform_return[rows].double().tolist(),
                                  "teacher": curves.teacher_return[rows].double().tolist(),
                                  "optimal": optimal.tolist()})
    return metrics, summary

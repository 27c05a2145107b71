"""The tabular distillation loop: many MDPs, variants and seeds as one tensor program.

Instances are (MDP, variant, seed) triples. Rollouts of every instance are
drawn together whatever their variant (every control policy is a mixture of
teacher, student and uniform), and the surrogate is evaluated per variant
group on its slice; one optimiser step updates all students at once.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import torch
from torch import Tensor

from study.tabular import exact
from study.tabular.mdp import MDPError, TabularMDP
from study.tabular.metrics import METRICS, evaluate_students
from study.tabular.reference import sampled_loss
from study.tabular.rng import ENGINE, ROLLOUT, combine, instance_keys
from study.tabular.rollout import Acting, rollout, step_table
from study.tabular.solve import dense_only
from study.tabular.students import Student
from study.tabular.teachers import teacher_values
from variants import Variant, has_returns, masked_state_loss, regrouped_surrogate, step_returns
from variants.policy import softmax, student_log_probs, teacher_log_probs

Mode = Literal["exact", "sampled"]
LENGTH = "episode_length"  # recorded beside the metrics: the mean episode length since the previous record


@dataclass(frozen=True)
class TrainConfig:
    """How students are trained.

    exact: expected updates (no sampling noise). sampled: ``episodes``
    episodes per instance per iteration, each cut at ``max_steps``.
    Metrics are recorded every ``eval_every`` iterations, at the end, and at
    ``eval_log`` log-spaced iterations within the first interval.
    """

    mode: Mode = "exact"
    iterations: int = 1000
    lr: float = 1.0
    optimizer: Literal["sgd", "adam"] = "sgd"
    eval_every: int = 50
    eval_log: int = 0
    episodes: int = 1
    max_steps: int = 1000
    init_scale: float = 0.0

    def eval_at(self) -> set[int]:
        """The iterations before which metrics are recorded (the end is recorded after the last)."""
        points = set(range(0, self.iterations, self.eval_every))
        if self.eval_log:
            early = torch.logspace(0, math.log10(self.eval_every), self.eval_log + 1, dtype=torch.float64)
            points |= {int(x) for x in early.round().tolist() if int(x) < min(self.eval_every, self.iterations)}
        return points

    def __post_init__(self) -> None:
        if self.mode not in ("exact", "sampled"):
            raise MDPError(f"mode: unknown mode {self.mode!r}; allowed: exact, sampled")
        if self.optimizer not in ("sgd", "adam"):
            raise MDPError(f"optimizer: unknown optimizer {self.optimizer!r}; allowed: sgd, adam")
        if isinstance(self.eval_log, bool) or not isinstance(self.eval_log, int) or self.eval_log < 0:
            raise MDPError(f"eval_log: {self.eval_log!r} is out of range; allowed: an integer eval_log >= 0")
        for name in ("iterations", "eval_every", "episodes", "max_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise MDPError(f"{name}: {value!r} is out of range; allowed: an integer {name} >= 1")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise MDPError(f"lr: {self.lr} is out of range; allowed: a finite lr > 0")
        if not (math.isfinite(self.init_scale) and self.init_scale >= 0):
            raise MDPError(f"init_scale: {self.init_scale} is out of range; allowed: a finite init_scale >= 0")


@dataclass
class Plan:
    """Which (MDP, variant, seed) each instance is."""

    mdp_index: Tensor
    variant_index: Tensor
    seed: Tensor

    @classmethod
    def product(cls, n_mdps: int, n_variants: int, seeds: Sequence[int]) -> Plan:
        """Every MDP x variant x seed, MDP-major."""
        if n_mdps < 1 or n_variants < 1 or len(seeds) == 0:
            raise MDPError(f"plan: need at least one MDP, variant and seed; got {n_mdps} MDPs, "
                           f"{n_variants} variants and seeds {list(seeds)}")
        m, v, s = torch.meshgrid(torch.arange(n_mdps), torch.arange(n_variants),
                                 torch.tensor(list(seeds), dtype=torch.int64), indexing="ij")
        return cls(m.reshape(-1), v.reshape(-1), s.reshape(-1))

    def __len__(self) -> int:
        return len(self.mdp_index)

    def on(self, device: torch.device | str) -> Plan:
        """The same plan with its index tensors on ``device``."""
        return Plan(self.mdp_index.to(device), self.variant_index.to(device), self.seed.to(device))

    def check(self, n_mdps: int, n_variants: int) -> None:
        """Every instance must name an MDP and a variant that exist."""
        if not (len(self.mdp_index) == len(self.variant_index) == len(self.seed)) or len(self) == 0:
            raise MDPError("plan: mdp_index, variant_index and seed must be non-empty and of one length")
        for name, index, size in (("mdp_index", self.mdp_index, n_mdps), ("variant_index", self.variant_index,
                                                                          n_variants)):
            if index.min() < 0 or index.max() >= size:
                raise MDPError(f"plan.{name}: values {int(index.min())}..{int(index.max())} are out of range; "
                               f"allowed: 0..{size - 1}")


@dataclass
class Curves:
    """Metrics along training: ``values[name]`` is ``[len(steps), N]``. ``seconds`` says where the time
    went: ``setup`` (copies, teacher references), ``train`` (all iterations; ``rollout``: the part of it
    spent sampling episodes, where measured) and ``evaluate`` (metrics). ``extras`` may hold
    ``episode_length`` ``[len(steps), N]`` (sampled mode: the mean episode length over the iterations since
    the previous evaluation, NaN at the first) and ``critic`` ``[N, S]`` (the learned critics)."""

    steps: list[int]
    values: dict[str, Tensor]
    plan: Plan
    teacher_return: Tensor
    uniform_return: Tensor
    final_logits: Tensor
    extras: dict[str, Tensor] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def final(self, name: str) -> Tensor:
        """The last evaluation's values of metric ``name``, ``[N]``."""
        return self.values[name][-1]

    def normalised_return(self) -> Tensor:
        """Return on the scale uniform policy = 0, teacher = 1, ``[len(steps), N]``.

        Where the teacher is no better than uniform the scale is undefined: NaN.
        """
        span = self.teacher_return - self.uniform_return
        span = torch.where(span.abs() > 1e-9, span, torch.full_like(span, float("nan")))
        return (self.values["return"] - self.uniform_return) / span


@dataclass
class _Group:
    variant: Variant
    index: Tensor
    mdps: TabularMDP  # the distinct MDPs
    of: Tensor  # which of them each of the group's instances runs on
    teacher_out: Tensor
    teacher_act: Tensor
    v_teacher: Tensor | None = None

    @cached_property
    def mdp(self) -> TabularMDP:
        """One MDP per instance of the group, copied only when a variant reads it (exact values, + V cond):
        at thousands of actions each copy is about 100 MB per grid world."""
        return self.mdps.select(self.of)


def distill(
    mdp: TabularMDP,
    teacher_out: Tensor,
    variants: Sequence[Variant],
    plan: Plan,
    config: TrainConfig,
    *,
    student: Student | None = None,
    progress: Callable[[int], None] | None = None,
    record_metrics: bool = True,
    reference: bool = False,
    resume: dict[str, Any] | None = None,
    checkpoint: Callable[[dict[str, Any]], None] | None = None,
    checkpoint_seconds: float = 600.0,
) -> Curves:
    """Train one student per instance of ``plan`` and record metrics.

    ``mdp`` and ``teacher_out`` ``[M, S, A]`` hold the distinct MDPs and their
    teachers' raw outputs; the plan indexes them. ``reference`` runs the previous code path (tensor
    rollouts, the per-step surrogate, dense solves, dense optimiser steps), which benchmarks compare with.
    ``checkpoint`` receives the training state every ``checkpoint_seconds``; ``resume`` continues from
    such a state (of the same call), with the same numbers as a run that was never interrupted: every
    random draw is keyed by its iteration, so the state is the students, optimiser, critics and records.
    """
    hooks = _Hooks(progress, record_metrics, resume, checkpoint, checkpoint_seconds)
    if reference:
        with dense_only():
            return _distill(mdp, teacher_out, variants, plan, config, student, hooks, True)
    return _distill(mdp, teacher_out, variants, plan, config, student, hooks, False)


@dataclass
class _Hooks:
    progress: Callable[[int], None] | None
    record_metrics: bool
    resume: dict[str, Any] | None
    checkpoint: Callable[[dict[str, Any]], None] | None
    checkpoint_seconds: float


def _distill(mdp: TabularMDP, teacher_out: Tensor, variants: Sequence[Variant], plan: Plan, config: TrainConfig,
             student: Student | None, hooks: _Hooks, reference: bool) -> Curves:
    progress, record_metrics = hooks.progress, hooks.record_metrics
    student = student or Student()
    plan.check(mdp.n_mdps, len(variants))
    if config.mode == "exact":
        for variant in variants:
            exact.check_exact(variant)
    expected = (mdp.n_mdps, mdp.n_states, mdp.n_actions)
    if tuple(teacher_out.shape) != expected:
        raise MDPError(f"teacher_out has shape {tuple(teacher_out.shape)}; allowed: {expected} (one row per MDP)")
    clock = {"setup": -time.perf_counter(), "train": 0.0, "rollout": 0.0, "evaluate": 0.0}
    inst_mdp = mdp.select(plan.mdp_index)
    inst_teacher = teacher_out.index_select(0, plan.mdp_index)
    teacher_logp = torch.full_like(inst_teacher, float("nan"))
    groups: list[_Group] = []
    for vi, variant in enumerate(variants):
        index = (plan.variant_index == vi).nonzero().squeeze(-1)
        if len(index) == 0:
            continue
        g_out = inst_teacher.index_select(0, index)
        teacher_logp[index] = teacher_log_probs(g_out, variant.tau)
        group = _Group(variant, index, mdp, plan.mdp_index[index], g_out, exact.teacher_acting_probs(variant, g_out))
        if exact.values_needed(variant):
            group.v_teacher = teacher_values(group.mdp, g_out, variant.tau, variant.gamma)
        groups.append(group)
    if reference:  # every instance solved, as the previous path did
        teacher_policy = teacher_logp.exp()
        teacher_occ, teacher_ret = inst_mdp.occupancy(teacher_policy), inst_mdp.episode_return(teacher_policy)
        uniform_ret = inst_mdp.episode_return(torch.full_like(teacher_policy, 1.0 / mdp.n_actions))
    else:
        teacher_occ, teacher_ret, uniform_ret = _references(mdp, teacher_logp, plan, variants)
    acting_teacher = torch.empty_like(inst_teacher)
    for g in groups:
        acting_teacher[g.index] = g.teacher_act

    fingerprints = torch.tensor([v.fingerprint for v in variants], dtype=torch.int64)[plan.variant_index]
    keys = instance_keys(ENGINE, plan.seed, plan.mdp_index, fingerprints)
    params = student.init(inst_mdp, keys, config.init_scale).requires_grad_()
    opt = (torch.optim.SGD if config.optimizer == "sgd" else torch.optim.Adam)([params], lr=config.lr)
    # learned critics: one value table per instance, moved by the TD update whatever the students' optimiser
    critic = critic_rate = visits = None
    if any(g.variant.critic == "learned" for g in groups):
        critic = params.new_zeros(len(plan), mdp.n_states)
        for g in groups:
            if g.variant.critic_init == "teacher_v":
                assert g.v_teacher is not None  # values_needed says so
                critic[g.index] = g.v_teacher.to(critic.dtype)
        critic.requires_grad_()
        critic_rate = params.new_tensor([v.critic_lr for v in variants])[plan.variant_index]
        visits = torch.zeros_like(critic)

    # the reference path steps in a table per instance, as it always did; the kernel shares each MDP's
    table = (step_table(inst_mdp) if reference else step_table(mdp)) if config.mode == "sampled" else None
    sparse = (config.mode == "sampled" and config.optimizer == "sgd" and student.kind == "table"
              and not student.pin_last and not reference)
    steps: list[int] = []
    records: dict[str, list[Tensor]] = {name: [] for name in METRICS}
    records[LENGTH] = []
    lengths: list[Tensor] = []  # per iteration since the last record; summarised there, so memory stays flat

    def record(iteration: int) -> None:
        if not record_metrics:
            lengths.clear()
            return
        start = time.perf_counter()
        with torch.no_grad():
            logits = student.logits(params, inst_mdp)
            values = evaluate_students(inst_mdp, teacher_logp, inst_teacher, logits, teacher_occ)
        steps.append(iteration)
        for name in METRICS:
            records[name].append(values[name])
        records[LENGTH].append(torch.stack(lengths).mean(0) if lengths else
                               torch.full((len(plan),), float("nan"), dtype=params.dtype))
        lengths.clear()
        clock["evaluate"] += time.perf_counter() - start

    clock["setup"] += time.perf_counter()
    eval_at = config.eval_at()
    first = 0
    if hooks.resume is not None:
        first = _restore(hooks.resume, params, opt, critic, steps, records, lengths)
    saved = time.perf_counter()
    for it in range(first, config.iterations):
        if it in eval_at:
            record(it)
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        if sparse:  # plain SGD on a table moves only the rows visited: update those, not the whole table
            loss, leaves = _sampled_loss(groups, inst_mdp, (table, plan.mdp_index), inst_teacher, acting_teacher,
                                         params.detach(), keys, it, config, lengths, critic, visits, leaf_rows=True,
                                         clock=clock)
            loss.backward()
            with torch.no_grad():
                for rows, leaf in leaves:
                    params.view(-1, mdp.n_actions).index_add_(0, rows, leaf.grad, alpha=-config.lr)
        else:
            logits = student.logits(params, inst_mdp)
            if config.mode == "exact":
                loss = sum(
                    exact.expected_surrogate(g.variant, g.mdp, g.teacher_out, logits[g.index], iteration=it,
                                             v_teacher=g.v_teacher).sum()
                    for g in groups
                )
            elif reference:
                loss = sampled_loss(groups, inst_mdp, table, inst_teacher, logits, keys, it, config, lengths, critic,
                                    visits)
            else:
                loss, _ = _sampled_loss(groups, inst_mdp, (table, plan.mdp_index), inst_teacher, acting_teacher,
                                        logits, keys, it, config, lengths, critic, visits, clock=clock)
            loss.backward()
            opt.step()
        if critic is not None and critic.grad is not None:
            _td_step(critic, critic_rate, visits, config.episodes)
        clock["train"] += time.perf_counter() - start
        if progress is not None:
            progress(it + 1)
        if hooks.checkpoint is not None and it + 1 < config.iterations and \
                time.perf_counter() - saved >= hooks.checkpoint_seconds:
            hooks.checkpoint(_state(it + 1, params, opt, critic, steps, records, lengths))
            saved = time.perf_counter()
    record(config.iterations)
    stacked = {k: torch.stack(v) if v else torch.empty(0, len(plan)) for k, v in records.items()}
    episode_length = stacked.pop(LENGTH)
    final_logits = student.logits(params.detach(), inst_mdp)
    curves = Curves(steps, stacked, plan, teacher_ret, uniform_ret, final_logits, seconds=clock)
    if config.mode == "sampled" and record_metrics:
        curves.extras["episode_length"] = episode_length
    if critic is not None:  # [N, S]; zero for instances without a learned critic
        curves.extras["critic"] = critic.detach()
    return curves


def _state(iteration: int, params: Tensor, opt: torch.optim.Optimizer, critic: Tensor | None, steps: list[int],
           records: dict[str, list[Tensor]], lengths: list[Tensor]) -> dict[str, Any]:
    """What a resumed run needs before ``iteration``: plain tensors, lists and numbers (loadable with
    ``weights_only=True``)."""
    return {"iteration": iteration, "params": params.detach().clone(), "optimizer": copy.deepcopy(opt.state_dict()),
            "critic": None if critic is None else critic.detach().clone(), "steps": list(steps),
            "records": {k: torch.stack(v) if v else None for k, v in records.items()},
            "lengths": torch.stack(lengths) if lengths else None}


def _restore(state: dict[str, Any], params: Tensor, opt: torch.optim.Optimizer, critic: Tensor | None,
             steps: list[int], records: dict[str, list[Tensor]], lengths: list[Tensor]) -> int:
    """Load a :func:`_state` into a freshly set-up run; returns the iteration to continue from."""
    if tuple(state["params"].shape) != tuple(params.shape) or (state["critic"] is None) != (critic is None):
        raise MDPError(f"resume: a state for students of shape {tuple(state['params'].shape)}; this run has "
                       f"{tuple(params.shape)}")
    with torch.no_grad():
        params.copy_(state["params"])
        if critic is not None:
            critic.copy_(state["critic"])
    opt.load_state_dict(state["optimizer"])
    steps[:] = state["steps"]
    for name, values in state["records"].items():
        records[name] = [] if values is None else list(values.unbind(0))
    lengths[:] = [] if state["lengths"] is None else list(state["lengths"].unbind(0))
    return int(state["iteration"])


def _references(mdp: TabularMDP, teacher_logp: Tensor, plan: Plan,
                variants: Sequence[Variant]) -> tuple[Tensor, Tensor, Tensor]:
    """Per instance: the teacher's state occupancy and return, and the uniform policy's return.

    They depend only on the MDP and the teacher's temperature, so each is solved once per distinct
    (MDP, temperature) or MDP, not once per instance.
    """
    taus = torch.tensor([v.tau for v in variants], dtype=torch.float64)[plan.variant_index]
    _, tau_id = torch.unique(taus, return_inverse=True)
    pair = plan.mdp_index * (int(tau_id.max()) + 1) + tau_id
    pairs, inverse = torch.unique(pair, return_inverse=True)
    first = torch.full((len(pairs),), len(plan), dtype=torch.int64).scatter_reduce(
        0, inverse, torch.arange(len(plan)), "amin")
    one_each = mdp.select(plan.mdp_index[first])
    occ, ret = one_each.occupancy_and_return(teacher_logp[first].exp())
    mdps, mdp_inverse = torch.unique(plan.mdp_index, return_inverse=True)
    uniform = mdp.select(mdps)
    uniform_ret = uniform.episode_return(torch.full((len(mdps), mdp.n_states, mdp.n_actions), 1.0 / mdp.n_actions,
                                                    dtype=teacher_logp.dtype))
    return occ[inverse], ret[inverse], uniform_ret[mdp_inverse]


def _td_step(critic: Tensor, rate: Tensor, visits: Tensor, episodes: int) -> None:
    """``V(s) += rate * mean over this iteration's visits of s of (R_t - V(s))``.

    The surrogate's regression gives ``-sum over visits (R_t - V(s)) / episodes``
    as the gradient; averaging over the visits instead of summing them keeps a
    state visited many times in one episode from overshooting its target.
    """
    with torch.no_grad():
        critic -= rate.unsqueeze(-1) * critic.grad * episodes / visits.clamp(min=1)
    critic.grad = None


def _sampled_loss(
    groups: list[_Group],
    inst_mdp: TabularMDP,
    tables: tuple[Tensor, Tensor],
    inst_teacher: Tensor,
    acting_teacher: Tensor,
    logits: Tensor,
    keys: Tensor,
    iteration: int,
    config: TrainConfig,
    lengths: list[Tensor],
    critic: Tensor | None = None,
    visits: Tensor | None = None,
    *,
    leaf_rows: bool = False,
    clock: dict[str, float] | None = None,
) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
    """Roll out every instance under its control policy, then sum the group surrogates.

    Each group's steps are regrouped by state (:func:`variants.regrouped_surrogate`): the loss and its
    gradient are computed once per visited state, not once per step. ``tables`` is the step table of the
    distinct MDPs and each instance's MDP. Returns the loss and, with ``leaf_rows``, per group its visited
    rows (flat ``instance * S + state`` ids) and the student's outputs there as the leaf the loss is
    differentiated by, so that a caller can update the visited rows alone.
    ``critic`` ``[N, S]`` holds the learned critics; ``visits`` is filled with how often each of their
    states was visited in this iteration's episodes. The rollout's seconds are added to ``clock["rollout"]``.
    """
    n, s_count, a_count = logits.shape
    if visits is not None:
        visits.zero_()
    with torch.no_grad():
        weights = torch.empty(n, 3, dtype=torch.float64)
        for g in groups:
            weights[g.index] = torch.tensor(g.variant.control.weights(iteration), dtype=torch.float64)
        acting = Acting(acting_teacher, logits.detach() if bool((weights[:, 1] != 0).any()) else None, weights)
        start = time.perf_counter()
        ro = rollout(inst_mdp, acting, combine(combine(keys, ROLLOUT), iteration), episodes=config.episodes,
                     max_steps=config.max_steps, table=tables[0], table_of=tables[1])
        if clock is not None:
            clock["rollout"] += time.perf_counter() - start
        lengths.append(ro.lengths.view(n, config.episodes).to(logits.dtype).mean(-1))
    episode, step = ro.episode, ro.step
    inst_all = ro.instance[episode]
    # every visited (instance, state) once; without leaves, one gather of the student's outputs for all groups
    rows, where, counts = ro.visited, ro.step_row, ro.visits
    flat_logits, flat_teacher = logits.reshape(n * s_count, a_count), inst_teacher.reshape(n * s_count, a_count)
    student_all = None if leaf_rows else flat_logits.index_select(0, rows)
    leaves: list[tuple[Tensor, Tensor]] = []
    group_of = torch.empty(n, dtype=torch.int64)
    for gi, g in enumerate(groups):
        group_of[g.index] = gi
    row_group, step_group = group_of[rows // s_count], group_of[inst_all]
    position = torch.empty_like(rows)
    total = None
    for gi, g in enumerate(groups):
        mine = (row_group == gi).nonzero().squeeze(-1)
        if len(mine) == 0:
            continue
        position[mine] = torch.arange(len(mine))
        g_rows, g_counts = rows[mine], counts[mine]
        row_inst, row_state = g_rows // s_count, g_rows % s_count
        teacher_rows = flat_teacher.index_select(0, g_rows)
        if student_all is None:
            student_rows = flat_logits.index_select(0, g_rows).detach().requires_grad_()
            leaves.append((g_rows, student_rows))
        else:
            student_rows = student_all.index_select(0, mine)
        # rows of the group's own tables, read only by variants with V_T or +V cond
        needs_local = g.v_teacher is not None or g.variant.v_cond
        local = torch.searchsorted(g.index, row_inst) if needs_local else None
        v_t = None if g.v_teacher is None else g.v_teacher[local, row_state]
        v_s = None
        if g.variant.v_cond:
            with torch.no_grad():
                v_s = g.mdp.evaluate(softmax(logits[g.index].detach()), g.variant.gamma)[local, row_state]
        action_returns = state_returns = v_c = None
        if has_returns(g.variant):
            steps_g = (step_group == gi).nonzero().squeeze(-1)
            index = (episode[steps_g], step[steps_g])
            at = position[where[steps_g]]  # each step's row among the group's rows
            actions = ro.step_actions[steps_g]
            with torch.no_grad():
                v_step = None
                if g.variant.critic == "learned":
                    v_step = critic.detach()[ro.instance.unsqueeze(-1), ro.states]
                elif g.variant.critic == "exact":
                    values = exact.critic_values(g.variant, g.mdp, g.teacher_out, logits[g.index].detach(),
                                                 iteration=iteration, v_teacher=g.v_teacher)
                    v_step = values.new_zeros(n, s_count)
                    v_step[g.index] = values
                    v_step = v_step[ro.instance.unsqueeze(-1), ro.states]
                loss_rows = masked_state_loss(g.variant, student_rows.detach(), teacher_rows, v_t, v_s)
                ret = step_returns(
                    g.variant, index, ro.valid, student_logp=student_log_probs(student_rows.detach())[at],
                    teacher_out=teacher_rows[at], actions=actions, loss=loss_rows[at],
                    env_reward=ro.step_rewards[steps_g], v_teacher=None if v_t is None else v_t[at], v_critic=v_step)
                action_returns = ret.new_zeros(len(mine), a_count).index_put_((at, actions), ret, accumulate=True)
                state_returns = action_returns.sum(-1)
        if g.variant.critic == "learned":
            v_c = critic.view(-1)[g_rows]
            visits.view(-1)[g_rows] = g_counts.to(visits.dtype)
        part = regrouped_surrogate(
            g.variant, student_out=student_rows, teacher_out=teacher_rows, visits=g_counts,
            action_returns=action_returns, v_teacher=v_t, v_student=v_s, v_critic=v_c,
            state_returns=state_returns) / config.episodes
        total = part if total is None else total + part
    assert total is not None  # every episode takes a step, so some group has visited rows
    return total, leaves

"""The tabular distillation loop: many MDPs, variants and seeds as one tensor program.

Instances are (MDP, variant, seed) triples. Rollouts of every instance are
drawn together whatever their variant (every control policy is a mixture of
teacher, student and uniform), and the surrogate is evaluated per variant
group on its slice; one optimiser step updates all students at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from study.tabular import exact
from study.tabular.mdp import MDPError, TabularMDP
from study.tabular.metrics import METRICS, evaluate_students
from study.tabular.rng import ENGINE, ROLLOUT, combine, instance_keys
from study.tabular.rollout import rollout, step_table
from study.tabular.students import Student
from study.tabular.teachers import teacher_values
from variants import Variant, surrogate
from variants.policy import softmax, teacher_log_probs

Mode = Literal["exact", "sampled"]


@dataclass(frozen=True)
class TrainConfig:
    """How students are trained.

    exact: expected updates (no sampling noise). sampled: ``episodes``
    episodes per instance per iteration, each cut at ``max_steps``.
    """

    mode: Mode = "exact"
    iterations: int = 1000
    lr: float = 1.0
    optimizer: Literal["sgd", "adam"] = "sgd"
    eval_every: int = 50
    episodes: int = 1
    max_steps: int = 1000
    init_scale: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in ("exact", "sampled"):
            raise MDPError(f"mode: unknown mode {self.mode!r}; allowed: exact, sampled")
        if self.optimizer not in ("sgd", "adam"):
            raise MDPError(f"optimizer: unknown optimizer {self.optimizer!r}; allowed: sgd, adam")
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
    """Metrics along training: ``values[name]`` is ``[len(steps), N]``."""

    steps: list[int]
    values: dict[str, Tensor]
    plan: Plan
    teacher_return: Tensor
    uniform_return: Tensor
    final_logits: Tensor
    extras: dict[str, Tensor] = field(default_factory=dict)

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
    mdp: TabularMDP
    teacher_out: Tensor
    teacher_act: Tensor
    v_teacher: Tensor | None


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
) -> Curves:
    """Train one student per instance of ``plan`` and record metrics.

    ``mdp`` and ``teacher_out`` ``[M, S, A]`` hold the distinct MDPs and their
    teachers' raw outputs; the plan indexes them.
    """
    student = student or Student()
    plan.check(mdp.n_mdps, len(variants))
    if config.mode == "exact":
        for variant in variants:
            exact.check_exact(variant)
    expected = (mdp.n_mdps, mdp.n_states, mdp.n_actions)
    if tuple(teacher_out.shape) != expected:
        raise MDPError(f"teacher_out has shape {tuple(teacher_out.shape)}; allowed: {expected} (one row per MDP)")
    inst_mdp = mdp.select(plan.mdp_index)
    inst_teacher = teacher_out.index_select(0, plan.mdp_index)
    teacher_logp = torch.full_like(inst_teacher, float("nan"))
    groups: list[_Group] = []
    for vi, variant in enumerate(variants):
        index = (plan.variant_index == vi).nonzero().squeeze(-1)
        if len(index) == 0:
            continue
        g_mdp = inst_mdp.select(index)
        g_out = inst_teacher.index_select(0, index)
        teacher_logp[index] = teacher_log_probs(g_out, variant.tau)
        v_t = teacher_values(g_mdp, g_out, variant.tau, variant.gamma) if exact.values_needed(variant) else None
        groups.append(_Group(variant, index, g_mdp, g_out, exact.teacher_acting_probs(variant, g_out), v_t))
    teacher_policy = teacher_logp.exp()
    teacher_occ = inst_mdp.occupancy(teacher_policy)
    teacher_ret = inst_mdp.episode_return(teacher_policy)
    uniform_ret = inst_mdp.episode_return(torch.full_like(teacher_policy, 1.0 / mdp.n_actions))

    fingerprints = torch.tensor([v.fingerprint for v in variants], dtype=torch.int64)[plan.variant_index]
    keys = instance_keys(ENGINE, plan.seed, plan.mdp_index, fingerprints)
    params = student.init(inst_mdp, keys, config.init_scale).requires_grad_()
    opt = (torch.optim.SGD if config.optimizer == "sgd" else torch.optim.Adam)([params], lr=config.lr)
    # learned critics: one value table per instance, moved by the TD update whatever the students' optimiser
    critic = critic_rate = visits = None
    if any(g.variant.critic == "learned" for g in groups):
        critic = params.new_zeros(len(plan), mdp.n_states).requires_grad_()
        critic_rate = params.new_tensor([v.critic_lr for v in variants])[plan.variant_index]
        visits = torch.zeros_like(critic)

    table = step_table(inst_mdp) if config.mode == "sampled" else None
    steps: list[int] = []
    records: dict[str, list[Tensor]] = {name: [] for name in METRICS}
    lengths: list[Tensor] = []

    def record(iteration: int) -> None:
        if not record_metrics:
            return
        with torch.no_grad():
            logits = student.logits(params, inst_mdp)
            values = evaluate_students(inst_mdp, teacher_logp, inst_teacher, logits, teacher_occ)
        steps.append(iteration)
        for name in METRICS:
            records[name].append(values[name])

    for it in range(config.iterations):
        if it % config.eval_every == 0:
            record(it)
        opt.zero_grad(set_to_none=True)
        logits = student.logits(params, inst_mdp)
        if config.mode == "exact":
            loss = sum(
                exact.expected_surrogate(g.variant, g.mdp, g.teacher_out, logits[g.index], iteration=it,
                                         v_teacher=g.v_teacher).sum()
                for g in groups
            )
        else:
            loss = _sampled_loss(groups, inst_mdp, table, inst_teacher, logits, keys, it, config, lengths,
                                 critic, visits)
        loss.backward()
        opt.step()
        if critic is not None and critic.grad is not None:
            _td_step(critic, critic_rate, visits, config.episodes)
        if progress is not None:
            progress(it + 1)
    record(config.iterations)
    stacked = {k: torch.stack(v) if v else torch.empty(0, len(plan)) for k, v in records.items()}
    final_logits = student.logits(params.detach(), inst_mdp)
    curves = Curves(steps, stacked, plan, teacher_ret, uniform_ret, final_logits)
    if lengths:
        curves.extras["episode_length"] = torch.stack(lengths)
    if critic is not None:  # [N, S]; zero for instances without a learned critic
        curves.extras["critic"] = critic.detach()
    return curves


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
    table: Tensor,
    inst_teacher: Tensor,
    logits: Tensor,
    keys: Tensor,
    iteration: int,
    config: TrainConfig,
    lengths: list[Tensor],
    critic: Tensor | None = None,
    visits: Tensor | None = None,
) -> Tensor:
    """Roll out every instance under its control policy, then sum the group surrogates.

    ``critic`` ``[N, S]`` holds the learned critics; ``visits`` is filled with how often each of their
    states was visited in this iteration's episodes.
    """
    n, s_count, a_count = logits.shape
    if visits is not None:
        visits.zero_()
    with torch.no_grad():
        control = torch.empty_like(logits)
        for g in groups:
            student = softmax(logits[g.index].detach())
            control[g.index] = g.variant.control.probs(g.teacher_act, student, iteration)
        ro = rollout(inst_mdp, control, combine(combine(keys, ROLLOUT), iteration), episodes=config.episodes,
                     max_steps=config.max_steps, table=table)
        lengths.append(ro.lengths.view(n, config.episodes).to(logits.dtype).mean(-1))
    flat_logits = logits.reshape(n * s_count, a_count)
    flat_teacher = inst_teacher.reshape(n * s_count, a_count)
    total = logits.sum() * 0.0
    per_instance_rows = torch.arange(n * config.episodes).view(n, config.episodes)
    for g in groups:
        rows = per_instance_rows[g.index].reshape(-1)
        inst = ro.instance[rows]
        states = ro.states[rows]
        flat = inst.unsqueeze(-1) * s_count + states
        v_t = v_s = v_c = None
        if g.v_teacher is not None or g.variant.critic == "exact":  # rows of the group's own tables
            local = torch.searchsorted(g.index, inst).unsqueeze(-1)
        if g.v_teacher is not None:
            v_t = g.v_teacher[local, states]
            if g.variant.v_cond:
                with torch.no_grad():
                    v_student = g.mdp.evaluate(softmax(logits[g.index].detach()), g.variant.gamma)
                v_s = v_student[local, states]
        if g.variant.critic == "learned":
            v_c = critic[inst.unsqueeze(-1), states]
            visits.view(-1).index_add_(0, flat[ro.valid[rows]], torch.ones_like(v_c[ro.valid[rows]]))
        elif g.variant.critic == "exact":
            with torch.no_grad():
                v_c = exact.critic_values(g.variant, g.mdp, g.teacher_out, logits[g.index].detach(),
                                          iteration=iteration, v_teacher=g.v_teacher)[local, states]
        per_traj = surrogate(
            g.variant,
            student_out=flat_logits[flat],
            teacher_out=flat_teacher[flat],
            actions=ro.actions[rows],
            valid=ro.valid[rows],
            env_reward=ro.rewards[rows],
            v_teacher=v_t,
            v_student=v_s,
            v_critic=v_c,
        )
        total = total + per_traj.sum() / config.episodes
    return total

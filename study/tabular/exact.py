"""Exact expected updates on finite MDPs: no sampling noise.

For a variant and a batch of MDPs, :func:`expected_surrogate` is a function
whose gradient in the student's outputs is the expectation, over
trajectories of the control policy, of the gradient of the sampled surrogate
(:func:`variants.surrogate`). Everything the surrogate holds under stopgrad
(the control policy, its state occupancy, the returns) is computed from
``control_out`` and enters as a constant; the parts that carry gradient are
computed from ``student_out``. Passing the same θ-dependent tensor as both,
with ``torch.func``, gives the Jacobian of the update field.

:func:`declared_objective` is the objective a gradient-field variant claims
to descend, written independently (a differentiable occupancy instead of
returns), so that tests can check the claim.
"""

from __future__ import annotations

import torch
from torch import Tensor

from study.tabular.mdp import TabularMDP
from variants import Variant, VariantError, masked_state_loss, reward_parts
from variants.acting import control_probs, teacher_acting_probs  # noqa: F401 (re-exported)
from variants.policy import softmax, student_log_probs, teacher_log_probs


def expected_returns(
    variant: Variant,
    mdp: TabularMDP,
    q: Tensor,
    rhat: Tensor,
) -> Tensor:
    """``Q_hat(s, a) = E_q[R_t | s_t = s, a_t = a]`` for expected pseudo-rewards ``rhat``."""
    gamma = variant.gamma
    if not variant.truncated:  # whole returns, or an exact critic's bootstrap (the same in expectation)
        v = mdp.evaluate(q, gamma, reward=rhat)
        return rhat + gamma * mdp.expect_next(v)
    qhat = torch.zeros_like(rhat)
    for _ in range(variant.n_step):
        qhat = rhat + gamma * mdp.expect_next((q * qhat).sum(-1))
    return qhat


def expected_pseudo_reward(
    variant: Variant,
    mdp: TabularMDP,
    teacher_out: Tensor,
    control_out: Tensor,
    q: Tensor,
    v_teacher: Tensor | None,
    v_student: Tensor | None,
) -> Tensor:
    """``E[r_hat_t | s_t = s, a_t = a]`` ``[N, S, A]``, next-step parts averaged over
    transitions and the control's next action."""
    loss_fixed = masked_state_loss(variant, control_out, teacher_out, v_teacher, v_student)
    parts = reward_parts(
        variant.reward,
        env_reward=variant.env_reward,
        gamma=variant.gamma,
        teacher_logp=teacher_log_probs(teacher_out, variant.tau),
        student_logp=student_log_probs(control_out),
        loss=loss_fixed,
        v_teacher=v_teacher,
    )
    rhat = torch.zeros_like(q)
    if parts.now is not None:
        rhat = rhat + parts.now
    if parts.state is not None:
        rhat = rhat + parts.state.unsqueeze(-1)
    if parts.env:
        rhat = rhat + parts.env * mdp.expected_reward()
    arrive = torch.zeros_like(q[..., 0])
    if parts.arrive is not None:
        arrive = arrive + parts.arrive
    if parts.arrive_action is not None:
        arrive = arrive + (q * parts.arrive_action).sum(-1)
    if parts.arrive is not None or parts.arrive_action is not None:
        rhat = rhat + mdp.expect_next(arrive)
    return rhat


def values_needed(variant: Variant) -> bool:
    """Whether the variant reads V_T (teacher V reward, +V cond, a critic that starts from it)."""
    return variant.reward_spec.needs_v_teacher or variant.v_cond or variant.critic_init == "teacher_v"


def check_exact(variant: Variant) -> None:
    """Expected updates have no samples to train a critic on."""
    if variant.critic == "learned":
        raise VariantError(f"variant {variant.name or variant.describe()!r}: a learned critic is trained on "
                           "sampled steps, which exact mode does not draw; allowed: mode 'sampled', or "
                           "critic 'exact' (its expected update is the same as with whole returns)")


def _expected_data(
    variant: Variant, mdp: TabularMDP, teacher_out: Tensor, control_out: Tensor, iteration: int,
    v_teacher: Tensor | None,
) -> tuple[Tensor, Tensor | None, Tensor]:
    """What the surrogate holds fixed: the control policy, V_theta (+V cond) and ``E[r_hat | s, a]``."""
    q = control_probs(variant, teacher_out, control_out, iteration)
    v_student = mdp.evaluate(softmax(control_out), variant.gamma) if variant.v_cond else None
    return q, v_student, expected_pseudo_reward(variant, mdp, teacher_out, control_out, q, v_teacher, v_student)


def critic_values(
    variant: Variant, mdp: TabularMDP, teacher_out: Tensor, control_out: Tensor, *, iteration: int = 0,
    v_teacher: Tensor | None = None,
) -> Tensor:
    """The exact critic ``[N, S]``: the value of the expected pseudo-reward under the control policy
    (also what a learned critic is trained towards)."""
    q, _, rhat = _expected_data(variant, mdp, teacher_out, control_out, iteration, v_teacher)
    return mdp.evaluate(q, variant.gamma, reward=rhat)


def expected_surrogate(
    variant: Variant,
    mdp: TabularMDP,
    teacher_out: Tensor,
    student_out: Tensor,
    *,
    control_out: Tensor | None = None,
    iteration: int = 0,
    v_teacher: Tensor | None = None,
) -> Tensor:
    """Per-MDP ``[N]``: ``sum_s d_q(s) [ l(s) - sum_a q(a|s) log pi(a|s) Q_hat(s, a) ]``.

    ``control_out`` defaults to ``student_out.detach()``. ``v_teacher`` is
    ``V_T`` ``[N, S]`` (needed by the teacher V reward and +V cond).
    """
    check_exact(variant)
    ctrl = student_out.detach() if control_out is None else control_out
    q, v_student, rhat = _expected_data(variant, mdp, teacher_out, ctrl, iteration, v_teacher)
    occupancy = mdp.occupancy(q)
    qhat = expected_returns(variant, mdp, q, rhat)
    loss = masked_state_loss(variant, student_out, teacher_out, v_teacher, v_student)
    logp = student_log_probs(student_out)
    policy_term = -(q * logp * qhat).sum(-1)
    return (occupancy * (loss + policy_term)).sum(-1)


def declared_objective(
    variant: Variant,
    mdp: TabularMDP,
    teacher_out: Tensor,
    student_out: Tensor,
    *,
    v_teacher: Tensor | None = None,
) -> Tensor:
    """The objective ``[N]`` a gradient-field variant descends (at gamma = 1).

    Fixed control: the expected surrogate itself (its data do not move).
    Student control: ``E_{pi_theta}[sum_t l(s_t) - now(s_t, a_t) - env r_t]``,
    with the state occupancy differentiated; the teacher V reward's shaping
    terms telescope to a constant and are left out.
    """
    if not variant.gradient_field:
        raise VariantError(f"variant {variant.name or variant.describe()!r} is not a gradient field")
    if not variant.control.depends_on_student:
        return expected_surrogate(variant, mdp, teacher_out, student_out, v_teacher=v_teacher)
    policy = softmax(student_out)
    occupancy = mdp.occupancy(policy)
    loss = masked_state_loss(variant, student_out, teacher_out, v_teacher)
    parts = reward_parts(
        variant.reward,
        env_reward=variant.env_reward,
        gamma=variant.gamma,
        teacher_logp=teacher_log_probs(teacher_out, variant.tau),
        student_logp=student_log_probs(student_out),
        loss=loss,
        v_teacher=v_teacher,
    )
    gain = torch.zeros_like(policy)
    if parts.now is not None:
        gain = gain + parts.now
    if parts.env:
        gain = gain + parts.env * mdp.expected_reward()
    cost = loss - (policy * gain).sum(-1)
    return (occupancy * cost).sum(-1)


def update_field(
    variant: Variant,
    mdp: TabularMDP,
    teacher_out: Tensor,
    logits_fn,
    params: Tensor,
    *,
    iteration: int = 0,
    v_teacher: Tensor | None = None,
) -> Tensor:
    """The expected update ``u(theta) = E[grad L]`` as a differentiable function of theta.

    ``logits_fn(params) -> [N, S, A]``. Differentiating the result w.r.t.
    ``params`` (e.g. ``torch.func.jacrev``) gives the update field's Jacobian,
    including how the data distribution moves with theta.
    """

    def surrogate_at(phi: Tensor, theta: Tensor) -> Tensor:
        return expected_surrogate(variant, mdp, teacher_out, logits_fn(phi), control_out=logits_fn(theta),
                                  iteration=iteration, v_teacher=v_teacher).sum()

    return torch.func.grad(surrogate_at, argnums=0)(params, params)

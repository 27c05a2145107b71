"""Per-state losses ``l(pi_T(s), pi_theta(s))`` on batched outputs ``[..., A]``.

Every loss takes the student's raw outputs (logits or Q-values), the teacher's
raw outputs, the teacher temperature ``tau`` and the JSD mixing weight
``beta``, and returns one value per state (shape ``[...]``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from variants.policy import kl, plogq, student_log_probs, teacher_log_probs

LossFn = Callable[[Tensor, Tensor, float, float], Tensor]


def cross_entropy(student: Tensor, teacher: Tensor, tau: float, beta: float = 0.5) -> Tensor:
    """H(pi_T, pi_theta) = KL(pi_T || pi_theta) + H(pi_T): Czarnecki et al.'s distill loss."""
    return -plogq(teacher_log_probs(teacher, tau), student_log_probs(student))


def reverse_cross_entropy(student: Tensor, teacher: Tensor, tau: float, beta: float = 0.5) -> Tensor:
    """H(pi_theta, pi_T) = -sum_a pi_theta(a) log pi_T(a), the expectation taken exactly."""
    lps = student_log_probs(student)
    return -(lps.exp() * teacher_log_probs(teacher, tau)).sum(dim=-1)


def forward_kl(student: Tensor, teacher: Tensor, tau: float, beta: float = 0.5) -> Tensor:
    """KL(softmax(q_T / tau) || softmax(q_theta)); Rusu et al. use tau = 0.01."""
    return kl(teacher_log_probs(teacher, tau), student_log_probs(student))


def reverse_kl(student: Tensor, teacher: Tensor, tau: float, beta: float = 0.5) -> Tensor:
    """KL(pi_theta || pi_T): mode seeking."""
    return kl(student_log_probs(student), teacher_log_probs(teacher, tau))


def nll(student: Tensor, teacher: Tensor, tau: float, beta: float = 0.5) -> Tensor:
    """-log pi_theta(argmax_a out_T(a)): Rusu et al.'s NLL of the teacher's action."""
    best = teacher.argmax(dim=-1, keepdim=True)
    return -student_log_probs(student).gather(-1, best).squeeze(-1)


def mse(student: Tensor, teacher: Tensor, tau: float, beta: float = 0.5) -> Tensor:
    """||out_T - out_theta||^2 on raw outputs (Q-values or logits), summed over actions."""
    return ((teacher - student) ** 2).sum(dim=-1)


def jsd(student: Tensor, teacher: Tensor, tau: float, beta: float = 0.5) -> Tensor:
    """Generalised JSD(beta) scaled by 1 / (beta (1 - beta)).

    With M = beta pi_T + (1 - beta) pi_theta, the interior value is
    [beta KL(pi_T || M) + (1 - beta) KL(pi_theta || M)] / (beta (1 - beta)),
    whose limits are KL(pi_T || pi_theta) at beta -> 0 and KL(pi_theta || pi_T)
    at beta -> 1; the endpoints are those two divergences exactly.
    """
    if beta <= 0.0:
        return forward_kl(student, teacher, tau)
    if beta >= 1.0:
        return reverse_kl(student, teacher, tau)
    lpt = teacher_log_probs(teacher, tau)
    lps = student_log_probs(student)
    lpm = torch.logaddexp(lpt + torch.log(torch.tensor(beta, dtype=lps.dtype)),
                          lps + torch.log(torch.tensor(1.0 - beta, dtype=lps.dtype)))
    return (beta * kl(lpt, lpm) + (1.0 - beta) * kl(lps, lpm)) / (beta * (1.0 - beta))


@dataclass(frozen=True)
class LossSpec:
    """A per-state loss and what it needs of the teacher."""

    name: str
    fn: LossFn | None
    summary: str
    needs_teacher_logp: bool = False  # log pi_T must be finite (tau > 0)


LOSSES: dict[str, LossSpec] = {
    spec.name: spec
    for spec in [
        LossSpec("none", None, "no per-state loss (the reward carries the signal)"),
        LossSpec("cross_entropy", cross_entropy, "H(pi_T, pi_theta)"),
        LossSpec("reverse_cross_entropy", reverse_cross_entropy, "H(pi_theta, pi_T), exact",
                 needs_teacher_logp=True),
        LossSpec("forward_kl", forward_kl, "KL(softmax(out_T/tau) || pi_theta)"),
        LossSpec("reverse_kl", reverse_kl, "KL(pi_theta || pi_T)", needs_teacher_logp=True),
        LossSpec("nll", nll, "-log pi_theta(argmax out_T)"),
        LossSpec("mse", mse, "||out_T - out_theta||^2 on raw outputs"),
        LossSpec("jsd", jsd, "JSD(beta) / (beta (1 - beta)); beta 0 = forward KL, 1 = reverse KL"),
    ]
}


def state_loss(name: str, student: Tensor, teacher: Tensor, tau: float, beta: float) -> Tensor:
    """Evaluate the named per-state loss; ``none`` gives zeros of the batch shape."""
    spec = LOSSES[name]
    if spec.fn is None:
        return torch.zeros(student.shape[:-1], dtype=student.dtype, device=student.device)
    return spec.fn(student, teacher, tau, beta)

"""Teacher and student policies from raw network or table outputs.

The teacher's policy is always ``softmax(out / tau)``. ``tau = 0`` means the
argmax policy (ties share the mass), whose log-probabilities are ``-inf`` off
the argmax: losses and rewards that need a finite ``log pi_T`` refuse it.
"""

from __future__ import annotations

import torch
from torch import Tensor


def log_softmax(x: Tensor) -> Tensor:
    """Log-softmax over the last axis.

    Written out because torch's fused kernel is several times slower for the
    few actions of RL (4 to 18) on large batches; the max is detached since
    the result does not depend on the shift.
    """
    z = x - x.amax(dim=-1, keepdim=True).detach()
    return z - z.exp().sum(dim=-1, keepdim=True).log()


def softmax(x: Tensor) -> Tensor:
    """Softmax over the last axis (see :func:`log_softmax` for why it is written out)."""
    e = (x - x.amax(dim=-1, keepdim=True).detach()).exp()
    return e / e.sum(dim=-1, keepdim=True)


def teacher_log_probs(out: Tensor, tau: float) -> Tensor:
    """``log softmax(out / tau)`` over the last axis; ``tau = 0`` is the argmax policy."""
    if tau < 0:
        raise ValueError(f"tau must be >= 0, got {tau}")
    if tau == 0:
        best = (out == out.max(dim=-1, keepdim=True).values).to(out.dtype)
        return torch.log(best / best.sum(dim=-1, keepdim=True))
    return log_softmax(out / tau)


def student_log_probs(out: Tensor) -> Tensor:
    """The student's policy is the softmax of its outputs, never scaled (Rusu et al.)."""
    return log_softmax(out)


def plogq(logp: Tensor, logq: Tensor) -> Tensor:
    """``sum_a p(a) log q(a)`` with the convention ``0 * log 0 = 0``."""
    p = logp.exp()
    return torch.where(p > 0, p * logq, torch.zeros_like(logq)).sum(dim=-1)


def kl(logp: Tensor, logq: Tensor) -> Tensor:
    """``KL(p || q)`` over the last axis from log-probabilities; zero-mass terms vanish."""
    p = logp.exp()
    terms = torch.where(p > 0, p * (logp - logq), torch.zeros_like(logq))
    return terms.sum(dim=-1)


def entropy(logp: Tensor) -> Tensor:
    """Shannon entropy over the last axis."""
    return -plogq(logp, logp)

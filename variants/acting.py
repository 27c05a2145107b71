"""Who acts: the control policy's action distribution, the same for tabular and network students."""

from __future__ import annotations

from torch import Tensor

from variants.policy import softmax, teacher_log_probs
from variants.spec import Variant


def teacher_acting_probs(variant: Variant, teacher_out: Tensor) -> Tensor:
    """The teacher's policy when it acts (the control's own temperature, if it has one)."""
    tau = variant.control.teacher_tau if variant.control.teacher_tau is not None else variant.tau
    return teacher_log_probs(teacher_out, tau).exp()


def control_probs(variant: Variant, teacher_out: Tensor, control_out: Tensor, iteration: int = 0) -> Tensor:
    """The control policy ``q [..., A]`` at a training iteration (``control_out``: the student's outputs,
    detached)."""
    return variant.control.probs(teacher_acting_probs(variant, teacher_out), softmax(control_out), iteration)

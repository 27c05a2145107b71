"""Control policies: who acts while data is collected.

Every control policy is a mixture ``w_T pi_T + w_S pi_theta + w_U uniform``
whose weights may follow a schedule over training iterations, with an
optional epsilon floor towards uniform. Writing them all in one form lets a
batched engine roll out many different controls in one tensor program.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from variants.errors import VariantError

ControlKind = Literal["teacher", "student", "uniform", "mixture"]
Schedule = Literal["constant", "linear", "exponential"]
CONTROL_KINDS: tuple[str, ...] = ("teacher", "student", "uniform", "mixture")
SCHEDULES: tuple[str, ...] = ("constant", "linear", "exponential")


@dataclass(frozen=True)
class Control:
    """Who acts.

    ``mixture``: the teacher acts with probability ``beta_at(iteration)``, the
    student otherwise (DAgger's ``beta_i pi* + (1 - beta_i) pi_i``). Schedules:
    constant ``beta``; linear from ``beta`` to ``beta_final`` over ``horizon``
    iterations; exponential ``beta * decay ** iteration``. ``epsilon`` mixes
    the result with the uniform policy. ``teacher_tau`` is the temperature the
    teacher acts with (``None``: the variant's own ``tau``), so that a teacher
    can act greedily while the loss uses a softened target.
    """

    kind: ControlKind = "student"
    beta: float = 1.0
    schedule: Schedule = "constant"
    beta_final: float = 0.0
    horizon: int = 1000
    decay: float = 0.99
    epsilon: float = 0.0
    teacher_tau: float | None = None

    def __post_init__(self) -> None:
        """Validate the parts and normalise numbers, so that a bad control fails where it is made."""
        for field in ("beta", "beta_final", "decay", "epsilon"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise VariantError(f"control.{field}: {value!r} is not a number")
        if isinstance(self.horizon, bool) or not isinstance(self.horizon, int):
            raise VariantError(f"control.horizon: {self.horizon!r} is not a whole number; allowed: an integer >= 1")
        if self.teacher_tau is not None and (
            isinstance(self.teacher_tau, bool) or not isinstance(self.teacher_tau, numbers.Real)
        ):
            raise VariantError(f"control.teacher_tau: {self.teacher_tau!r} is not a number or none")
        floats = ("beta", "beta_final", "decay", "epsilon", *(("teacher_tau",) if self.teacher_tau is not None else ()))
        for name in floats:
            object.__setattr__(self, name, float(getattr(self, name)))  # 1 and 1.0 are one control
        if self.kind not in CONTROL_KINDS:
            raise VariantError(f"control: unknown kind {self.kind!r}; allowed: {', '.join(CONTROL_KINDS)}")
        if self.schedule not in SCHEDULES:
            raise VariantError(
                f"control.schedule: unknown schedule {self.schedule!r}; allowed: {', '.join(SCHEDULES)}"
            )
        for field in ("beta", "beta_final", "epsilon"):
            value = getattr(self, field)
            if not (0.0 <= value <= 1.0) or math.isnan(value):
                raise VariantError(f"control.{field}: {value} is out of range; allowed: 0 <= {field} <= 1")
        if not (0.0 < self.decay <= 1.0):
            raise VariantError(f"control.decay: {self.decay} is out of range; allowed: 0 < decay <= 1")
        if self.horizon < 1:
            raise VariantError(f"control.horizon: {self.horizon} is out of range; allowed: horizon >= 1")
        if self.teacher_tau is not None and not (self.teacher_tau >= 0 and math.isfinite(self.teacher_tau)):
            raise VariantError(
                f"control.teacher_tau: {self.teacher_tau} is out of range; allowed: a finite tau >= 0 or none"
            )
        if self.kind != "mixture" and self.beta != 1.0:
            raise VariantError(
                f"control.beta: {self.beta} is set, but beta (the teacher's share) applies to kind 'mixture' "
                f"only; got kind {self.kind!r}"
            )
        if self.kind != "mixture" and self.schedule != "constant":
            raise VariantError(
                f"control.schedule: {self.schedule!r} needs kind 'mixture' (a schedule moves beta, "
                f"which only a mixture has); got kind {self.kind!r}"
            )

    def beta_at(self, iteration: int) -> float:
        """The teacher's share of control at a training iteration."""
        if self.schedule == "constant":
            return self.beta
        if self.schedule == "linear":
            frac = min(iteration / self.horizon, 1.0)
            return self.beta + (self.beta_final - self.beta) * frac
        return self.beta * self.decay**iteration

    def weights(self, iteration: int) -> tuple[float, float, float]:
        """(teacher, student, uniform) weights after the epsilon floor."""
        if self.kind == "teacher":
            w = (1.0, 0.0, 0.0)
        elif self.kind == "student":
            w = (0.0, 1.0, 0.0)
        elif self.kind == "uniform":
            w = (0.0, 0.0, 1.0)
        else:
            b = self.beta_at(iteration)
            w = (b, 1.0 - b, 0.0)
        e = self.epsilon
        return ((1 - e) * w[0], (1 - e) * w[1], (1 - e) * w[2] + e)

    @property
    def depends_on_student(self) -> bool:
        """Whether the data distribution moves with the student's parameters."""
        if self.kind == "student":
            return True
        if self.kind == "mixture":
            fixed_teacher = self.schedule == "constant" and self.beta == 1.0
            return not fixed_teacher and self.epsilon < 1.0
        return False

    @property
    def is_pure_student(self) -> bool:
        """Samples come from pi_theta itself, so the score function is unbiased."""
        if self.epsilon > 0:
            return False
        return self.kind == "student" or (
            self.kind == "mixture" and self.schedule == "constant" and self.beta == 0.0
        )

    def probs(self, teacher_probs: Tensor, student_probs: Tensor, iteration: int) -> Tensor:
        """The control distribution ``[..., A]`` (student probabilities must be detached)."""
        wt, ws, wu = self.weights(iteration)
        n_actions = student_probs.shape[-1]
        q = torch.full_like(student_probs, wu / n_actions)
        if wt:
            q = q + wt * teacher_probs
        if ws:
            q = q + ws * student_probs
        return q

    def describe(self) -> str:
        """A short human-readable name."""
        if self.kind == "mixture":
            if self.schedule == "constant":
                text = f"mixture(beta={self.beta:g})"
            elif self.schedule == "linear":
                text = f"mixture(beta {self.beta:g}->{self.beta_final:g} over {self.horizon})"
            else:
                text = f"mixture(beta={self.beta:g}*{self.decay:g}^i)"
        else:
            text = self.kind
        if self.teacher_tau is not None and self.kind in ("teacher", "mixture"):
            text += f", teacher tau={self.teacher_tau:g}"
        if self.epsilon:
            text += f", eps={self.epsilon:g}"
        return text

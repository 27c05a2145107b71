"""Czarnecki et al.'s Fig. 2 toy as the paper describes it, next to ours (``two_step_toy``).

s0 -L-> sL, s0 -R-> sR, and each of sL, sR ends the episode after one more action. The student is two
sigmoids: ``pi(R|s0) = sigmoid(theta_0)`` and ``pi(R|sL) = pi(R|sR) = sigmoid(theta_1)``, one parameter
shared by the two second states. The teacher prefers R in sR, where the per-state loss is
``l(theta|sR) = -4 pi_theta(R|sR)``. Plain on-policy distillation (r_hat = 0) follows the per-state losses
weighted by how often the student visits each state, without credit for moving those visits; N-distillation
(r_hat_t = -l(s_{t+1})) is the gradient of the expected sum of losses (Theorem 2).

The description leaves open the loss in sL and s0 and the step size; :data:`CHOICES` spans them, so that a
verdict can say whether it hinges on them. The expected updates of this two-step toy are written out
exactly (no sampling), so every number here is deterministic.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

F64 = torch.float64
RECIPES = ("on_policy_distill", "n_distill")
SR_WEIGHT = 4.0  # l(theta|sR) = -4 pi(R|sR), as described


@dataclass(frozen=True)
class Choice:
    """The details the description leaves open. ``sl``: the loss in sL, where the teacher prefers L:
    ``"linear"`` (``-sl_weight pi(L|sL)``, the form of the sR loss) or ``"cross_entropy"`` (to a teacher with
    ``pi_T(L|sL) = sl_teacher``); ``s0``: no loss at s0 (``"none"``: an indifferent teacher gives no signal)
    or the cross-entropy to a uniform teacher; ``lr``: the step size."""

    sl: str = "linear"
    sl_weight: float = 1.0
    sl_teacher: float = 0.9
    s0: str = "none"
    lr: float = 0.1

    def __post_init__(self) -> None:
        if self.sl not in ("linear", "cross_entropy") or self.s0 not in ("none", "cross_entropy"):
            raise ValueError(f"choice: sl {self.sl!r}, s0 {self.s0!r}; allowed: sl linear or cross_entropy, "
                             "s0 none or cross_entropy")
        if not (0.0 < self.sl_teacher < 1.0 and self.lr > 0.0):
            raise ValueError(f"choice: sl_teacher {self.sl_teacher} and lr {self.lr}; allowed: "
                             "0 < sl_teacher < 1, lr > 0")

    def label(self) -> str:
        """A short name for tables."""
        sl = f"sL -{self.sl_weight:g} pi(L)" if self.sl == "linear" else f"sL CE(pi_T(L)={self.sl_teacher:g})"
        s0 = "s0 none" if self.s0 == "none" else "s0 CE(uniform)"
        return f"{sl}, {s0}, lr {self.lr:g}"


DEFAULT = Choice()
CHOICES = tuple(Choice(sl=sl, sl_weight=w, s0=s0, lr=lr) for (sl, w), s0, lr in itertools.product(
    (("linear", 1.0), ("linear", 2.0), ("cross_entropy", 1.0)), ("none", "cross_entropy"), (0.1, 1.0)))


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def _losses(theta: tuple[float, float], choice: Choice) -> tuple[float, float, float, float]:
    """``pi(R|s0)`` and the per-state losses at s0, sL and sR."""
    p, q = _sigmoid(theta[0]), _sigmoid(theta[1])
    l_r = -SR_WEIGHT * q
    if choice.sl == "linear":
        l_l = -choice.sl_weight * (1 - q)
    else:
        t = choice.sl_teacher
        l_l = -(t * math.log(1 - q) + (1 - t) * math.log(q))
    l_0 = 0.0 if choice.s0 == "none" else -0.5 * (math.log(1 - p) + math.log(p))
    return p, l_0, l_l, l_r


def update(recipe: str, theta: tuple[float, float], choice: Choice = DEFAULT) -> tuple[float, float]:
    """The expected update ``u(theta)`` (parameters move by ``-lr u``), written out. With visits
    ``1 - p`` to sL and ``p`` to sR: ``u_1 = (1 - p) dl_L/dtheta_1 + p dl_R/dtheta_1`` for both recipes;
    ``u_0 = dl_0/dtheta_0`` for on-policy distill, which holds the visits fixed, plus
    ``p (1 - p) (l_R - l_L)`` for N-distill, whose reward credits the move between sL and sR."""
    if recipe not in RECIPES:
        raise ValueError(f"recipe: unknown {recipe!r}; allowed: {', '.join(RECIPES)}")
    p, q = _sigmoid(theta[0]), _sigmoid(theta[1])
    d_r = -SR_WEIGHT * q * (1 - q)
    d_l = choice.sl_weight * q * (1 - q) if choice.sl == "linear" else q - (1 - choice.sl_teacher)
    u_0 = 0.0 if choice.s0 == "none" else p - 0.5
    if recipe == "n_distill":
        _, _, l_l, l_r = _losses(theta, choice)
        u_0 += p * (1 - p) * (l_r - l_l)
    return u_0, (1 - p) * d_l + p * d_r


def expected_loss(theta: tuple[float, float], choice: Choice = DEFAULT) -> float:
    """``E[sum_t l(s_t)]`` under the student: what N-distill descends."""
    p, l_0, l_l, l_r = _losses(theta, choice)
    return l_0 + (1 - p) * l_l + p * l_r


def path(recipe: str, choice: Choice = DEFAULT, iterations: int = 20000,
         start: tuple[float, float] = (0.0, 0.0)) -> Tensor:
    """``theta`` along exact updates from ``start``, ``[iterations + 1, 2]``."""
    theta = start
    out = [theta]
    for _ in range(iterations):
        u = update(recipe, theta, choice)
        theta = (theta[0] - choice.lr * u[0], theta[1] - choice.lr * u[1])
        out.append(theta)
    return torch.tensor(out, dtype=F64)


def jacobian(recipe: str, theta: tuple[float, float], choice: Choice = DEFAULT, h: float = 1e-6) -> np.ndarray:
    """``du/dtheta`` at ``theta`` by central differences, ``[2, 2]`` (``[i, j] = du_i/dtheta_j``)."""
    jac = np.zeros((2, 2))
    for j in range(2):
        up = list(theta)
        down = list(theta)
        up[j] += h
        down[j] -= h
        jac[:, j] = (np.array(update(recipe, (up[0], up[1]), choice))
                     - np.array(update(recipe, (down[0], down[1]), choice))) / (2 * h)
    return jac


@dataclass(frozen=True)
class Behaviour:
    """How a path ends: ``converges`` (the parameters stop: late motion below ``STILL``), ``cycles`` (they
    turn back and forth) or ``diverges`` (they keep going one way: a loss with no minimiser); with the
    policy's late motion, since a diverging parameter can still leave a settled, deterministic policy."""

    kind: str
    theta: list[float]
    policy: list[float]
    late_motion: float
    late_policy_motion: float
    reversals: int


STILL = 1e-6


def behaviour(theta_path: Tensor) -> Behaviour:
    """Classify the last third of a path."""
    late = theta_path[len(theta_path) * 2 // 3:]
    motion = float((late[-1] - late[0]).norm())
    policy = torch.sigmoid(late)
    policy_motion = float((policy[-1] - policy[0]).abs().max())
    reversals = 0
    for k in range(2):
        d = torch.diff(late[:, k])
        d = d[d.abs() > 1e-12]
        if len(d) > 1:
            reversals = max(reversals, int((torch.sign(d[1:]) != torch.sign(d[:-1])).sum()))
    amplitude = float((late.max(0).values - late.min(0).values).max())
    if motion < STILL and amplitude < 1e-4:
        kind = "converges"
    elif reversals >= 2 and amplitude > 1e-3:
        kind = "cycles"
    else:
        kind = "diverges"
    end = theta_path[-1]
    return Behaviour(kind, [round(float(x), 4) for x in end], [round(float(x), 6) for x in torch.sigmoid(end)],
                     motion, policy_motion, reversals)


def field(recipe: str, choice: Choice, xlim: tuple[float, float], ylim: tuple[float, float],
          n: int = 21) -> tuple[np.ndarray, ...]:
    """``(X, Y, U, V)``: the direction exact updates move ``(theta_0, theta_1)``, on an n x n grid."""
    xs, ys = np.linspace(*xlim, n), np.linspace(*ylim, n)
    grid_x, grid_y = np.meshgrid(xs, ys)
    u = np.zeros((2, n, n))
    for i, j in itertools.product(range(n), range(n)):
        u[:, i, j] = [-x for x in update(recipe, (float(grid_x[i, j]), float(grid_y[i, j])), choice)]
    return grid_x, grid_y, u[0], u[1]


def portrait_data(choice: Choice = DEFAULT, iterations: int = 20000,
                  n: int = 21) -> tuple[dict[str, tuple[np.ndarray, ...]], dict[str, np.ndarray]]:
    """The two recipes' update fields over the region their paths from (0, 0) cover, and the paths."""
    paths = {name: path(name, choice, iterations).numpy() for name in RECIPES}
    every = np.concatenate(list(paths.values()))
    lo, hi = every.min(0) - 1.5, every.max(0) + 1.5
    return {name: field(name, choice, (lo[0], hi[0]), (lo[1], hi[1]), n) for name in RECIPES}, paths


def triangular(choice: Choice = DEFAULT, points: int = 5) -> float:
    """The largest ``|du_0/dtheta_1|`` of on-policy distill at random points: zero means theta_0's update
    ignores theta_1, so the 2-D flow is a 1-D flow for theta_0 followed by one for theta_1 and cannot cycle."""
    rng = np.random.default_rng(0)
    return max(abs(float(jacobian("on_policy_distill", (float(a), float(b)), choice)[0, 1]))
               for a, b in 3 * rng.standard_normal((points, 2)))

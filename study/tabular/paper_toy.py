"""Czarnecki et al.'s Fig. 2 toy as the paper draws it, and the cross-entropy toy beside it.

s0 -L-> sL, s0 -R-> sR, and each of sL, sR ends the episode after one more action with the environment's
reward: from sL, L pays -1 and R -2; from sR, L pays 0 and R -3. The student is two sigmoids:
``p = pi(R|s0) = sigmoid(theta_0)`` and ``q = pi(R|sL) = pi(R|sR) = sigmoid(theta_1)``, one parameter shared
by the two second states. The paper's teacher acts only in sR, through ``l(theta|sR) = -4 q``, with no loss
at s0 or sL, and its figure is titled "On-policy distill + R" and "N-distill + R": the environment's rewards
enter the REINFORCE term of both recipes. Its curves start at ``p = 0.12``, ``q = 0.10``.

The expected updates are written out (no sampling), so every number here is deterministic. Parameters move
by ``theta <- theta - lr u(theta)``, with

    on-policy distill + R:  u = visits-weighted grad l  -  grad J
    N-distill + R:          u = grad (E[sum_t l(s_t)] - J)

where ``J = (1 - p)(-1 - q) + p(-3 q)`` is the expected return. On the paper's toy this gives

    on-policy distill + R:  u_0 = -p(1-p)(1 - 2q),   u_1 = q(1-q)(1 - 2p)
    N-distill + R:          u_0 = -p(1-p)(1 + 2q),   u_1 = q(1-q)(1 - 2p)

so on-policy distill's flow conserves ``cosh theta_0 + cosh theta_1`` (:func:`conserved`): every orbit around
the fixed point (0, 0) is closed, a centre, and SGD's finite steps only widen it. N-distill + R descends
``(1 - p)(1 + q) - p q`` and its policy settles on (R, R) while its parameters grow without bound.

:data:`CROSS_ENTROPY` is the second toy: cross-entropy to a teacher in every state (uniform in s0,
``pi_T(L|sL) = pi_T(R|sR) = sigmoid(3)``), where on-policy distill + R spirals into a stable focus.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

RECIPES = ("on_policy_distill_r", "n_distill_r")
#: the environment's rewards, [second state (sL, sR)][action (L, R)]
REWARDS = ((-1.0, -2.0), (0.0, -3.0))
#: the paper's curves start here: (pi(R|s0), pi(R|sR))
START_POLICY = (0.12, 0.10)
SR_WEIGHT = 4.0  # l(theta|sR) = -4 pi(R|sR)
LOSS_KINDS = ("none", "linear", "cross_entropy")


@dataclass(frozen=True)
class Choice:
    """A toy of this family: the loss in each state and whether the environment's rewards enter (``env_reward``,
    the figure's "+ R"). ``s0`` is ``"none"`` or the cross-entropy to a uniform teacher; ``sl`` and ``sr`` are
    ``"none"``, ``"linear"`` (``-sl_weight pi(L|sL)``, ``-sr_weight pi(R|sR)``) or ``"cross_entropy"`` to a
    teacher with ``pi_T(L|sL) = sl_teacher``, ``pi_T(R|sR) = sr_teacher``."""

    s0: str = "none"
    sl: str = "none"
    sr: str = "linear"
    sl_weight: float = 1.0
    sr_weight: float = SR_WEIGHT
    sl_teacher: float = 0.9
    sr_teacher: float = 0.9
    env_reward: bool = True

    def __post_init__(self) -> None:
        if self.s0 not in ("none", "cross_entropy") or self.sl not in LOSS_KINDS or self.sr not in LOSS_KINDS:
            raise ValueError(f"choice: s0 {self.s0!r}, sl {self.sl!r}, sr {self.sr!r}; allowed: s0 none or "
                             f"cross_entropy, sl and sr one of {', '.join(LOSS_KINDS)}")
        if not (0.0 < self.sl_teacher < 1.0 and 0.0 < self.sr_teacher < 1.0):
            raise ValueError(f"choice: sl_teacher {self.sl_teacher}, sr_teacher {self.sr_teacher}; allowed: "
                             "strictly between 0 and 1")

    def label(self) -> str:
        """A short name for tables."""
        def one(state: str, kind: str, weight: float, teacher: float, action: str) -> str:
            if kind == "none":
                return f"{state} none"
            if kind == "linear":
                return f"{state} -{weight:g} pi({action})"
            return f"{state} CE(pi_T({action})={teacher:.3g})"
        parts = ["s0 none" if self.s0 == "none" else "s0 CE(uniform)",
                 one("sL", self.sl, self.sl_weight, self.sl_teacher, "L"),
                 one("sR", self.sr, self.sr_weight, self.sr_teacher, "R")]
        return ", ".join(parts) + (", + R" if self.env_reward else ", no R")


PAPER = Choice()
_SIGMOID_3 = 1.0 / (1.0 + math.exp(-3.0))
CROSS_ENTROPY = Choice(s0="cross_entropy", sl="cross_entropy", sr="cross_entropy", sl_teacher=_SIGMOID_3,
                       sr_teacher=_SIGMOID_3)
#: the cross-entropy toy's teacher as logits [state (s0, sL, sR, end)][action (L, R)], for the exact engine
CROSS_ENTROPY_LOGITS = [[0.0, 0.0], [3.0, 0.0], [0.0, 3.0], [0.0, 0.0]]


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def _state_loss(kind: str, weight: float, teacher: float, prob: float) -> tuple[float, float]:
    """A second state's loss and its derivative in the shared logit, where ``prob`` is the probability of the
    action the teacher prefers (``q`` in sR, ``1 - q`` in sL) and ``teacher`` pi_T of that action."""
    if kind == "none":
        return 0.0, 0.0
    slope = prob * (1 - prob)  # |d prob / d theta_1|
    if kind == "linear":
        return -weight * prob, -weight * slope
    # H(pi_T, pi_theta) = -(t log prob + (1 - t) log(1 - prob)); d/d logit of the preferred action: prob - t
    return -(teacher * math.log(prob) + (1 - teacher) * math.log(1 - prob)), prob - teacher


def _parts(theta: tuple[float, float], choice: Choice) -> dict[str, float]:
    """The policy, each state's loss and the derivatives the updates are made of."""
    p, q = _sigmoid(theta[0]), _sigmoid(theta[1])
    l_r, d_r = _state_loss(choice.sr, choice.sr_weight, choice.sr_teacher, q)
    l_l, d_l = _state_loss(choice.sl, choice.sl_weight, choice.sl_teacher, 1 - q)
    d_l = -d_l  # sL's preferred action is L, whose logit is -theta_1
    if choice.s0 == "none":
        l_0, d_0 = 0.0, 0.0
    else:
        l_0, d_0 = -0.5 * (math.log(p) + math.log(1 - p)), p - 0.5
    (r_ll, r_lr), (r_rl, r_rr) = REWARDS
    v_l, v_r = (1 - q) * r_ll + q * r_lr, (1 - q) * r_rl + q * r_rr
    return {"p": p, "q": q, "l_0": l_0, "l_l": l_l, "l_r": l_r, "d_0": d_0, "d_l": d_l, "d_r": d_r,
            "J": (1 - p) * v_l + p * v_r, "dJ_0": p * (1 - p) * (v_r - v_l),
            "dJ_1": q * (1 - q) * ((1 - p) * (r_lr - r_ll) + p * (r_rr - r_rl))}


def update(recipe: str, theta: tuple[float, float], choice: Choice = PAPER) -> tuple[float, float]:
    """The expected update ``u(theta)`` (parameters move by ``-lr u``). Both recipes weight each state's loss
    gradient by the student's visits (``1 - p`` to sL, ``p`` to sR) and, with ``env_reward``, subtract the
    return's gradient (REINFORCE); N-distill also credits the move between sL and sR with its change in loss,
    ``p (1 - p) (l_R - l_L)``, since its reward is the next state's negative loss."""
    if recipe not in RECIPES:
        raise ValueError(f"recipe: unknown {recipe!r}; allowed: {', '.join(RECIPES)}")
    x = _parts(theta, choice)
    p = x["p"]
    u_0 = x["d_0"]
    u_1 = (1 - p) * x["d_l"] + p * x["d_r"]
    if choice.env_reward:
        u_0 -= x["dJ_0"]
        u_1 -= x["dJ_1"]
    if recipe == "n_distill_r":
        u_0 += p * (1 - p) * (x["l_r"] - x["l_l"])
    return u_0, u_1


def expected_loss(theta: tuple[float, float], choice: Choice = PAPER) -> float:
    """``E[sum_t l(s_t)]`` under the student: the loss the paper's curves plot."""
    x = _parts(theta, choice)
    return x["l_0"] + (1 - x["p"]) * x["l_l"] + x["p"] * x["l_r"]


def expected_return(theta: tuple[float, float]) -> float:
    """The student's expected return ``J`` from the environment's rewards."""
    return _parts(theta, PAPER)["J"]


def objective(theta: tuple[float, float], choice: Choice = PAPER) -> float:
    """What N-distill (+ R) descends: the expected loss, minus the return when the rewards enter."""
    return expected_loss(theta, choice) - (expected_return(theta) if choice.env_reward else 0.0)


def conserved(theta: tuple[float, float]) -> float:
    """``cosh theta_0 + cosh theta_1`` (``1/(p(1-p)) + 1/(q(1-q)) = 4 + 2 (cosh theta_0 + cosh theta_1)``):
    constant along on-policy distill + R's continuous-time flow on the paper's toy. With
    ``dtheta_0/dt = p(1-p)(1-2q)`` and ``dtheta_1/dt = -q(1-q)(1-2p)``, and ``sinh x sigmoid'(x) = tanh(x/2)/2``,
    its rate of change is ``-tanh(theta_0/2) tanh(theta_1/2)/2 + tanh(theta_1/2) tanh(theta_0/2)/2 = 0``. Its
    level sets are closed curves around (0, 0), so every orbit is periodic; a finite step widens it."""
    return math.cosh(theta[0]) + math.cosh(theta[1])


def logit(prob: float) -> float:
    """The parameter whose sigmoid is ``prob``."""
    return math.log(prob / (1 - prob))


START = (logit(START_POLICY[0]), logit(START_POLICY[1]))


def path(recipe: str, choice: Choice = PAPER, lr: float = 0.1, steps: int = 20000,
         start: tuple[float, float] = START) -> np.ndarray:
    """``theta`` along exact updates from ``start``, ``[steps + 1, 2]``."""
    if lr <= 0:
        raise ValueError(f"lr: {lr}; allowed: lr > 0")
    theta = start
    out = np.empty((steps + 1, 2))
    out[0] = theta
    for k in range(1, steps + 1):
        u = update(recipe, theta, choice)
        theta = (theta[0] - lr * u[0], theta[1] - lr * u[1])
        out[k] = theta
    return out


def policy(theta_path: np.ndarray) -> np.ndarray:
    """``(pi(R|s0), pi(R|sR))`` along a path."""
    return 1.0 / (1.0 + np.exp(-theta_path))


def jacobian(recipe: str, theta: tuple[float, float], choice: Choice = PAPER, h: float = 1e-6) -> np.ndarray:
    """``du/dtheta`` at ``theta`` by central differences, ``[2, 2]`` (``[i, j] = du_i/dtheta_j``)."""
    jac = np.zeros((2, 2))
    for j in range(2):
        up, down = list(theta), list(theta)
        up[j] += h
        down[j] -= h
        jac[:, j] = (np.array(update(recipe, (up[0], up[1]), choice))
                     - np.array(update(recipe, (down[0], down[1]), choice))) / (2 * h)
    return jac


# ---- how a path ends ----------------------------------------------------------------------------------------

#: the policy has settled when neither probability moves more than this over the last third of the path
SETTLED = 1e-3
#: a cycle: at least this many periods of pi(R|s0), the last at least KEEPS of the first's amplitude
MIN_PERIODS = 10
KEEPS = 0.95
MIN_AMPLITUDE = 0.05


@dataclass(frozen=True)
class Orbit:
    """How a path's policy ends. ``kind``: ``converges`` (the policy moves less than :data:`SETTLED` over the
    last third), ``cycles`` (pi(R|s0) swings through at least :data:`MIN_PERIODS` periods and its last swing
    keeps :data:`KEEPS` of the first's amplitude: it neither shrinks nor settles), ``spirals in`` (it swings
    with a shrinking amplitude and has not settled yet) or ``drifts`` (none of these). ``amplitudes``: the
    peak-to-trough swing of pi(R|s0) in each period."""

    kind: str
    periods: int
    first_amplitude: float
    last_amplitude: float
    late_policy_motion: float
    end_policy: tuple[float, float]
    period_steps: float

    def to_dict(self) -> dict[str, object]:
        """JSON values, for the claims report."""
        return {"kind": self.kind, "periods": self.periods, "first_amplitude": round(self.first_amplitude, 4),
                "last_amplitude": round(self.last_amplitude, 4), "late_policy_motion": self.late_policy_motion,
                "end_policy": [round(x, 4) for x in self.end_policy], "period_steps": round(self.period_steps, 1)}


def orbit(probs: np.ndarray) -> Orbit:
    """Classify a policy path ``[T, 2]`` (pi(R|s0), pi(R|sR)) by how it ends."""
    late = probs[len(probs) * 2 // 3:]
    motion = float((late.max(0) - late.min(0)).max())
    p = probs[:, 0]
    d = np.diff(p)
    moving = np.flatnonzero(np.abs(d) > 1e-12)
    signs = np.sign(d[moving])
    turns = moving[1:][signs[1:] != signs[:-1]]  # indices where pi(R|s0) turns back
    peaks = [int(i) for i in turns if d[i] < 0]  # a fall after a rise: a local maximum at i
    amplitudes = [float(p[a:b + 1].max() - p[a:b + 1].min()) for a, b in itertools.pairwise(peaks)]
    first = amplitudes[0] if amplitudes else 0.0
    last = amplitudes[-1] if amplitudes else 0.0
    period = float(np.mean(np.diff(peaks))) if len(peaks) > 1 else float("nan")
    if motion < SETTLED:
        kind = "converges"
    elif len(amplitudes) >= MIN_PERIODS and last >= KEEPS * first and last > MIN_AMPLITUDE:
        kind = "cycles"
    elif len(amplitudes) >= 2 and last < KEEPS * first:
        kind = "spirals in"
    else:
        kind = "drifts"
    end = probs[-1]
    return Orbit(kind, len(amplitudes), first, last, motion, (float(end[0]), float(end[1])), period)


# ---- what the figures draw ----------------------------------------------------------------------------------

def policy_field(recipe: str, choice: Choice = PAPER, n: int = 21,
                 margin: float = 0.02) -> tuple[np.ndarray, ...]:
    """``(X, Y, U, V)``: the direction the flow moves the policy ``(pi(R|s0), pi(R|sR))`` on an n x n grid
    (``dp/dt = -p (1 - p) u_0``, ``dq/dt = -q (1 - q) u_1``)."""
    xs = np.linspace(margin, 1 - margin, n)
    grid_x, grid_y = np.meshgrid(xs, xs)
    u = np.zeros((2, n, n))
    for i, j in itertools.product(range(n), range(n)):
        p, q = float(grid_x[i, j]), float(grid_y[i, j])
        u_0, u_1 = update(recipe, (logit(p), logit(q)), choice)
        u[:, i, j] = [-p * (1 - p) * u_0, -q * (1 - q) * u_1]
    return grid_x, grid_y, u[0], u[1]


def curves(recipe: str, choice: Choice, lr: float, steps: int, start: tuple[float, float] = START,
           every: int = 1) -> dict[str, np.ndarray]:
    """What the paper plots over steps: pi(R|s0), pi(R|sR) and the expected loss, every ``every`` steps."""
    theta = path(recipe, choice, lr, steps, start)[::every]
    probs = policy(theta)
    return {"step": np.arange(0, steps + 1, every), "pi_R_s0": probs[:, 0], "pi_R_sR": probs[:, 1],
            "loss": np.array([expected_loss((float(a), float(b)), choice) for a, b in theta])}

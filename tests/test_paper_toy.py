"""The paper's Fig. 2 toy: its written-out updates against the exact engine and the objective they come from,
what on-policy distill + R conserves, and how paths are classified."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import variants as V
from study.tabular import exact
from study.tabular import generators as gen
from study.tabular import paper_toy as P

POINTS = [(0.0, 0.0), (1.3, -0.7), (-2.0, 2.5), (-1.99, -2.2)]
F64 = torch.float64


def engine_update(name: str, theta: tuple[float, float]) -> list[float]:
    """``exact.update_field`` of a catalogue variant on generators.two_step_toy, theta = (R's logit at s0, at
    sL and sR), with the cross-entropy toy's teacher."""
    mdp = gen.two_step_toy(F64)
    teacher = torch.tensor([P.CROSS_ENTROPY_LOGITS], dtype=F64)

    def logits(x: torch.Tensor) -> torch.Tensor:
        r = mdp.features @ x
        return torch.cat([torch.zeros_like(r), r], -1)

    return exact.update_field(V.variant(name), mdp, teacher, logits,
                              torch.tensor([[[theta[0]], [theta[1]]]], dtype=F64)).flatten().tolist()


@pytest.mark.parametrize("theta", POINTS)
def test_written_out_updates_match_the_exact_engine(theta):
    """Both recipes with cross-entropy in every state (+ R), and the REINFORCE term alone (no_teacher, whose
    update is minus the gradient of the return with the paper's rewards)."""
    for name in P.RECIPES:
        assert P.update(name, theta, P.CROSS_ENTROPY) == pytest.approx(engine_update(name, theta), abs=1e-12)
    reinforce = P.Choice(sr="none")
    assert P.update("on_policy_distill_r", theta, reinforce) == pytest.approx(engine_update("no_teacher", theta),
                                                                             abs=1e-12)
    no_r = P.Choice(s0="cross_entropy", sl="cross_entropy", sr="cross_entropy", sl_teacher=P.CROSS_ENTROPY.sl_teacher,
                    sr_teacher=P.CROSS_ENTROPY.sr_teacher, env_reward=False)
    assert P.update("on_policy_distill_r", theta, no_r) == pytest.approx(engine_update("on_policy_distill", theta),
                                                                        abs=1e-12)


@pytest.mark.parametrize("theta", POINTS)
def test_the_paper_toys_updates_have_their_closed_forms(theta):
    p, q = (1 / (1 + math.exp(-x)) for x in theta)
    assert P.update("on_policy_distill_r", theta) == pytest.approx(
        (-p * (1 - p) * (1 - 2 * q), q * (1 - q) * (1 - 2 * p)), abs=1e-12)
    assert P.update("n_distill_r", theta) == pytest.approx(
        (-p * (1 - p) * (1 + 2 * q), q * (1 - q) * (1 - 2 * p)), abs=1e-12)


@pytest.mark.parametrize("choice", [P.PAPER, P.CROSS_ENTROPY, P.Choice(sl="linear", env_reward=False)],
                         ids=lambda c: c.label())
@pytest.mark.parametrize("theta", POINTS)
def test_n_distill_descends_its_objective(choice, theta):
    """N-distill's update is the gradient of E[sum_t l(s_t)] - J (Theorem 2): compare with central differences."""
    h = 1e-6
    numeric = [(P.objective((theta[0] + h * (j == 0), theta[1] + h * (j == 1)), choice)
                - P.objective((theta[0] - h * (j == 0), theta[1] - h * (j == 1)), choice)) / (2 * h)
               for j in range(2)]
    assert np.allclose(P.update("n_distill_r", theta, choice), numeric, atol=1e-7)
    # on-policy distill + R is not a gradient field: its Jacobian is not symmetric
    jac = P.jacobian("on_policy_distill_r", (0.4, -0.2), choice)
    assert abs(jac[0, 1] - jac[1, 0]) > 1e-3


def test_on_policy_distill_r_conserves_cosh_sum_and_finite_steps_only_widen_the_orbit():
    rng = np.random.default_rng(1)
    for a, b in 3 * rng.standard_normal((50, 2)):
        u = P.update("on_policy_distill_r", (a, b))
        assert math.sinh(a) * u[0] + math.sinh(b) * u[1] == pytest.approx(0.0, abs=1e-12)
    # along SGD the invariant grows, by less at a smaller step: the widening is the step's, not the flow's
    growth = {}
    for lr in (0.05, 0.2):
        path = P.path("on_policy_distill_r", lr=lr, steps=round(2000 / lr))
        h = np.cosh(path).sum(1)
        assert np.all(np.diff(h) >= -1e-12)
        growth[lr] = h[-1] - h[0]
    assert 0 < growth[0.05] < growth[0.2] / 2
    # and its linearisation at (0, 0) is a centre: purely imaginary eigenvalues
    eig = np.linalg.eigvals(P.jacobian("on_policy_distill_r", (0.0, 0.0)))
    assert np.allclose(eig.real, 0, atol=1e-8) and np.allclose(abs(eig.imag), 0.125, atol=1e-8)


def test_the_paper_toy_cycles_on_policy_and_settles_n_distill_on_the_policy():
    on = P.orbit(P.policy(P.path("on_policy_distill_r", lr=0.3, steps=20000)))
    assert on.kind == "cycles" and on.periods >= P.MIN_PERIODS and on.first_amplitude > 0.8
    n_path = P.path("n_distill_r", lr=0.3, steps=20000)
    n = P.orbit(P.policy(n_path))
    assert n.kind == "converges" and min(n.end_policy) > 0.999
    assert n_path[-1].min() > 7  # while its parameters are still growing
    # the start is the figure's
    assert P.policy(np.array([P.START])) == pytest.approx(np.array([P.START_POLICY]))


def test_orbits_are_classified_by_how_the_policy_ends():
    t = np.linspace(0, 1, 4000)
    centre = 0.5 + 0.4 * np.stack([np.cos(80 * t), np.sin(80 * t)], -1)
    damped = 0.5 + 0.4 * np.exp(-3 * t)[:, None] * np.stack([np.cos(80 * t), np.sin(80 * t)], -1)
    still = 0.5 + 0.4 * np.exp(-40 * t)[:, None] * np.stack([np.cos(80 * t), np.sin(80 * t)], -1)
    drift = np.stack([0.1 + 0.8 * t, 0.5 + 0 * t], -1)
    kinds = [P.orbit(x).kind for x in (centre, damped, still, drift)]
    assert kinds == ["cycles", "spirals in", "converges", "drifts"]


def test_a_bad_choice_or_recipe_is_refused_with_what_is_allowed():
    with pytest.raises(ValueError, match="sl and sr one of none, linear, cross_entropy"):
        P.Choice(sl="quadratic")
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        P.Choice(sl="cross_entropy", sl_teacher=1.0)
    with pytest.raises(ValueError, match="unknown 'dagger'"):
        P.update("dagger", (0.0, 0.0))
    with pytest.raises(ValueError, match="allowed: lr > 0"):
        P.path("n_distill_r", lr=0.0)

"""The paper's Fig. 2 toy: its written-out updates against the objective they come from, and how paths end."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from study.tabular import paper_toy as P

POINTS = [(0.0, 0.0), (1.3, -0.7), (-2.0, 2.5)]


@pytest.mark.parametrize("choice", P.CHOICES[::2], ids=lambda c: c.label())
@pytest.mark.parametrize("theta", POINTS)
def test_n_distill_descends_the_expected_loss(choice, theta):
    """N-distill's update is the gradient of E[sum_t l(s_t)] (Theorem 2): compare with central differences."""
    h = 1e-6
    numeric = [(P.expected_loss((theta[0] + h * (j == 0), theta[1] + h * (j == 1)), choice)
                - P.expected_loss((theta[0] - h * (j == 0), theta[1] - h * (j == 1)), choice)) / (2 * h)
               for j in range(2)]
    assert np.allclose(P.update("n_distill", theta, choice), numeric, atol=1e-7)


@pytest.mark.parametrize("choice", P.CHOICES[::2], ids=lambda c: c.label())
def test_on_policy_distill_shares_theta_1s_update_and_leaves_theta_0_to_its_own_loss(choice):
    for theta in POINTS:
        on, n = P.update("on_policy_distill", theta, choice), P.update("n_distill", theta, choice)
        assert on[1] == pytest.approx(n[1], abs=1e-12)
        assert on[0] == pytest.approx(P.update("on_policy_distill", (theta[0], theta[1] + 3.0), choice)[0])
    assert P.triangular(choice) == 0.0
    # N-distill's field is a gradient (symmetric Jacobian); on-policy distill's is not
    jac = P.jacobian("n_distill", (0.4, -0.2), choice)
    assert abs(jac[0, 1] - jac[1, 0]) < 1e-6
    assert abs(P.jacobian("on_policy_distill", (0.4, -0.2), choice)[1, 0]) > 1e-3


def test_paths_are_classified_by_how_they_end():
    t = torch.linspace(0, 1, 300, dtype=torch.float64)
    still = torch.stack([1 - torch.exp(-40 * t), torch.zeros_like(t)], -1)
    running = torch.stack([torch.log1p(100 * t), t], -1)
    circling = torch.stack([torch.cos(60 * t), torch.sin(60 * t)], -1)
    assert [P.behaviour(p).kind for p in (still, running, circling)] == ["converges", "diverges", "cycles"]


def test_the_described_toy_runs_off_on_policy_and_settles_n_distill_only_with_bounded_losses():
    """With the linear losses of the description nothing has a finite minimiser; with cross-entropy in sL and s0
    both recipes settle: so no choice shows the paper's contrast (see the claim's evidence)."""
    linear = P.Choice(sl="linear", s0="none", lr=1.0)
    assert P.behaviour(P.path("on_policy_distill", linear, 4000)).kind == "diverges"
    bounded = P.Choice(sl="cross_entropy", s0="cross_entropy", lr=1.0)
    ends = {r: P.behaviour(P.path(r, bounded, 4000)) for r in P.RECIPES}
    assert ends["on_policy_distill"].kind == ends["n_distill"].kind == "converges"
    # N-distill ends where the expected loss is lower: it also moves the visits
    assert P.expected_loss(tuple(ends["n_distill"].theta), bounded) < \
        P.expected_loss(tuple(ends["on_policy_distill"].theta), bounded) - 0.5


def test_an_unknown_choice_is_refused_with_what_is_allowed():
    with pytest.raises(ValueError, match="allowed: sl linear or cross_entropy"):
        P.Choice(sl="quadratic")
    with pytest.raises(ValueError, match="0 < sl_teacher < 1"):
        P.Choice(sl="cross_entropy", sl_teacher=1.0)
    with pytest.raises(ValueError, match="unknown 'dagger'"):
        P.update("dagger", (0.0, 0.0))

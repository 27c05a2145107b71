"""`distill claims --quick`: every check runs and reports its evidence; the exact facts hold."""

from __future__ import annotations

import json

import pytest
import torch

from study.tabular.claims import CLAIMS, VERDICTS, run_claims, toy_trajectory

pytestmark = pytest.mark.slow  # the claim checks run the engines for minutes


@pytest.fixture(scope="module")
def quick_results():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {r.key: r for r in run_claims(quick=True)}
    finally:
        torch.set_num_threads(threads)


def test_every_claim_reports_a_verdict_with_evidence(quick_results):
    assert list(quick_results) == [c.key for c in CLAIMS]
    for r in quick_results.values():
        assert r.verdict in VERDICTS
        assert r.reference and r.summary
        assert "threshold" in r.evidence  # the verdict says what it was measured against
        json.dumps(r.to_dict())  # serialisable as written by --json


@pytest.mark.parametrize("key", [
    "theorem1_on_policy_not_gradient",
    "theorem2_symmetric",
    "proposition1_tabular_converges",
    "entropy_regularised_argmax",
    "entropy_regularised_shorter_episodes",
])
def test_exact_facts_hold_in_quick_mode(quick_results, key):
    assert quick_results[key].holds, quick_results[key].summary


def test_quick_mode_does_not_fail_fig4_for_action_counts_it_did_not_run(quick_results):
    """--quick covers 4 and 40 actions only: the action-scaling claim is not evaluated, not failed."""
    r = quick_results["fig4_action_scaling"]
    assert r.verdict == "not evaluated" and r.evidence["actions"] == [4, 40] and not r.failed


def test_verdicts_are_as_strict_as_their_claims():
    """A claim of several parts is "partly" when some hold; "about 3x" is not "faster"."""
    from study.tabular.claims import ABOUT_3X, _parts

    assert _parts(True, True) == "yes" and _parts(True, False) == "partly" and _parts(False, False) == "no"
    assert ABOUT_3X[0] > 1.0 and ABOUT_3X[0] <= 3.0 <= ABOUT_3X[1]


def test_claims_are_deterministic(quick_results):
    again = run_claims(quick=True, only=["proposition1_tabular_converges", "fig3_student_driven_faster"])
    for r in again:
        assert r.evidence == quick_results[r.key].evidence


def test_fig2_toy_n_distill_r_settles():
    """N-distill + R is a gradient field: its parameters stop moving."""
    teacher = torch.tensor([[[0.0, 0.0], [3.0, 0.0], [0.0, 3.0], [0.0, 0.0]]], dtype=torch.float64)
    path = toy_trajectory("n_distill_r", teacher, 1500)
    late = path[-300:]
    assert (late.max(0).values - late.min(0).values).max() < 1e-6
    assert (path[1] - path[0]).abs().max() > 1e-3  # and it did move at first

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


@pytest.mark.parametrize(("ratio", "student_misses", "verdict"), [
    (3.0, False, "yes"),  # about 3x faster
    (1.4, False, "partly"),  # faster, but not about 3x
    (1.0, False, "no"),  # no faster
    (3.0, True, "no"),  # student-driven never gets there on one grid: not faster
])
def test_fig3_check_grades_its_own_measurements(monkeypatch, ratio, student_misses, verdict):
    """The Fig. 3 check's verdict from its own code path, on iterations-to-target the engine is made to give:
    teacher-driven ``ratio`` times slower than student-driven on every grid."""
    import types

    from study.tabular import claims

    monkeypatch.setattr(claims, "distill", lambda mdp, teacher, variants, plan, config: types.SimpleNamespace(
        plan=plan))

    def first(curves, frac):
        grid = curves.plan.mdp_index.to(torch.float64)
        student = 100.0 + 20.0 * grid
        steps = torch.where(curves.plan.variant_index == 0, ratio * student, student)
        if student_misses:
            steps[(curves.plan.variant_index == 1).nonzero()[0]] = float("inf")
        return steps

    monkeypatch.setattr(claims, "_iterations_to_reach", first)
    got, summary, evidence = claims.check_student_driven_faster(quick=True)
    assert got == verdict, summary
    if not student_misses:
        assert evidence["ratio_teacher_over_student"] == pytest.approx(ratio)


@pytest.mark.parametrize(("er_last", "gap", "verdict"), [
    (0.3, 0.05, "yes"),  # ER loses 0.7 of the return; expected ER within 0.1 of on-policy distill
    (0.3, 0.15, "partly"),  # expected ER strays beyond the tolerance at one action count
    (0.9, 0.05, "partly"),  # ER barely degrades
    (0.9, 0.15, "no"),
])
def test_fig4_check_grades_its_own_measurements(monkeypatch, er_last, gap, verdict):
    """The Fig. 4 check's verdict from its own code path, with the tolerance it states ("stays close": within
    0.1 of on-policy distill at every action count), on final returns the engine is made to give."""
    import types

    from study.tabular import claims

    monkeypatch.setattr(claims.gen, "gridworld", lambda n, size, n_actions, seed: types.SimpleNamespace(
        n_actions=n_actions))
    monkeypatch.setattr(claims.T, "value_iteration", lambda mdp: None)

    def run(mdp, teacher, variants, plan, config):
        most = mdp.n_actions == max(claims.FIG4_ACTIONS)
        er, opd = (er_last if most else 1.0), 0.8
        eer = opd - (gap if mdp.n_actions == 40 else 0.0)
        final = torch.tensor([er, eer, opd], dtype=torch.float64)[plan.variant_index]
        return types.SimpleNamespace(plan=plan, normalised_return=lambda: final.unsqueeze(0))

    monkeypatch.setattr(claims, "distill", run)
    got, summary, evidence = claims.check_action_scaling(quick=False)
    assert got == verdict, summary
    assert max(evidence["expected_gap_to_on_policy"]) == pytest.approx(gap)


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

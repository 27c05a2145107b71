"""`distill claims --quick`: every check runs and reports its evidence; the exact facts hold."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from study.tabular.claims import CLAIMS, VERDICTS, run_claims

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


def _fig3_inputs(ratio: float, spread: float = 0.0, uniform: float = 4.0, kl_own: bool = True,
                 student_misses: bool = False) -> tuple[dict, dict]:
    """Iterations to the target on 40 grids (teacher-driven ``ratio`` times student-driven, times a factor that
    varies by ``spread`` from grid to grid; uniform ``uniform`` times) and KL areas where each arm is lowest
    under its own states (``kl_own``) or the teacher-driven arm is lowest everywhere."""
    rng = np.random.default_rng(0)
    student = 100.0 + 20.0 * np.arange(40)
    noise = np.exp(spread * rng.standard_normal(40))
    noise /= noise.mean()  # the point estimate stays at ratio
    first = {"teacher": ratio * student * noise, "student": student.copy(), "uniform": uniform * student}
    if student_misses:
        first["student"][3] = np.inf
    kl = {}
    for own, metric in (("teacher", "kl_teacher"), ("student", "kl_student"), ("uniform", "kl_uniform")):
        low = own if kl_own else "teacher"
        kl[metric] = {arm: np.full(40, 0.1 if arm == low else 0.3) for arm in ("teacher", "student", "uniform")}
    return first, kl


@pytest.mark.parametrize(("inputs", "verdict"), [
    (dict(ratio=3.0), "yes"),  # about 3x faster, every interval tight, uniform slowest, KL as the paper
    (dict(ratio=1.4), "partly"),  # faster, but not about 3x
    (dict(ratio=3.0, spread=1.5), "partly"),  # about 3x on the point estimate, the interval too wide
    (dict(ratio=3.0, uniform=0.5), "partly"),  # uniform control is not the slowest
    (dict(ratio=3.0, kl_own=False), "partly"),  # teacher-driven wins on KL everywhere
    (dict(ratio=3.0, student_misses=True), "partly"),  # student-driven never gets there on one grid
    (dict(ratio=1.0, uniform=0.5, kl_own=False), "no"),
])
def test_fig3_check_grades_its_own_measurements(inputs, verdict):
    """The Fig. 3 check's grading on iterations-to-target and KL areas it is given: "about 3x" needs the 95%
    interval of the ratio inside [2, 4.5], and uniform slowest and the KL part count."""
    from study.tabular import claims

    got, evidence = claims._fig3_grade(*_fig3_inputs(**inputs), every=10)
    assert got == verdict, evidence
    if inputs.get("spread", 0) > 0:
        assert evidence["about_3x_point_inside"] and not evidence["about_3x_interval_inside"]


@pytest.mark.parametrize(("er_last", "gap", "verdict"), [
    (0.3, 0.05, "yes"),  # ER loses 0.7 of the return; expected ER within 0.1 of on-policy distill
    (0.3, 0.15, "partly"),  # expected ER strays beyond the tolerance at one action count
    (0.9, 0.05, "partly"),  # ER barely degrades
    (0.9, 0.15, "no"),
])
def test_fig4_check_grades_its_own_measurements(er_last, gap, verdict):
    """The Fig. 4 grading with the tolerance it states ("stays close": within 0.1 of on-policy distill at every
    action count), on final returns it is given; fewer counts than the paper's are not evaluated."""
    from study.tabular import claims

    counts = list(claims.FIG4_ACTIONS)
    finals = {"entropy_regularised": [1.0, 1.0, 1.0, er_last], "on_policy_distill": [0.8] * 4,
              "expected_entropy_regularised": [0.8, 0.8 - gap, 0.8, 0.8]}
    got, evidence = claims._fig4_grade(finals, counts)
    assert got == verdict, evidence
    assert max(evidence["expected_gap_to_on_policy"]) == pytest.approx(gap)
    assert claims._fig4_grade({k: v[:2] for k, v in finals.items()}, counts[:2])[0] == "not evaluated"


def test_claims_are_deterministic(quick_results):
    again = run_claims(quick=True, only=["proposition1_tabular_converges", "fig3_student_driven_faster"])
    for r in again:
        assert r.evidence == quick_results[r.key].evidence


def test_the_fig2_checks_can_say_no(monkeypatch):
    """Given the cross-entropy toy as "the paper's", the paper-toy check finds no cycle; given the paper's toy as
    the cross-entropy one, that check finds no damping (and the written-out updates no longer match the engine's,
    whose loss is a cross-entropy)."""
    from study.tabular import claims, paper_toy

    paper, ce = paper_toy.PAPER, paper_toy.CROSS_ENTROPY
    monkeypatch.setattr(paper_toy, "PAPER", ce)
    verdict, _, evidence = claims.check_fig2_paper_toy(quick=True)
    assert verdict == "partly"
    assert {o["kind"] for o in evidence["on_policy_distill_r_orbits"].values()} == {"converges"}
    monkeypatch.setattr(paper_toy, "CROSS_ENTROPY", paper)
    verdict, _, evidence = claims.check_fig2_cross_entropy_toy(quick=True)
    assert verdict == "partly" and evidence["written_out_vs_exact_engine_max_gap"] > 1e-3
    assert {o["kind"] for o in evidence["on_policy_distill_r_orbits"].values()} == {"cycles"}


def test_fig5_fig6_and_rusu_checks_grade_their_measurements_and_can_say_no(tmp_path, monkeypatch):
    from study.tabular import claims

    uniform, optimum, teacher = np.zeros(4), np.full(4, 10.0), np.full(4, 4.0)
    paper = {"on_policy_distill": teacher + 0.1, "on_policy_distill_r": np.full(4, 9.0),
             "on_policy_distill_r_vcond": np.full(4, 9.5), "teacher_v_reward": np.full(4, 9.8)}
    assert claims._fig5_grade(paper, teacher, uniform, optimum)[0] == "yes"
    vcond_worse = {**paper, "on_policy_distill_r_vcond": np.full(4, 8.0)}
    assert claims._fig5_grade(vcond_worse, teacher, uniform, optimum)[0] == "partly"
    nothing = {k: teacher + 3.0 for k in paper}  # no arm copies the teacher, none rises above the others
    nothing["on_policy_distill_r_vcond"] = teacher
    assert claims._fig5_grade(nothing, teacher, uniform, optimum)[0] == "no"

    adversary, best = -1.0, 0.8
    copies = {k: np.full(3, adversary) for k in claims.FIG6_CLONES} | {"teacher_v_reward": np.full(3, best)}
    assert claims._fig6_grade(copies, adversary, best)[0] == "yes"
    stuck = {**copies, "teacher_v_reward": np.full(3, adversary)}
    assert claims._fig6_grade(stuck, adversary, best)[0] == "partly"
    assert claims._fig6_grade({k: np.full(3, best) for k in copies} | {"teacher_v_reward": np.full(3, adversary)},
                              adversary, best)[0] == "no"

    order = {"a": {"rusu_kl": 0.9, "rusu_nll": 0.8, "rusu_mse": 0.7}}
    assert claims._rusu_grade(order)[0] == "yes"
    assert claims._rusu_grade({"a": {"rusu_kl": 0.5, "rusu_nll": 0.8, "rusu_mse": 0.9}})[0] == "no"
    monkeypatch.setattr(claims, "RESULTS", tmp_path)  # no analysis there: not evaluated, not held
    verdict, _, _ = claims.check_rusu_loss_order(quick=False)
    assert verdict == "not evaluated"
    table = tmp_path / "rusu_pong" / "analysis" / "tables"
    table.mkdir(parents=True)
    table.joinpath("aggregates.csv").write_text("arm,statistic,estimate\nrusu_kl,mean,0.7\nrusu_nll,mean,0.6\n"
                                                "rusu_mse,mean,0.95\n")
    verdict, summary, _ = claims.check_rusu_loss_order(quick=False)
    assert verdict == "no" and "not in the paper's order" in summary


def test_fig3_grading_ranks_misses_before_means_and_reads_kl_as_the_paper_words_it():
    """Uniform control is slowest only when it misses the target on more grids, or as many and is slower where
    every arm got there (one miss makes a mean infinite, so means alone would tie); teacher-driven "wins only
    under its own states" fails when it is lowest everywhere or nowhere."""
    from study.tabular import claims

    first, kl = _fig3_inputs(ratio=3.0)
    first["teacher"][:2] = np.inf  # teacher-driven misses two grids, uniform one
    first["uniform"][5] = np.inf
    _, evidence = claims._fig3_grade(first, kl, every=10)
    assert not evidence["uniform_slowest"] and evidence["missed_target"] == {"teacher": 2, "student": 0,
                                                                             "uniform": 1}
    first, kl = _fig3_inputs(ratio=3.0)
    kl["kl_uniform"]["student"] = np.full(40, 0.01)  # student lowest under uniform states: the claim still holds
    assert claims._fig3_grade(first, kl, every=10)[1]["teacher_driven_wins_on_kl_only_under_its_states"]
    kl["kl_teacher"]["student"] = np.full(40, 0.01)  # teacher-driven no longer lowest under its own
    assert not claims._fig3_grade(first, kl, every=10)[1]["teacher_driven_wins_on_kl_only_under_its_states"]


def test_fig4_grading_does_not_pass_a_gap_it_could_not_measure():
    from study.tabular import claims

    finals = {"entropy_regularised": [1.0, 0.8, 0.5, 0.2], "on_policy_distill": [0.9] * 4,
              "expected_entropy_regularised": [0.9, float("nan"), 0.9, 0.9]}
    verdict, evidence = claims._fig4_grade(finals, list(claims.FIG4_ACTIONS))
    assert verdict == "partly" and not evidence["expected_stays_close"]

"""`distill analyze` on a real (small) study folder with finished, failed and missing cells."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from analysis.analyze import Options, analyze
from analysis.load import AnalysisError, load_results
from study.cli import app
from study.run.checks import check_study
from study.run.runner import run_study
from study.spec import parse_study

SMALL = """
name = "small"
seeds = 2
[fixed]
mdps = 3
iterations = 12
eval_every = 4
max_steps = 40
tau = 0.3
[factors]
variant = ["on_policy_distill", "teacher_distill", "entropy_regularised"]
size = [5, 6]
"""
FAST = ["--reps", "200", "--permutations", "199"]
runner = CliRunner()


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> tuple[Path, str, str]:
    """A study with one failed cell (it raises) and one missing cell (its folder removed)."""
    import study.run.batch as cells_module

    root = tmp_path_factory.mktemp("analysis") / "small"
    study = parse_study(SMALL)
    failing, missing = study.cells[1], study.cells[4]
    real = cells_module.run_cells

    def flaky(cells, device="cpu", partial=None, progress=None):
        if any(c.id == failing.id for c in cells):
            raise RuntimeError("deliberate failure")
        return real(cells, device, partial, progress)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cells_module, "run_cells", flaky)
        report = run_study(study, root, workers=1)
    assert report.failed == [failing.id]
    shutil.rmtree(root / missing.id)
    return root, failing.id, missing.id


def test_loading_counts_every_cell_and_keeps_failures_visible(folder):
    root, failing, missing = folder
    r = load_results(root)
    status = r.cells.set_index("cell")["status"]
    assert len(r.cells) == 12 and status[failing] == "failed" and status[missing] == "missing"
    assert (status == "done").sum() == 10
    assert "deliberate failure" in r.errors[failing]
    assert r.arm_keys == ["variant"] and r.task_keys == ["size"]
    assert r.arms == ["on_policy_distill", "teacher_distill", "entropy_regularised"]
    assert r.tasks == ["size=5", "size=6"]
    counts = r.counts().set_index("arm")
    assert counts.to_numpy().sum() == 12 and counts[["failed", "missing"]].to_numpy().sum() == 2
    assert len(r.runs) == 10 * 3  # one run per MDP of each finished cell
    done = r.cells[r.cells["status"] == "done"]
    by_cell = r.runs.groupby("cell")["return_norm"].mean()
    assert done.set_index("cell")["final_return_norm"].to_dict() == pytest.approx(by_cell.to_dict())
    assert r.cells.loc[r.cells["status"] != "done", "final_return_norm"].isna().all()
    assert set(r.runs["cell"]) == set(status[status == "done"].index)


def test_scores_are_normalised_between_random_and_teacher_with_optimal_shown(folder):
    runs = load_results(folder[0]).runs
    expected = (runs["return"] - runs["random_score"]) / (runs["teacher_score"] - runs["random_score"])
    np.testing.assert_allclose(runs["return_norm"], expected, rtol=1e-5, atol=1e-6)
    # a softmax teacher (tau 0.3) is no better than optimal: the optimal policy sits at or above 1
    assert (runs["optimal_norm"] >= 1 - 1e-6).all() and (runs["optimal_score"] >= runs["teacher_score"] - 1e-6).all()


@pytest.fixture(scope="module")
def analysed(folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("out") / "analysis"
    analyze(folder[0], out, Options(reps=200, permutations=199, plan_seeds=True))
    return out


def test_report_tables_and_figures_are_written(analysed, folder):
    for name in ("aggregates", "final", "improvement", "tests", "anova", "curve_metrics", "status", "failed",
                 "seed_plan", "per_task", "references"):
        for suffix in (".csv", ".md", ".tex"):
            assert (analysed / "tables" / f"{name}{suffix}").stat().st_size > 20, name
    assert "\\toprule" in (analysed / "tables" / "aggregates.tex").read_text()
    for name in ("aggregates", "profiles", "improvement", "interaction", "curves", "kl_layout"):
        for suffix in (".png", ".pdf"):
            assert (analysed / "figures" / f"{name}{suffix}").stat().st_size > 2000, name
    md = (analysed / "report.md").read_text()
    assert "1 failed" in md and "1 missing" in md and folder[1] in md and "deliberate failure" in md
    assert "figures/aggregates.png" in md
    page = (analysed / "report.html").read_text()
    assert page.count("data:image/png;base64,") == len(list((analysed / "figures").glob("*.png")))
    assert "src='figures/" not in page and 'src="figures/' not in page  # nothing to fetch: opens alone


def test_aggregate_table_matches_a_direct_computation(analysed, folder):
    runs = load_results(folder[0]).runs
    agg = pd.read_csv(analysed / "tables" / "aggregates.csv")
    for arm, sub in runs.groupby("arm"):
        row = agg[(agg["arm"] == arm) & (agg["statistic"] == "mean")].iloc[0]
        assert row["estimate"] == pytest.approx(sub["return_norm"].mean())
        assert row["lo"] <= row["estimate"] <= row["hi"] and row["runs"] == len(sub)
        med = agg[(agg["arm"] == arm) & (agg["statistic"] == "median")].iloc[0]
        # rliable's median: over tasks, of each task's mean
        assert med["estimate"] == pytest.approx(sub.groupby("task")["return_norm"].mean().median())


def test_anova_covers_factors_and_their_interaction(analysed):
    anova = pd.read_csv(analysed / "tables" / "anova.csv")
    assert list(anova["term"]) == ["variant", "size", "variant:size", "Residual"]
    terms = anova[anova["term"] != "Residual"]
    assert terms["p"].between(0, 1).all() and terms["p_perm"].between(0, 1).all()
    assert terms["partial_eta_sq"].between(0, 1).all()


def test_tests_cover_every_pair_within_each_task_over_mdps(analysed, folder):
    tests = pd.read_csv(analysed / "tables" / "tests.csv")
    assert len(tests) == 3 * 2  # 3 pairs x 2 tasks, one Holm family
    assert (tests["p_t_holm"] >= tests["p_t"] - 1e-12).all()
    # every seed trains on the same 3 MDPs: the units are the MDPs (seeds averaged), not 6 runs
    assert set(tests["n_a"]) <= {3} and set(tests["n_b"]) <= {3}
    runs = load_results(folder[0]).runs
    row = tests.iloc[0]
    sub = runs[(runs["arm"] == row["a"]) & (runs["task"] == row["task"])]
    assert row["mean_a"] == pytest.approx(sub.groupby("mdp")["return_norm"].mean().mean())
    md = (analysed / "report.md").read_text()
    assert "then the seeds within each drawn MDP" in md and "no MDP block, since a task factor" in md


def test_analysis_is_deterministic_and_replaces_its_previous_output(folder, analysed, tmp_path):
    out = tmp_path / "again"
    analyze(folder[0], out, Options(reps=200, permutations=199, plan_seeds=True))
    for name in ("aggregates.csv", "improvement.csv", "anova.csv", "tests.csv", "seed_plan.csv"):
        assert (out / "tables" / name).read_bytes() == (analysed / "tables" / name).read_bytes(), name
    (out / "tables" / "stale.csv").write_text("old")
    analyze(folder[0], out, Options(reps=200, permutations=199))
    assert not (out / "tables" / "stale.csv").exists() and not (out / "tables" / "seed_plan.csv").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left


def test_cli_with_baseline_factors_and_seed_planning(folder, tmp_path):
    out = tmp_path / "a"
    args = ["analyze", str(folder[0]), "--out", str(out), "--baseline", "teacher_distill", "--factors",
            "variant,size", "--facet", "size", "--plan-seeds", "--delta", "0.1", *FAST]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert str(out / "report.html") in result.stdout.replace("\n", "")
    tests = pd.read_csv(out / "tables" / "tests.csv")
    assert set(tests["b"]) == {"teacher_distill"} and len(tests) == 2 * 2
    plan = pd.read_csv(out / "tables" / "seed_plan.csv")
    assert (plan["delta"] == 0.1).all() and (plan["units_needed"] >= 2).all() and len(plan) == 2 * 2
    assert json.loads((out / "analysis.json").read_text())["options"]["baseline"] == "teacher_distill"


@pytest.mark.parametrize(("args", "message"), [
    (["--metric", "reward"], "allowed: agreement"),
    (["--baseline", "nope"], "allowed: on_policy_distill; teacher_distill; entropy_regularised"),
    (["--factors", "variant,lr"], "allowed: variant, size"),
    (["--facet", "lr"], "allowed: variant, size, task"),
    (["--reps", "5"], "allowed: a whole number >= 100"),
    (["--power", "1.5"], "allowed: between 0 and 1"),
])
def test_bad_options_exit_2_and_write_nothing(folder, tmp_path, args, message):
    out = tmp_path / "a"
    result = runner.invoke(app, ["analyze", str(folder[0]), "--out", str(out), *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr.replace("\n", "")
    assert not out.exists()


def test_a_folder_that_is_not_a_study_is_refused(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("x")
    for target in (tmp_path / "notes", tmp_path / "absent"):
        result = runner.invoke(app, ["analyze", str(target)])
        assert result.exit_code == 2 and "study results folder" in result.stderr
    assert sorted(p.name for p in (tmp_path / "notes").iterdir()) == ["keep.txt"]


def test_out_folder_with_other_contents_is_refused(folder, tmp_path):
    other = tmp_path / "mine"
    other.mkdir()
    (other / "paper.tex").write_text("keep")
    with pytest.raises(AnalysisError, match="not written by `distill analyze`"):
        analyze(folder[0], other, Options(reps=200, permutations=199))
    assert sorted(p.name for p in other.iterdir()) == ["paper.tex"]


def test_a_study_with_no_finished_cell_still_reports_its_status(tmp_path):
    study = parse_study(SMALL)
    from study.store.store import Store

    Store.open(tmp_path / "empty", study).write_manifest(check_study(study))
    outcome = analyze(tmp_path / "empty", None, Options(reps=200, permutations=199))
    md = outcome.report_md.read_text()
    assert outcome.missing == 12 and "No finished cells yet" in md


UNEVEN = """
name = "uneven"
seeds = 1
[fixed]
mdps = 2
iterations = 4
eval_every = 2
max_steps = 30
[factors]
variant = ["on_policy_distill", "teacher_distill"]
size = [5, 6]
[[exclude]]
variant = "teacher_distill"
size = 6
"""


def test_arms_on_different_tasks_are_compared_on_the_tasks_they_share(tmp_path):
    root = tmp_path / "uneven"
    run_study(parse_study(UNEVEN), root, workers=1)
    out = analyze(root, None, Options(reps=200, permutations=199)).out
    md = (out / "report.md").read_text()
    assert "Arms cover different tasks" in md and "(size=5)" in md
    agg = pd.read_csv(out / "tables" / "aggregates.csv")
    assert (agg["tasks"] == 1).all()  # on_policy_distill's size=6 runs are left out of the comparison
    per_task = pd.read_csv(out / "tables" / "per_task.csv")
    assert list(per_task.columns) == ["arm", "size=5", "size=6"]
    with pytest.raises(AnalysisError, match="has no finished runs"):
        shutil.rmtree(next(c for c in root.iterdir() if (c / "config.json").is_file()
                           and json.loads((c / "config.json").read_text())["params"]["variant"] == "teacher_distill"))
        analyze(root, None, Options(reps=200, permutations=199, baseline="teacher_distill"))


FACETED = """
name = "faceted"
seeds = 1
[fixed]
size = 5
mdps = 1
iterations = 2
eval_every = 1
max_steps = 20
[factors]
variant = ["on_policy_distill", "teacher_distill"]
tau = [0.1, 1.0]
[[include]]
variant = "n_distill"
tau = 0.1
n_step = 2
"""


def test_faceted_figures_colour_an_arm_alike_in_every_row(tmp_path):
    from analysis.analyze import _for_plot, _plot_arms

    run_study(parse_study(FACETED), tmp_path / "faceted", workers=1)
    results = load_results(tmp_path / "faceted")
    assert results.arms == ["on_policy_distill, tau=0.1", "on_policy_distill, tau=1.0", "teacher_distill, tau=0.1",
                            "teacher_distill, tau=1.0", "n_distill, tau=0.1, n_step=2"]
    # by tau: one colour per variant across the rows; the n-step cell keeps its own
    assert _plot_arms(results, "tau") == ["on_policy_distill", "teacher_distill", "n_distill, n_step=2"]
    # by variant: the remaining keys
    assert _plot_arms(results, "variant") == ["tau=0.1", "tau=1.0", "tau=0.1, n_step=2"]
    # a task facet or none leaves the arms as they are
    assert _plot_arms(results, "task") == results.arms == _plot_arms(results, None)
    frame = _for_plot(results.curves, results, "tau")
    by_arm = dict(zip(results.curves["arm"].astype(str), frame["variant"], strict=True))
    assert by_arm["teacher_distill, tau=1.0"] == "teacher_distill" and frame["tau"].notna().all()


def _analysed_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _analyse_elsewhere(source: Path, elsewhere: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    """Copy a study folder (cells and manifest only: no study file, no teachers) to another place and
    analyse it there, from a working folder that holds nothing else."""
    elsewhere.mkdir()
    shutil.copytree(source, elsewhere / source.name, ignore=shutil.ignore_patterns("analysis", "study.toml"))
    monkeypatch.chdir(elsewhere)
    out = analyze(Path(source.name), None, Options(reps=200, permutations=199)).out
    return _analysed_files(out)


def test_a_copied_folder_analyses_the_same_byte_for_byte_without_its_study_or_teachers(tmp_path, monkeypatch):
    """A network study: its cells hash teacher files the copy does not have, and its study file names one."""
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    teacher = here / "teacher.pt"
    shutil.copy(Path(__file__).resolve().parent.parent / "results" / "teachers" / "minatar-breakout.pt", teacher)
    study = parse_study(f"""
name = "copied"
tier = "minatar"
seeds = 2
[fixed]
game = "breakout"
teacher_file = "{teacher}"
iterations = 2
eval_every = 1
eval_episodes = 4
rollout = 4
num_envs = 2
[factors]
variant = ["rusu_kl", "on_policy_distill"]
""")
    assert not run_study(study, Path("r"), workers=1).failed
    original = _analysed_files(analyze(Path("r"), None, Options(reps=200, permutations=199)).out)
    assert "figures/imitation.png" in original  # agreement and KL on the student's states along training
    teacher.unlink()
    copied = _analyse_elsewhere(here / "r", tmp_path / "there", monkeypatch)
    assert copied.keys() == original.keys() and "tables/final.csv" in copied
    assert [name for name in original if copied[name] != original[name]] == []


def test_a_tabular_folder_copied_elsewhere_analyses_the_same(folder, tmp_path, monkeypatch):
    here = tmp_path / "here"
    shutil.copytree(folder[0], here / folder[0].name, ignore=shutil.ignore_patterns("analysis"))
    monkeypatch.chdir(here)
    original = _analysed_files(analyze(Path(folder[0].name), None, Options(reps=200, permutations=199)).out)
    copied = _analyse_elsewhere(here / folder[0].name, tmp_path / "there", monkeypatch)
    assert copied.keys() == original.keys() and "tables/final.csv" in copied
    assert [name for name in original if copied[name] != original[name]] == []


def test_a_folder_without_a_manifest_says_what_to_do(tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "study.json").write_text('{"name": "x", "fingerprint": "0"}')
    with pytest.raises(AnalysisError, match=r"older version.*distill grid run"):
        load_results(tmp_path / "old")
    with pytest.raises(AnalysisError, match=r"no study\.json"):
        load_results(tmp_path)


def test_references_show_each_arms_teacher_when_the_arms_teachers_differ():
    """Where an arm's factor changes the teacher (its temperature), the references table has a row per arm;
    otherwise one per task."""
    import types

    from analysis.analyze import _references

    runs = pd.DataFrame({"task": ["g"] * 4, "arm": ["tau=0", "tau=0", "tau=0.1", "tau=0.1"],
                         "random_score": [-5.0] * 4, "teacher_score": [8.0, 8.2, 7.0, 7.2],
                         "optimal_score": [8.5] * 4})
    table = _references(types.SimpleNamespace(runs=runs, tasks=["g"], arms=["tau=0", "tau=0.1"]))
    assert list(table["arm"]) == ["tau=0", "tau=0.1"]
    assert table["teacher_score"].tolist() == pytest.approx([8.1, 7.1])
    same = runs.assign(teacher_score=8.0)
    table = _references(types.SimpleNamespace(runs=same, tasks=["g"], arms=["tau=0", "tau=0.1"]))
    assert "arm" not in table and table["teacher_score"].tolist() == [8.0]

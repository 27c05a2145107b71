"""The command line: output formats, exit codes, and nothing half-written on bad input."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from study.cli import app
from study.cli.demo import demo_study

DEMO_VARIANTS = tuple(demo_study().spec.factors["variant"])

runner = CliRunner()


def test_variants_json_lists_the_catalogue():
    result = runner.invoke(app, ["variants", "--json"])
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    names = {r["name"] for r in rows}
    assert {"teacher_distill", "on_policy_distill", "n_distill", "rusu_kl", "dagger"} <= names
    for r in rows:
        assert {"name", "control", "loss", "reward", "gradient_field", "reference"} <= set(r)
        assert isinstance(r["gradient_field"], bool)


def test_variants_table_prints_every_name():
    result = runner.invoke(app, ["variants"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for name in ("teacher_distill", "expected_entropy_regularised", "on_policy_distill_r_vcond"):
        assert name in result.stdout


def test_every_command_has_help_with_an_example():
    for args in (["variants"], ["claims"], ["demo"], ["bench", "tabular"]):
        result = runner.invoke(app, [*args, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0
        assert "Example: distill" in result.stdout


def test_unknown_claim_exits_2_and_names_the_allowed_ones():
    result = runner.invoke(app, ["claims", "--only", "no_such_claim"])
    assert result.exit_code == 2
    assert "no_such_claim" in result.stderr and "theorem1_on_policy_not_gradient" in result.stderr


def test_claims_json_and_exit_status(tmp_path):
    path = tmp_path / "claims.json"
    result = runner.invoke(app, ["claims", "--quick", "--only", "theorem2_symmetric", "--json", str(path)])
    data = json.loads(path.read_text())
    assert [c["key"] for c in data["claims"]] == ["theorem2_symmetric"]
    claim = data["claims"][0]
    assert {"claim", "reference", "verdict", "holds", "evidence", "summary"} <= set(claim)
    assert result.exit_code == (1 if claim["verdict"] in ("no", "partly") else 0)


FIG3_TINY = """name = "fig3_tiny"
tier = "tabular"
seeds = 1
[fixed]
variant = "teacher_distill"
teacher = "q_learning_explored"
generator = "paper_gridworld"
size = 6
mdps = 4
iterations = 400
eval_every = 20
optimizer = "sgd"
lr = 0.5
max_steps = 100
[factors]
control = ["teacher", "student", "uniform"]
tau = [0.0, 0.1]
"""


@pytest.mark.slow
def test_claims_grade_fig3_on_a_finished_study(tmp_path):
    """--fig3-results grades each temperature of a study of Fig. 3's arms by the claim's own rule; a study of
    other arms is refused with what is allowed."""
    study = tmp_path / "fig3_tiny.toml"
    study.write_text(FIG3_TINY)
    out = tmp_path / "fig3_tiny"
    assert runner.invoke(app, ["grid", "run", str(study), "--out", str(out), "--workers", "1"]).exit_code == 0
    path = tmp_path / "claims.json"
    result = runner.invoke(app, ["claims", "--only", "theorem2_symmetric", "--fig3-results", str(out),
                                 "--json", str(path)])
    graded = [c for c in json.loads(path.read_text())["claims"] if c["key"].startswith("fig3")]
    assert [c["key"] for c in graded] == ["fig3_student_driven_faster@fig3_tiny/tau=0",
                                          "fig3_student_driven_faster@fig3_tiny/tau=0.1"]
    for c in graded:
        assert c["verdict"] in ("yes", "partly", "no") and c["evidence"]["mdps"] == 4
        assert set(c["evidence"]["mean_iterations_to_target"]) == {"teacher", "student", "uniform"}
    assert result.exit_code == (0 if all(c["verdict"] == "yes" for c in graded) else 1)
    demo = tmp_path / "demo"
    runner.invoke(app, ["demo", "--out", str(demo), "--mdps", "2", "--seeds", "1", "--iterations", "4",
                        "--workers", "1"])
    result = runner.invoke(app, ["claims", "--only", "theorem2_symmetric", "--fig3-results", str(demo)])
    assert result.exit_code == 2 and "not a study of Fig. 3's arms" in result.stderr


@pytest.mark.slow
def test_claims_figures_draws_the_fig2_toy_phase_portrait(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = runner.invoke(app, ["claims", "--only", "theorem2_symmetric", "--figures", str(blocker)])
    assert result.exit_code == 2 and "allowed: a folder" in result.stderr
    figures = tmp_path / "figures"
    result = runner.invoke(app, ["claims", "--quick", "--only", "theorem2_symmetric", "--figures", str(figures)],
                           env={"COLUMNS": "400"})
    assert result.exit_code in (0, 1), result.output
    for name in ("fig2_paper_toy", "fig2_paper_toy_curves", "fig2_cross_entropy_toy", "fig2_cross_entropy_toy_curves"):
        assert f"{figures / name}.png" in result.stdout
        assert (figures / f"{name}.png").stat().st_size > 2000 and (figures / f"{name}.pdf").is_file()


def test_demo_runs_the_demo_study_and_ends_with_its_report(tmp_path):
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--mdps", "2", "--seeds", "2", "--iterations", "4", "--workers", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"report: {out / 'analysis' / 'report.html'}" in result.stdout.replace("\n", "")
    final = pd.read_csv(out / "analysis" / "tables" / "final.csv")
    assert list(dict.fromkeys(final["arm"])) == list(DEMO_VARIANTS)
    assert final.loc[final["metric"] == "return_norm", "mean"].notna().all()
    assert len(list(out.glob("*/summary.json"))) == len(DEMO_VARIANTS) * 2  # one cell per variant and seed
    for name in ("analysis/report.html", "analysis/report.md", "analysis/figures/curves.png", "study.toml"):
        assert (out / name).stat().st_size > 100
    assert not [p for p in out.iterdir() if p.name.startswith(".") and p.name != ".lock"]  # no temporary files
    again = runner.invoke(app, args)  # resumable: nothing left to run, same numbers
    assert again.exit_code == 0 and pd.read_csv(out / "analysis" / "tables" / "final.csv").equals(final)


@pytest.mark.parametrize("args", [["--mdps", "0"], ["--iterations", "0"], ["--seeds", "0"]])
def test_demo_bad_input_exits_2_and_writes_nothing(tmp_path, args):
    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "--out", str(out), *args])
    assert result.exit_code == 2
    assert "out of range" in result.stderr
    assert not out.exists()


def test_demo_refuses_folders_it_did_not_write(tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "keep.txt").write_text("keep me")
    result = runner.invoke(app, ["demo", "--out", str(notes), "--mdps", "1", "--seeds", "1", "--iterations", "2"])
    assert result.exit_code == 2 and "not a study results folder" in result.stderr
    assert sorted(p.name for p in notes.iterdir()) == ["keep.txt"]
    out = tmp_path / "demo"
    small = ["demo", "--out", str(out), "--mdps", "1", "--seeds", "1", "--workers", "1"]
    assert runner.invoke(app, [*small, "--iterations", "2"]).exit_code == 0
    other = runner.invoke(app, [*small, "--iterations", "3"])  # a different study definition
    assert other.exit_code == 2 and "another study definition" in other.stderr


def test_unwritable_json_is_refused_before_any_work(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = runner.invoke(app, ["claims", "--only", "theorem2_symmetric", "--json", str(blocker / "x.json")])
    assert result.exit_code == 2 and "cannot write" in result.stderr
    result = runner.invoke(app, ["bench", "tabular", "--loop-mdps", "0"])
    assert result.exit_code == 2 and "--loop-mdps" in result.stderr


def test_bench_stats_runs_and_bench_atari_refuses_bad_sizes(tmp_path):
    result = runner.invoke(app, ["bench", "stats", "--reps", "200", "--json", str(tmp_path / "s.json")])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "s.json").read_text())
    assert data["reps"] == 200 and data["variants"] == 12 and data["resamples_per_second"] > 0
    bad = runner.invoke(app, ["bench", "atari", "--envs", "0"])
    assert bad.exit_code == 2 and "allowed: envs >= 1" in bad.stderr
    bad = runner.invoke(app, ["bench", "atari", "--device", "tpu"])
    assert bad.exit_code == 2 and "allowed: auto, cpu, cuda" in bad.stderr


def test_atari_loop_profile_splits_the_step_into_parts_against_the_budget(capsys):
    """The profile that `bench atari` prints: every part of the loop's per-step work timed, their sum, the
    floor of that sum spread over the cores, and the measured loop against twice the emulator's time."""
    from study.bench import profile_loop
    from study.cli.bench import _print_profile
    from study.network.envs import EnvSpec

    p = profile_loop(EnvSpec("atari", "pong", frame_cap=400), 4, 0.5, raw_fps=8_000.0, loop_fps=2_000.0, reps=2)
    assert len(p.parts) == 5 and all(us > 0 for us in p.parts.values())
    assert p.parts[next(iter(p.parts))] == pytest.approx(500.0)  # the emulator: 4 frames at 8,000 frames/s
    assert p.cpu_us == pytest.approx(sum(p.parts.values())) and p.floor_us == pytest.approx(p.cpu_us / p.cores)
    assert p.budget_us == pytest.approx(1_000.0) and p.loop_us == pytest.approx(2_000.0)
    assert p.over_budget_us == pytest.approx(1_000.0)
    _print_profile(p)
    printed = capsys.readouterr().out
    assert "teacher forward pass (batch of 2" in printed and "over the budget by 1,000 us" in printed


def test_bench_tabular_study_times_both_engines_and_estimates_the_study(tmp_path):
    """`bench tabular --study` times a real study's first arms with this engine and the previous code path,
    and estimates the whole study from the runner's tasks; a study of another tier is refused."""
    result = runner.invoke(app, ["bench", "tabular", "--study", "demo", "--mdps", "2", "--iterations", "3",
                                 "--reference-iterations", "2", "--json", str(tmp_path / "b.json")])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "b.json").read_text())
    assert data["study"] == "demo" and data["arms"] == 21 and data["mdps"] == 2
    assert data["study_instances"] == 21 * 20 and data["study_iterations"] == 300 and data["study_evaluations"] == 16
    for part in (data["now"], data["before"]):
        assert part["train_rate"] > 0 and part["study_seconds"] > 0
    assert data["ratio"] == pytest.approx(data["before"]["study_seconds"] / data["now"]["study_seconds"])
    assert data["device"] == "cpu"
    bad = runner.invoke(app, ["bench", "tabular", "--study", "rusu_losses", "--mdps", "2"])
    assert bad.exit_code == 2 and "not a tabular study" in bad.stderr
    # --device says where the previous code path runs: it needs --study, and a device that is there
    bad = runner.invoke(app, ["bench", "tabular", "--device", "cuda"])
    assert bad.exit_code == 2 and "--device needs --study" in bad.stderr
    bad = runner.invoke(app, ["bench", "tabular", "--study", "demo", "--device", "tpu"])
    assert bad.exit_code == 2 and "allowed: auto, cpu, cuda" in bad.stderr


def test_claims_print_their_evidence_as_written(monkeypatch):
    """Square brackets in a claim's evidence are printed, not read as markup."""
    from study.tabular import claims

    result = claims.ClaimResult("k", "a claim", "a paper", "partly", "ER [0.9, nan] and [bold]x[/bold]",
                                {"threshold": "t"})
    monkeypatch.setattr(claims, "run_claims", lambda quick, only, on_done: [result])
    out = runner.invoke(app, ["claims"], env={"COLUMNS": "400"})
    assert out.exit_code == 1 and "ER [0.9, nan] and [bold]x[/bold]" in out.stdout


@pytest.mark.parametrize(("verdicts", "code"), [(["yes", "not evaluated"], 0), (["yes", "partly"], 1),
                                                (["not evaluated", "no"], 1)])
def test_claims_exit_zero_only_when_every_evaluated_claim_holds(monkeypatch, verdicts, code):
    """A claim not evaluated is reported as such and never counts as held; one that is partly or not held
    fails the command."""
    from study.tabular import claims

    results = [claims.ClaimResult(f"k{i}", "a claim", "a paper", v, "evidence", {"threshold": "t"})
               for i, v in enumerate(verdicts)]
    monkeypatch.setattr(claims, "run_claims", lambda quick, only, on_done: results)
    out = runner.invoke(app, ["claims"], env={"COLUMNS": "400"})
    assert out.exit_code == code
    if "not evaluated" in verdicts:
        assert "not evaluated in this run" in out.stdout
    if code == 0:
        assert "all 1 claims evaluated hold" in out.stdout

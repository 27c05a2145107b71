"""The grid runner and its store: resume after SIGKILL, failure isolation, backends agree."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from study.cli import app
from study.run.checks import check_study
from study.run.runner import run_study
from study.spec import StudyError, parse_study
from study.store.store import Store

TINY = """
name = "tiny"
seeds = 2
[fixed]
size = 5
mdps = 2
iterations = 12
eval_every = 4
max_steps = 40
[factors]
variant = ["on_policy_distill", "teacher_v_reward"]
tau = [0.1, 1.0]
"""

# several MDP groups, so a single worker writes cells batch after batch
STAGED = """
name = "staged"
seeds = 1
[fixed]
mdps = 2
iterations = 60
eval_every = 20
max_steps = 60
[factors]
size = [5, 6, 7, 8, 9, 10]
variant = ["on_policy_distill", "teacher_distill"]
"""

runner = CliRunner()


def _finals(root: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text())["final"] for p in root.glob("*/summary.json")}


def test_run_then_rerun_skips_finished_cells(tmp_path):
    study = parse_study(TINY)
    report = run_study(study, tmp_path / "r", workers=1)
    assert len(report.done) == 8 and not report.failed
    cell = tmp_path / "r" / study.cells[0].id
    for name in ("config.json", "metrics.parquet", "summary.json", "provenance.json"):
        assert (cell / name).is_file()
    metrics = pd.read_parquet(cell / "metrics.parquet")
    assert set(metrics.columns) == {"cell", "mdp", "step", "metric", "value"}
    assert set(metrics["step"]) == {0, 4, 8, 12}
    prov = json.loads((cell / "provenance.json").read_text())
    assert {"git_commit", "git_dirty", "python", "torch", "gymnasium", "ale-py", "host", "wall_seconds"} <= set(prov)
    again = run_study(study, tmp_path / "r", workers=1)
    assert again.skipped == 8 and not again.done
    assert (tmp_path / "r" / "study.toml").read_text() == TINY


def test_a_cell_run_alone_equals_the_same_cell_in_a_batch(tmp_path):
    study = parse_study(TINY)
    run_study(study, tmp_path / "r", workers=1)
    before = _finals(tmp_path / "r")
    victim = study.cells[3].id
    import shutil

    shutil.rmtree(tmp_path / "r" / victim)
    report = run_study(study, tmp_path / "r", workers=1)
    assert report.done == [victim]
    assert _finals(tmp_path / "r") == before


def test_smaller_batches_write_the_same_cells(tmp_path, monkeypatch):
    """--batch-cells splits the work into more tasks (each written when it ends) and changes no number;
    0 is refused before anything is written, and the resume line keeps the setting. --device is for network
    cells: a tabular study says that it runs on the CPU."""
    import study.run.runner as runner_module
    from study.cli.grid import resume_command

    study = parse_study(TINY)
    run_study(study, tmp_path / "whole", workers=1)
    tasks: list[int] = []
    real = runner_module.batches
    monkeypatch.setattr(runner_module, "batches", lambda *a: tasks.append(len(real(*a))) or real(*a))
    result = runner.invoke(app, ["grid", "run", str(_write(tmp_path, TINY)), "--out", str(tmp_path / "split"),
                                 "--workers", "1", "--batch-cells", "3", "--device", "auto"])
    assert result.exit_code == 0, result.output
    assert "a tabular study runs on the CPU" in result.stderr  # --device is for networks; said, not ignored
    assert tasks == [3]  # 8 cells sharing their MDPs: 3 + 3 + 2
    assert _finals(tmp_path / "split") == _finals(tmp_path / "whole")
    bad = runner.invoke(app, ["grid", "run", str(_write(tmp_path, TINY)), "--out", str(tmp_path / "bad"),
                              "--batch-cells", "0"])
    assert bad.exit_code == 2 and "allowed: batch_cells >= 1" in bad.stderr and not (tmp_path / "bad").exists()
    assert resume_command("tiny", tmp_path, "local", None, 1, "cpu", [], 3).endswith("--workers 1 --batch-cells 3")


def _write(folder: Path, text: str) -> Path:
    path = folder / "study.toml"
    path.write_text(text)
    return path


def test_another_study_in_the_same_folder_is_refused(tmp_path):
    run_study(parse_study(TINY), tmp_path / "r", workers=1)
    other = parse_study(TINY.replace("iterations = 12", "iterations = 13"))
    with pytest.raises(StudyError, match="another study definition"):
        run_study(other, tmp_path / "r", workers=1)
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "x.txt").write_text("mine")
    with pytest.raises(StudyError, match="not a study results folder"):
        run_study(parse_study(TINY), notes, workers=1)
    # comments and key order do not make a study different
    same = parse_study("# a comment\n" + TINY.replace("size = 5\nmdps = 2", "mdps = 2\nsize = 5"))
    assert run_study(same, tmp_path / "r", workers=1).skipped == 8


def test_a_failing_cell_is_recorded_and_the_rest_goes_on(tmp_path, monkeypatch):
    import study.run.batch as cells_module

    real = cells_module.run_cells
    study = parse_study(TINY)
    raising = study.cells[1]  # raises inside the batch
    nan = study.cells[6]  # produces NaN metrics

    def flaky(cells, device="cpu", partial=None, progress=None):
        if any(c.id == raising.id for c in cells):
            raise RuntimeError("boom")
        results = real(cells, device, partial, progress)
        for cell, (_, summary) in zip(cells, results, strict=True):
            if cell.id == nan.id:
                summary.final["kl_teacher"] = float("nan")
        return results

    monkeypatch.setattr(cells_module, "run_cells", flaky)
    report = run_study(study, tmp_path / "r", workers=1)
    assert sorted(report.failed) == sorted([raising.id, nan.id]) and len(report.done) == 6
    errors = {c: json.loads((tmp_path / "r" / c / "error.json").read_text()) for c in report.failed}
    assert "boom" in errors[raising.id]["error"] and "RuntimeError" in errors[raising.id]["traceback"]
    assert "non-finite" in errors[nan.id]["error"]
    assert not any((tmp_path / "r" / c / "summary.json").exists() for c in report.failed)
    assert sorted(Store(tmp_path / "r").status(study.cells)["failed"]) == sorted(report.failed)
    assert run_study(study, tmp_path / "r", workers=1).done == []  # failed cells wait for --retry-failed
    monkeypatch.setattr(cells_module, "run_cells", real)
    retried = run_study(study, tmp_path / "r", workers=1, retry_failed=True)
    assert sorted(retried.done) == sorted(report.failed) and not retried.failed


@pytest.mark.slow
def test_resume_after_sigkill_equals_an_uninterrupted_run(tmp_path):
    study_file = tmp_path / "staged.toml"
    study_file.write_text(STAGED)
    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "study.cli", "grid", "run", str(study_file), "--out", str(killed),
           "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(killed.glob("*/summary.json"))) < 2:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = _finals(killed)
    assert 0 < len(partial) < 12, "the kill should land mid-grid"
    result = runner.invoke(app, ["grid", "run", str(study_file), "--out", str(killed), "--workers", "1"])
    assert result.exit_code == 0, result.output
    resumed = _finals(killed)
    assert len(resumed) == 12
    assert all(resumed[k] == v for k, v in partial.items())  # nothing finished was lost or redone
    clean = tmp_path / "clean"
    run_study(parse_study(STAGED), clean, workers=1)
    assert resumed == _finals(clean)
    assert not list(killed.glob(".tmp-*"))


@pytest.mark.slow
def test_ray_and_local_backends_give_identical_results(tmp_path):
    study = parse_study(TINY)  # ray is a dependency: this runs for real in CI
    run_study(study, tmp_path / "local", workers=2, backend="local")
    run_study(study, tmp_path / "ray", workers=2, backend="ray")
    local, ray_ = _finals(tmp_path / "local"), _finals(tmp_path / "ray")
    assert len(local) == 8 and local == ray_
    for cell in study.cells:
        a = pd.read_parquet(tmp_path / "local" / cell.id / "metrics.parquet")
        b = pd.read_parquet(tmp_path / "ray" / cell.id / "metrics.parquet")
        assert a.equals(b)


def test_grid_cli_status_and_bad_input(tmp_path):
    study_file = tmp_path / "tiny.toml"
    study_file.write_text(TINY)
    out = tmp_path / "r"
    result = runner.invoke(app, ["grid", "run", str(study_file), "--out", str(out), "--workers", "1"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["grid", "status", str(out)], env={"COLUMNS": "120"})
    assert result.exit_code == 0 and "done" in result.stdout and "8" in result.stdout
    assert runner.invoke(app, ["grid", "status", str(tmp_path)]).exit_code == 2
    assert runner.invoke(app, ["grid", "run", str(study_file), "--backend", "spark"]).exit_code == 2
    assert runner.invoke(app, ["grid", "run", str(study_file), "--workers", "0"]).exit_code == 2


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_says_how_to_resume(tmp_path):
    study_file = tmp_path / "staged.toml"
    study_file.write_text(STAGED)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "study.cli", "grid", "run", str(study_file), "--out", str(out), "--workers", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline and not list(out.glob("*/summary.json")):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "Resume with: distill grid run" in output
    kept = _finals(out)
    assert kept  # what finished before Ctrl-C is kept
    report = run_study(parse_study(STAGED), out, workers=1)
    assert report.skipped >= len(kept) and len(_finals(out)) == 12


@pytest.mark.slow
def test_a_dying_worker_fails_its_batch_and_the_grid_goes_on(tmp_path):
    study_file = tmp_path / "staged.toml"
    study_file.write_text(STAGED)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "study.cli", "grid", "run", str(study_file), "--out", str(out), "--workers", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    victim = None
    while time.time() < deadline and victim is None:
        markers = list(out.glob(".running-*"))  # `distill grid status` counts these as running
        if markers:
            victim = int(markers[0].name.rpartition("-")[2])
        time.sleep(0.02)
    assert victim is not None
    state = Store(out).status(parse_study(STAGED).cells)
    assert state["running"]
    os.kill(victim, signal.SIGKILL)
    output, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, output
    report = run_study(parse_study(STAGED), out, workers=1)
    assert not report.done  # nothing was left missing: the dead worker's cells are recorded as failed
    failed = Store(out).status(parse_study(STAGED).cells)["failed"]
    assert failed and "worker process died" in json.loads((out / failed[0] / "error.json").read_text())["error"]
    retried = run_study(parse_study(STAGED), out, workers=1, retry_failed=True)
    assert sorted(retried.done) == sorted(failed) and len(_finals(out)) == 12


def test_a_second_run_on_the_same_folder_is_refused(tmp_path):
    store = Store.open(tmp_path / "r", check_study(parse_study(TINY)))
    with store.exclusive(), pytest.raises(StudyError, match="another run is writing"):
        run_study(parse_study(TINY), tmp_path / "r", workers=1)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the refusal when no GPU is present")
def test_grid_run_on_a_missing_gpu_is_refused_before_anything_is_written(tmp_path):
    result = runner.invoke(app, ["grid", "run", "demo", "--out", str(tmp_path / "r"), "--device", "cuda"])
    assert result.exit_code == 2 and "no GPU is present" in result.stderr
    assert not (tmp_path / "r").exists()


def test_reuse_copies_the_cells_another_study_finished(tmp_path):
    first = run_study(parse_study(TINY), tmp_path / "a", workers=1)
    wider = parse_study(TINY.replace('name = "tiny"', 'name = "wider"').replace("tau = [0.1, 1.0]",
                                                                                  "tau = [0.1, 1.0, 0.5]"))
    report = run_study(wider, tmp_path / "b", workers=1, reuse=[tmp_path / "a"])
    assert report.reused == len(first.done) == 8 and len(report.done) == 4
    copied = [p for p in (tmp_path / "b").glob("*/provenance.json") if "copied_from" in json.loads(p.read_text())]
    assert len(copied) == 8
    ours, theirs = _finals(tmp_path / "b"), _finals(tmp_path / "a")
    assert all(ours[k] == v for k, v in theirs.items())
    config = json.loads((tmp_path / "b" / copied[0].parent.name / "config.json").read_text())
    assert config["params"]["tau"] in (0.1, 1.0)


def test_reuse_of_a_folder_that_holds_no_results_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["grid", "run", "demo", "--out", str(tmp_path / "r"), "--reuse",
                                 str(tmp_path / "empty")])
    assert result.exit_code == 2 and "not a results folder" in result.output
    assert not (tmp_path / "r").exists()


def test_reuse_skips_cells_that_failed_or_cannot_be_read_there(tmp_path):
    run_study(parse_study(TINY), tmp_path / "a", workers=1)
    cells = sorted(p.parent for p in (tmp_path / "a").glob("*/summary.json"))
    (cells[0] / "summary.json").unlink()  # not finished there
    (cells[1] / "provenance.json").unlink()  # finished but incomplete
    (cells[2] / "config.json").write_text("{not json")
    report = run_study(parse_study(TINY), tmp_path / "b", workers=1, reuse=[tmp_path / "a"])
    assert report.reused == 5 and len(report.done) == 3 and not report.failed
    assert not list((tmp_path / "b").glob(".tmp-*"))


def test_grid_run_says_when_reuse_copied_nothing(tmp_path):
    run_study(parse_study(TINY), tmp_path / "a", workers=1)
    study = tmp_path / "other.toml"
    study.write_text(TINY.replace('name = "tiny"', 'name = "other"').replace("size = 5", "size = 6"))
    result = runner.invoke(app, ["grid", "run", str(study), "--out", str(tmp_path / "b"), "--workers", "1",
                                 "--reuse", str(tmp_path / "a")])
    assert result.exit_code == 0 and "0 copied from --reuse" in result.output


def test_an_interrupted_batch_resumes_from_its_partial_state(tmp_path, monkeypatch):
    """A batch writes its training state under .partial/ while it trains; killed and run again, it continues
    from there (the engine is called with that state) and gives the numbers of an uninterrupted run; the
    state is removed once every cell is written."""
    import study.run.tabular as tabular
    from study.run.batch import run_batch
    from study.store.format import partial_path

    study = check_study(parse_study(TINY))
    cells = [c for c in study.cells if c.params.get("tau") == 0.1]
    clean = tmp_path / "clean"
    Store.open(clean, study)
    run_batch(str(clean), cells)

    root = tmp_path / "run"
    Store.open(root, study)
    monkeypatch.setattr(tabular, "PARTIAL_SECONDS", 0.0)
    real = tabular.distill
    calls: list[dict | None] = []

    def stopped(*args, **kwargs):
        calls.append(kwargs.get("resume"))
        if len(calls) == 1:
            def stop(done: int) -> None:
                if done == 7:
                    raise KeyboardInterrupt  # as a killed worker: no Python cleanup runs
            kwargs["progress"] = stop
        return real(*args, **kwargs)

    monkeypatch.setattr(tabular, "distill", stopped)
    with pytest.raises(KeyboardInterrupt):
        run_batch(str(root), cells)
    state = partial_path(root, [c.id for c in cells])
    assert state.is_file() and not any(Store(root).is_done(c.id) for c in cells)
    assert run_batch(str(root), cells) == [(c.id, "done") for c in cells]
    assert calls[0] is None and calls[1] is not None and calls[1]["iteration"] == 6
    assert not state.exists()
    assert _finals(root) == _finals(clean)
    for c in cells:
        a = pd.read_parquet(root / c.id / "metrics.parquet")
        b = pd.read_parquet(clean / c.id / "metrics.parquet")
        pd.testing.assert_frame_equal(a, b)


def test_a_running_batch_reports_its_iterations_through_its_markers(tmp_path, monkeypatch):
    """A long batch says how far it has got: its markers hold (iterations done, total), which `grid status`
    and the run's display read; they are gone when the batch ends."""
    import study.run.tabular as tabular
    from study.run import progress as reporting
    from study.run.batch import run_batch
    from study.store import format as F

    study = check_study(parse_study(TINY))
    cells = [c for c in study.cells if c.params.get("tau") == 0.1]
    root = tmp_path / "run"
    Store.open(root, study).write_manifest(study)
    monkeypatch.setattr(reporting, "PROGRESS_SECONDS", 0.0)
    seen: list[dict] = []
    real = tabular.distill

    def watched(*args, **kwargs):
        report = kwargs["progress"]

        def both(done: int) -> None:
            report(done)
            seen.append(F.running_progress(root))
        kwargs["progress"] = both
        return real(*args, **kwargs)

    monkeypatch.setattr(tabular, "distill", watched)
    run_batch(str(root), cells)
    assert [s[cells[0].id][:2] for s in seen] == [(i, 12) for i in range(1, 13)]
    assert all(set(s) == {c.id for c in cells} for s in seen)
    assert F.describe_progress(seen[4]).startswith(f"{len(cells)} running, at iteration 5 of 12")
    assert F.running_progress(root) == {} and F.describe_progress({}) == ""
    # grid status shows a live batch's progress (a marker of this process, as a worker writes it)
    (root / f"{F.RUNNING_PREFIX}{cells[0].id}-{os.getpid()}").write_text("300 1000")
    result = runner.invoke(app, ["grid", "status", str(root)], env={"COLUMNS": "120"})
    assert result.exit_code == 0 and "1 running, at iteration 300 of 1,000" in result.stdout, result.stdout
    assert "done in" not in result.stdout  # a marker that does not say when its process began tells no rate


def test_a_running_marker_tells_the_time_left_from_the_rate_since_its_process_began(tmp_path):
    """A batch that resumed part-way is timed from where this process began, not from iteration 0: 200
    iterations (100 to 300) in 200 s leave 700 iterations, about 12 min; a batch that has not yet moved
    tells no time, and the display waits until every running cell can tell it."""
    from study.store import format as F

    study = check_study(parse_study(TINY))
    Store.open(tmp_path, study).write_manifest(study)
    began = time.time() - 200
    moving = tmp_path / f"{F.RUNNING_PREFIX}{'a' * 16}-{os.getpid()}"
    moving.write_text(F.progress_line(300, 1000, 100, began))
    os.utime(moving, (began + 200, began + 200))
    progress = F.running_progress(tmp_path, now=began + 200)
    assert progress["a" * 16] == (300, 1000, pytest.approx(700.0, abs=0.1))
    assert F.running_progress(tmp_path, now=began + 260)["a" * 16].seconds_left == pytest.approx(640.0, abs=0.1)
    assert F.describe_progress(progress) == "1 running, at iteration 300 of 1,000, the slowest done in about 12 min"
    result = runner.invoke(app, ["grid", "status", str(tmp_path)], env={"COLUMNS": "120"})
    assert "at iteration 300 of 1,000, the slowest done in about 12 min" in result.stdout, result.stdout
    still = tmp_path / f"{F.RUNNING_PREFIX}{'b' * 16}-{os.getpid()}"
    still.write_text(F.progress_line(100, 1000, 100, began))
    assert F.running_progress(tmp_path)["b" * 16].seconds_left is None
    assert F.describe_progress(F.running_progress(tmp_path)) == "2 running, at iteration 100 of 1,000"


@pytest.mark.parametrize(("seconds", "said"), [(20, "under a minute"), (3125, "about 52 min"),
                                               (11_400, "about 3 h 10 min"), (3600, "about 1 h")])
def test_time_left_is_said_as_a_person_says_it(seconds, said):
    from study.store import format as F

    assert F.describe_seconds(seconds) == said

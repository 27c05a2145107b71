"""Study files: validation, grid expansion, exclusions and inclusions, stable cell ids."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from study.cli import app
from study.run.checks import check_study
from study.spec import StudyError, builtin_studies, load_study, parse_study

BASE = """
name = "t"
seeds = 2
[fixed]
size = 5
mdps = 2
iterations = 3
[factors]
variant = ["on_policy_distill", "n_distill", "teacher_v_reward"]
tau = [0.1, 1.0]
"""


def test_full_product_times_seeds():
    study = parse_study(BASE)
    assert study.points == 6 and len(study.cells) == 12
    points = {(c.params["variant"], c.params["tau"]) for c in study.cells}
    assert len(points) == 6
    assert {c.seed for c in study.cells} == {0, 1}
    assert all(c.params["size"] == 5 and c.params["generator"] == "gridworld" for c in study.cells)


def test_exclude_and_include():
    text = BASE + """
[[exclude]]
variant = "teacher_v_reward"
tau = 1.0
[[exclude]]
variant = ["n_distill"]
[[include]]
variant = "rusu_kl"
tau = 0.01
"""
    study = parse_study(text)
    points = {(c.params["variant"], c.params["tau"]) for c in study.cells}
    assert points == {("on_policy_distill", 0.1), ("on_policy_distill", 1.0), ("teacher_v_reward", 0.1),
                      ("rusu_kl", 0.01)}


def test_cell_ids_are_stable_and_distinct():
    a = parse_study(BASE)
    reordered = BASE.replace("size = 5\nmdps = 2", "mdps = 2\nsize = 5")
    b = parse_study(reordered)
    assert [c.id for c in a.cells] == [c.id for c in b.cells]  # key order in the file does not matter
    assert len({c.id for c in a.cells}) == len(a.cells)
    cell = a.cells[0]
    text = json.dumps({"identity": cell.identity(), "seed": cell.seed}, sort_keys=True, separators=(",", ":"))
    assert cell.id == hashlib.sha256(text.encode()).hexdigest()[:16]
    assert cell.identity()["variant"]["loss"] == cell.variant.loss  # the resolved recipe, not its spelling
    changed = parse_study(BASE.replace("iterations = 3", "iterations = 4"))
    assert not {c.id for c in changed.cells} & {c.id for c in a.cells}


def test_cells_build_their_variants():
    study = parse_study(BASE.replace('"teacher_v_reward"', '"rusu_kl"') + "\n")
    for cell in study.cells:
        v = cell.variant
        assert v.tau == cell.params["tau"]
    parts = parse_study('name = "p"\n[fixed]\ncontrol = "mixture"\nbeta = 0.5\nloss = "jsd"\njsd_beta = 0.3\n')
    v = parts.cells[0].variant
    assert v.control.kind == "mixture" and v.control.beta == 0.5 and v.loss == "jsd" and v.jsd_beta == 0.3


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ('name = "x"\n[factors]\nvariant = ["nope"]', "unknown variant 'nope'; allowed"),
        ('name = "x"\n[factors]\ntau = [-1.0]', "tau: -1.0 is out of range"),
        ('name = "x"\n[fixed]\nsize = 2', "'size'"),
        ('name = "x"\n[fixed]\nsizee = 2', "unknown key 'sizee' for tier 'tabular'; allowed"),
        ('name = "x"\nfoo = 1', "unknown key 'foo'"),
        ('name = "x"\n[factors]\ntau = []', "empty list"),
        ('name = "x"\n[factors]\nvariant = ["n_distill"]\n[[exclude]]\nvariant = "n_distill"', "grid is empty"),
        ('name = "x"\n[fixed]\nloss = "none"\nreward = "none"', "meaningless variant"),
        ('name = "x" x', "malformed TOML"),
        ('name = "x"\nseeds = 0', "seeds"),
        ('name = "x"\ntier = "snes"', "tier"),
        ('name = "x"\ntier = "atari"', "set either 'game'"),
        ('name = "x"\ntier = "minatar"\n[fixed]\ngame = "pong"', "allowed: breakout"),
        ('name = "x"\ntier = "minatar"\n[fixed]\ngame = "breakout"\nsize = 5', "unknown key 'size' for tier"),
        ('name = "x"\ntier = "minatar"\n[fixed]\ngame = "breakout"\nreplay = 10', "allowed: replay >= num_envs"),
        ('name = "x"\ntier = "minatar"\n[fixed]\ngame = "breakout"\nprecision = "fp16"', "'fp32' or 'bf16'"),
        ('name = "x"\ntier = "minatar"\n[fixed]\ngame = "breakout"\nteacher_file = "no/such.pt"',
         "no such teacher file"),
        ('name = "x"\n[fixed]\nsize = 3.5', "'size'"),
        ('name = "x"\n[fixed]\nenv_reward = "yes"', "env_reward"),
        ('name = "x"\n[fixed]\ntau = 0.1\n[factors]\ntau = [0.2]', "both fixed and a factor"),
        ('name = "x"\n[fixed]\nstudent = "linear"', "student"),
        ('[fixed]\nsize = 5', "name"),
    ],
)
def test_bad_studies_name_the_problem(text, expect):
    with pytest.raises(StudyError, match=r"bad\.toml") as info:
        check_study(parse_study(text, "bad.toml"))
    assert expect in str(info.value)


def test_builtin_demo_study_matches_the_demo():
    assert "demo" in builtin_studies()
    study = load_study("demo")
    assert study.points == 7 and len(study.cells) == 21
    assert {c.params["mdps"] for c in study.cells} == {20}


def test_grid_plan_cli(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["grid", "plan", "demo"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "7 grid points x 3 seeds" in result.stdout and load_study("demo").cells[0].id in result.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[fixed]\nsize = 2\n')
    result = runner.invoke(app, ["grid", "plan", str(bad)])
    assert result.exit_code == 2 and "bad.toml" in result.stderr and "size" in result.stderr
    result = runner.invoke(app, ["grid", "plan", str(tmp_path / "missing.toml")])
    assert result.exit_code == 2 and "no such study file" in result.stderr


def test_grid_run_with_a_bad_study_writes_nothing(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[factors]\nvariant = ["on_policy_distill", "nope"]\n')
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["grid", "run", str(bad), "--out", str(out)])
    assert result.exit_code == 2 and "unknown variant 'nope'" in result.stderr
    assert not out.exists()


def test_spellings_of_one_cell_are_one_cell():
    one = parse_study('name = "s"\n[factors]\ntau = [1, 1.0]\n')
    assert len(one.cells) == 3  # 1 and 1.0, three seeds
    preset = parse_study('name = "s"\n[fixed]\nvariant = "on_policy_distill"\n')
    parts = parse_study('name = "s"\n[fixed]\ncontrol = "student"\nloss = "cross_entropy"\n')
    assert [c.id for c in preset.cells] == [c.id for c in parts.cells]
    dup = parse_study('name = "s"\n[factors]\nvariant = ["on_policy_distill", "n_distill"]\n'
                      '[[include]]\nvariant = "n_distill"\ngenerator = "gridworld"\n')
    assert len(dup.cells) == 6 and len({c.id for c in dup.cells}) == 6


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ('name = "x"\n[fixed]\nvariant = ["n_distill"]', "single value"),
        ('name = "x"\nseeds = true', "seeds"),
        ('name = "x"\nseeds = "3"', "seeds"),
        ('name = "x"\nseeds = [1, 1]', "distinct"),
        ('name = "x"\nseeds = [4294967296]', "seed list"),
        ('name = "x"\n[factors]\nvariant = ["n_distill"]\n[[exclude]]\nvariant = "n_distil"', "matches no cell"),
        ('name = "x"\n[[include]]\ntau = []', "empty list"),
        ('name = "x"\n[fixed]\ngenerator = "garnet"\nn_states = 5\nbranching = 9', "branching"),
    ],
)
def test_more_bad_studies(text, expect):
    with pytest.raises(StudyError) as info:
        check_study(parse_study(text, "bad.toml"))
    assert expect in str(info.value)


def test_exclude_sees_defaults():
    study = parse_study('name = "x"\n[factors]\nvariant = ["n_distill", "on_policy_distill"]\n'
                        '[[exclude]]\ngenerator = "gridworld"\nvariant = "n_distill"\n')
    assert {c.params["variant"] for c in study.cells} == {"on_policy_distill"}


def test_every_builtin_study_validates_with_the_committed_teachers():
    for name in builtin_studies():
        study = check_study(load_study(name))
        assert study.cells, name
        if study.spec.tier != "tabular":
            assert all(Path(f).is_file() for c in study.cells for f in c.teacher_files()), name


def test_a_replaced_file_gets_a_new_digest_even_with_its_old_times(tmp_path):
    import os

    from study.run.checks import file_digest

    path = tmp_path / "t.pt"
    path.write_bytes(b"a" * 100)
    first, st = file_digest(str(path)), path.stat()
    replacement = tmp_path / "new"
    replacement.write_bytes(b"b" * 100)
    os.utime(replacement, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(replacement, path)  # same size, same modification time: what `cp -p` or rsync -t leave
    assert file_digest(str(path)) != first


def test_a_student_of_the_whole_teachers_size_is_one_cell_however_it_is_spelled():
    base = 'name = "x"\ntier = "minatar"\n[fixed]\ngame = "breakout"\nvariant = "rusu_kl"\n'
    plain = check_study(parse_study(base)).cells[0]
    full = check_study(parse_study(base + "student_fraction = 1.0\n")).cells[0]
    quarter = check_study(parse_study(base + "student_fraction = 0.25\n")).cells[0]
    assert plain.id == full.id != quarter.id
    assert full.params["student_fraction"] == 1.0  # the study's spelling is kept for the analysis


def test_the_engines_check_only_the_cells_that_run():
    """A point that [[exclude]] drops is never built: its generator limits do not stop the study."""
    text = ('name = "x"\n[fixed]\ngenerator = "garnet"\nn_states = 5\n[factors]\nbranching = [2, 9]\n'
            '[[exclude]]\nbranching = 9\n')
    study = check_study(parse_study(text, "x.toml"))
    assert {c.env.branching for c in study.cells} == {2}
    with pytest.raises(StudyError, match="branching"):
        check_study(parse_study(text.split("[[exclude]]")[0], "x.toml"))

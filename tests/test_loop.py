"""The network tiers' distillation loop: episode pieces, replay choice, a learning check and smoke runs."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

import variants as V
from study.network.envs import EnvSpec, VecEnv
from study.network.loop import Memory, distill_network, segments, uses_replay
from study.network.nets import Net
from study.network.teacher import Teacher, TeacherMeta
from study.spec import LoopParams


def random_teacher(spec: EnvSpec, arch: str, seed: int = 1) -> Teacher:
    """A random network made state-dependent: its outputs are centred on states of random play and scaled,
    so every action is the argmax somewhere (chance agreement is low) and the policy is sharp."""
    torch.manual_seed(seed)
    env = VecEnv(spec, 4, seed)
    net = Net(arch, env.obs_shape, env.n_actions)
    obs = [torch.as_tensor(env.reset())]
    rng = np.random.default_rng(seed)
    for _ in range(50):
        obs.append(torch.as_tensor(env.step(rng.integers(0, env.n_actions, 4))[0]))
    env.close()
    with torch.no_grad():
        states = torch.cat(obs)
        net.head.weight.div_(net(states).std(0, keepdim=True).T / 3)
        net.head.bias.sub_(net(states).mean(0))
    meta = TeacherMeta(env=spec.to_dict(), obs_shape=list(env.obs_shape), n_actions=env.n_actions, algo="dqn",
                       arch=arch)
    return Teacher(net, meta)


def test_rollouts_are_cut_into_episode_pieces():
    done = np.array([[False, True, False, False], [False, False, False, True]])
    piece, pos, pieces, length = segments(done)
    assert piece.tolist() == [0, 0, 1, 1, 2, 2, 2, 2] and pos.tolist() == [0, 1, 0, 1, 0, 1, 2, 3]
    assert pieces == 3 and length == 4


def test_replay_only_for_teacher_driven_supervised_variants():
    assert uses_replay(V.variant("rusu_kl")) and uses_replay(V.variant("teacher_distill"))
    for name in ("on_policy_distill", "n_distill", "entropy_regularised", "teacher_v_reward", "dagger"):
        assert not uses_replay(V.variant(name)), name


def test_replay_is_the_variants_choice():
    """The loop replays exactly what the catalogue says replays (``Variant.replay``): Rusu's recipes and
    teacher distill, not the student-driven or reward-based ones."""
    replayed = {name for name in V.CATALOGUE if uses_replay(V.variant(name))}
    assert replayed == {name for name in V.CATALOGUE if V.get(name).to_dict()["replay"]}
    assert {"rusu_kl", "rusu_nll", "rusu_mse", "teacher_distill"} <= replayed
    assert not replayed & {"on_policy_distill", "n_distill", "teacher_v_reward", "dagger"}


def test_a_full_memory_overwrites_its_oldest_pairs_and_samples_pairs_together():
    memory = Memory(5, (1,), 2)
    for first in (0, 3):  # 3 + 4 pairs into 5 places: the second add wraps around
        n = 3 if first == 0 else 4
        obs = torch.arange(first, first + n, dtype=torch.uint8)[:, None]
        memory.add(obs, obs.float().repeat(1, 2) * 10)
    assert memory.size == 5 and memory.pos == 2
    assert sorted(memory.obs.squeeze(1).tolist()) == [2, 3, 4, 5, 6]  # 0 and 1 overwritten
    obs, out = memory.sample(64, torch.Generator().manual_seed(0))
    assert torch.equal(out, obs.float().repeat(1, 2) * 10) and set(obs.squeeze(1).tolist()) <= {2, 3, 4, 5, 6}


def test_an_actor_hands_back_its_rollout_with_the_teachers_outputs():
    from study.network.loop import Actor

    spec = EnvSpec("minatar", "breakout")
    teacher, variant = random_teacher(spec, "minatar"), V.variant("n_distill")
    student = Net("minatar", (4, 10, 10), 3)
    actor = Actor(spec, teacher, student, variant, num_envs=3, seed=0, device=torch.device("cpu"),
                  generator=torch.Generator().manual_seed(0))
    rollouts = [actor.collect(it, 40) for it in range(2)]
    actor.close()
    for r in rollouts:
        assert len(r.obs) == len(r.act) == len(r.done) == 40 and r.v is None and r.obs[0].shape == (3, 4, 10, 10)
        for obs, out in zip(r.obs, r.out, strict=True):
            torch.testing.assert_close(out, teacher.outputs(obs), rtol=0, atol=0)
        assert all(int(a.max()) < 3 for a in r.act)
        piece, pos, pieces, _ = r.pieces()
        done = torch.stack(r.done, 1)
        assert pieces == 3 + int(done[:, :-1].sum()) and piece.shape == pos.shape == (3 * 40,)
    assert any(bool(d.any()) for r in rollouts for d in r.done)  # 80 steps of a random-ish policy end episodes
    assert not torch.equal(rollouts[1].obs[0], rollouts[0].obs[0])  # the second rollout goes on from the first


def test_the_loop_takes_the_studys_loop_params():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="allowed: replay >= num_envs x rollout"):
        LoopParams(replay=100, num_envs=8, rollout=32)
    with pytest.raises(ValidationError):
        LoopParams(iterations=2.0)  # strict: a budget count is an int
    assert LoopParams(lr=1).lr == 1.0
    spec = EnvSpec("minatar", "breakout")
    with pytest.raises(ValueError, match="width 0: out of range"):
        distill_network(spec, random_teacher(spec, "minatar"), V.variant("rusu_kl"), LoopParams(iterations=1),
                        seed=0, width=0)


@pytest.mark.parametrize(("name", "precision"), [("rusu_kl", "fp32"), ("on_policy_distill", "fp32"),
                                               ("rusu_kl", "bf16")])
def test_a_student_learns_to_agree_with_a_fixed_teacher(name, precision):
    spec = EnvSpec("minatar", "breakout")
    teacher = random_teacher(spec, "minatar")
    cfg = LoopParams(iterations=150, eval_every=150, eval_episodes=4, rollout=16, precision=precision)
    result = distill_network(spec, teacher, V.variant(name), cfg, seed=0)
    first, last = result.evals[0], result.evals[-1]
    assert first.agreement < 0.5  # about chance for three actions
    assert last.agreement > 0.8 and last.agreement > first.agreement + 0.3
    assert last.kl < first.kl / 3
    assert result.steps == [0, 150 * 8 * 16]


@pytest.mark.parametrize("name", ["n_distill", "entropy_regularised", "expected_entropy_regularised",
                                  "teacher_v_reward", "on_policy_distill_r", "dagger"])
def test_every_kind_of_variant_runs_on_minatar(name):
    spec = EnvSpec("minatar", "asterix")
    teacher = random_teacher(spec, "minatar")
    result = distill_network(spec, teacher, V.variant(name), LoopParams(iterations=3, eval_every=3,
                                                                        eval_episodes=1, rollout=8), seed=0)
    assert all(math.isfinite(e.kl) and 0 <= e.agreement <= 1 for e in result.evals)


@pytest.mark.slow
def test_a_distillation_smoke_run_on_pong():
    spec = EnvSpec("atari", "pong", frame_cap=400)  # short games: 100 agent steps
    teacher = random_teacher(spec, "nature")
    cfg = LoopParams(iterations=2, num_envs=2, rollout=4, eval_every=2, eval_episodes=1, batch=8)
    result = distill_network(spec, teacher, V.variant("rusu_kl"), cfg, seed=0, width=0.25)
    assert len(result.evals) == 2 and result.evals[-1].score <= 0  # a random student does not win points
    assert sum(p.numel() for p in result.student.parameters()) < 0.3 * sum(
        p.numel() for p in teacher.net.parameters())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["rusu_kl", "on_policy_distill"])
def test_a_pong_loop_gives_the_student_of_doing_things_in_turn(name, monkeypatch):
    """Atari envs step in two groups while the networks act, and replayed updates run in a worker thread
    during the next rollout: the student is bit for bit the one of running the updates in place."""
    import study.network.loop.learner as learner

    spec = EnvSpec("atari", "pong", frame_cap=400)
    teacher = random_teacher(spec, "nature")
    cfg = LoopParams(iterations=3, num_envs=3, rollout=4, eval_every=2, eval_episodes=1, batch=8, updates=2)
    runs = [distill_network(spec, teacher, V.variant(name), cfg, seed=3, width=0.25) for _ in range(2)]
    in_place, backgrounds = learner.Updates, []

    def updates(background: bool) -> learner.Updates:
        backgrounds.append(background)
        return in_place(False)

    monkeypatch.setattr(learner, "Updates", updates)
    runs.append(distill_network(spec, teacher, V.variant(name), cfg, seed=3, width=0.25))
    assert backgrounds == [name == "rusu_kl"]  # only replayed updates go to the worker
    for other in runs[1:]:
        for x, y in zip(runs[0].student.parameters(), other.student.parameters(), strict=True):
            torch.testing.assert_close(x, y, rtol=0, atol=0)
        assert other.evals == runs[0].evals


def test_a_failing_update_is_raised_and_leaves_no_worker():
    from study.network.loop import Updates

    updates = Updates(background=True)
    updates.submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        updates.wait()
    updates.submit(lambda: 1 / 0)
    updates.close(quiet=True)  # the loop's own error is the one to report
    with pytest.raises(RuntimeError, match="shutdown"):
        updates.submit(lambda: None)


def test_plus_v_cond_is_refused_with_the_reason():
    spec = EnvSpec("minatar", "breakout")
    with pytest.raises(V.VariantError, match="needs the student's value"):
        distill_network(spec, random_teacher(spec, "minatar"), V.variant("on_policy_distill_r_vcond"),
                        LoopParams(iterations=1), seed=0)


def test_a_minatar_study_runs_through_the_grid_and_the_analysis(tmp_path):
    from analysis.analyze import Options, analyze
    from study.network.teacher import save_teacher
    from study.run.checks import check_study
    from study.run.runner import run_study
    from study.spec.grid import parse_study

    spec = EnvSpec("minatar", "breakout")
    teacher = random_teacher(spec, "minatar")
    path = save_teacher(tmp_path / "teacher.pt", teacher.net, teacher.meta)
    study = check_study(parse_study(f"""
name = "net"
tier = "minatar"
seeds = 2
[fixed]
game = "breakout"
teacher_file = "{path}"
iterations = 4
eval_every = 2
eval_episodes = 2
rollout = 8
num_envs = 2
[factors]
variant = ["rusu_kl", "on_policy_distill"]
[[include]]
variant = "rusu_kl"
student_fraction = 0.25
"""))
    assert all(c.tier == "minatar" for c in study.cells) and len({c.id for c in study.cells}) == 6
    report = run_study(study, tmp_path / "r", workers=1)
    assert len(report.done) == 6 and not report.failed
    small = [json.loads(p.read_text()) for p in (tmp_path / "r").glob("*/summary.json")]
    fractions = sorted(s["student_parameters"] / s["teacher_parameters"] for s in small)
    assert fractions[0] == pytest.approx(0.25, abs=0.02) and fractions[-1] == 1.0
    out = analyze(tmp_path / "r", None, Options(reps=200, permutations=199)).out
    final = pd.read_csv(out / "tables" / "final.csv")
    assert set(final["metric"]) == {"score", "return_norm", "agreement", "kl_student"}
    assert "breakout" in (out / "report.md").read_text()
    again = check_study(parse_study(study.source))
    save_teacher(path, Net("minatar", (4, 10, 10), 3), teacher.meta)  # a retrained teacher: new cells
    assert {c.id for c in check_study(parse_study(study.source)).cells}.isdisjoint({c.id for c in again.cells})


def test_one_multitask_student_learns_two_games_from_their_teachers():
    from study.network.loop import distill_multitask

    games = {}
    for game in ("breakout", "space_invaders"):  # 4 and 6 observation channels: per-game input layers
        spec = EnvSpec("minatar", game)
        games[game] = (spec, random_teacher(spec, "minatar"))
    cfg = LoopParams(iterations=120, eval_every=120, eval_episodes=3, rollout=16)
    result = distill_multitask(games, V.variant("rusu_kl"), cfg, seed=0)
    assert set(result.games) == {"breakout", "space_invaders"} and len(result.student.heads) == 2
    for evals in result.games.values():
        assert evals[-1].agreement > 0.75 and evals[-1].agreement > evals[0].agreement + 0.2


def test_a_multitask_cell_reports_each_game_under_its_own_task(tmp_path, monkeypatch):
    from analysis.analyze import Options, analyze
    from analysis.load import load_results
    from study.network.teacher import save_teacher
    from study.run.runner import run_study
    from study.spec.grid import parse_study

    monkeypatch.chdir(tmp_path)  # teachers at their default paths, results/teachers/minatar-<game>.pt
    for game in ("breakout", "space_invaders"):
        t = random_teacher(EnvSpec("minatar", game), "minatar")
        save_teacher(tmp_path / "results" / "teachers" / f"minatar-{game}.pt", t.net, t.meta)
    study = parse_study("""
name = "multi"
tier = "minatar"
seeds = 1
[fixed]
variant = "rusu_kl"
iterations = 3
eval_every = 3
eval_episodes = 1
rollout = 8
num_envs = 2
[factors]
game = ["breakout", "space_invaders"]
[[include]]
games = "breakout+space_invaders"
""")
    assert len(study.cells) == 3
    assert not run_study(study, tmp_path / "r", workers=1).failed
    r = load_results(tmp_path / "r")
    assert sorted(r.tasks) == ["game=breakout", "game=space_invaders"]
    assert sorted(r.arms) == ["all", "games=breakout+space_invaders"]
    assert len(r.runs) == 4 and not r.clustered  # each game: one single-task run and one multi-task run
    out = analyze(tmp_path / "r", None, Options(reps=200, permutations=199)).out
    per_task = pd.read_csv(out / "tables" / "per_task.csv")
    assert list(per_task.columns) == ["arm", "game=breakout", "game=space_invaders"]
    bad = 'name = "x"\ntier = "minatar"\n[fixed]\ngame = "breakout"\ngames = "breakout+asterix"'
    with pytest.raises(Exception, match="set either 'game'"):
        parse_study(bad)


def test_online_distillation_follows_a_teacher_that_is_still_learning(tmp_path, monkeypatch):
    from study.network.teacher import save_teacher
    from study.run import progress as reporting
    from study.run.checks import check_study
    from study.run.network import run_network_cell
    from study.spec.grid import parse_study

    spec = EnvSpec("minatar", "breakout")
    t = random_teacher(spec, "minatar")
    t.meta.extra = {"config": {"learn_start": 64, "buffer": 2_000, "batch": 8, "num_envs": 2}}
    path = save_teacher(tmp_path / "t.pt", t.net, t.meta)
    study = parse_study(f"""
name = "online"
tier = "minatar"
seeds = 1
[fixed]
game = "breakout"
teacher_file = "{path}"
variant = "rusu_kl"
online_steps = 20
iterations = 12
eval_every = 4
eval_episodes = 1
rollout = 8
num_envs = 2
""")
    monkeypatch.setattr(reporting, "PROGRESS_SECONDS", 0.0)
    heard: list[tuple[int, int]] = []  # a network cell reports its iterations, as a tabular batch does
    metrics, summary = run_network_cell(check_study(study).cells[0], progress=lambda *p: heard.append(p))
    assert heard == [(i, 12) for i in range(1, 13)]
    assert {"score", "return_norm", "agreement", "kl_student", "teacher_score"} <= set(metrics["metric"])
    assert summary.references["teacher"][0] is not None and summary.step == 12 * 2 * 8
    bad = study.source.replace('variant = "rusu_kl"', 'variant = "rusu_kl"\ngames = "breakout+asterix"')
    with pytest.raises(Exception, match="online distillation is for single-game cells"):
        parse_study(bad.replace('teacher_file = "' + str(path) + '"\n', "").replace('game = "breakout"\n', ""))

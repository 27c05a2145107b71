"""Teacher training: the teacher file, checkpoints, resume after an interruption, and bad input."""

from __future__ import annotations

import csv

import pytest
import torch
from typer.testing import CliRunner

from study.cli import app
from study.network.envs import EnvSpec
from study.network.rl.common import pick_device
from study.network.rl.train import parse_env, paths, train_teacher
from study.network.teacher import Teacher, TeacherError

runner = CliRunner()
SPEC = EnvSpec("minatar", "breakout")
SMALL_DQN = {"learn_start": 64, "buffer": 2_000, "batch": 8}


@pytest.mark.parametrize(("algo", "steps", "config"), [("ppo", 2_048, {"rollout": 32}), ("dqn", 400, SMALL_DQN),
                                                        ("ppo", 1_024, {"rollout": 32, "precision": "bf16"}),
                                                        ("dqn", 400, {**SMALL_DQN, "precision": "bf16"})])
def test_training_writes_a_teacher_file_with_its_curve_and_checkpoint(tmp_path, algo, steps, config):
    out = tmp_path / f"{algo}.pt"
    result = train_teacher(SPEC, algo, steps, out, device="cpu", checkpoint_every=256, eval_episodes=2,
                           config=config)
    teacher = Teacher.load(out, SPEC)
    m = teacher.meta
    assert m.algo == algo and m.steps >= steps and m.eval_episodes == 2 and m.obs_shape == [4, 10, 10]
    assert m.n_actions == 3 and m.eval_mean is not None and m.env == SPEC.to_dict()
    assert teacher.outputs(torch.zeros(1, 4, 10, 10, dtype=torch.uint8)).shape == (1, 3)
    assert m.extra["config"]["precision"] == config.get("precision", "fp32")
    assert all(v.dtype == torch.float32 for v in teacher.net.state_dict().values())  # bf16 weights: never
    ckpt, curve = paths(out)
    assert ckpt.is_file() and curve == result.curve
    assert not curve.with_suffix(".png").exists()  # study does not draw; `distill teacher train` does
    rows = list(csv.DictReader(curve.open()))
    assert rows and all(float(r["score"]) >= 0 for r in rows)  # unclipped Breakout scores


def test_an_interrupted_run_resumes_from_its_last_checkpoint(tmp_path):
    out = tmp_path / "t.pt"
    seen: list[int] = []

    def stop_after_checkpoint(step: int, total: int, recent: float) -> None:
        seen.append(step)
        if step >= 800:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_teacher(SPEC, "dqn", 2_000, out, device="cpu", checkpoint_every=400, eval_episodes=1,
                      config=SMALL_DQN, progress=stop_after_checkpoint)
    ckpt, _ = paths(out)
    saved = torch.load(ckpt, weights_only=True)
    assert saved["step"] == 800 and not out.exists()  # the checkpoint holds the work; no teacher yet
    assert saved["replay"]["size"] == 800 and len(saved["curve"]) > 0
    with pytest.raises(TeacherError, match="a training checkpoint exists"):
        train_teacher(SPEC, "dqn", 2_000, out, device="cpu", config=SMALL_DQN)
    with pytest.raises(TeacherError, match="this run asks for"):
        train_teacher(EnvSpec("minatar", "asterix"), "dqn", 2_000, out, resume=True, device="cpu")
    resumed: list[int] = []
    result = train_teacher(SPEC, "dqn", 2_000, out, resume=True, device="cpu", checkpoint_every=400,
                           eval_episodes=1, progress=lambda s, t, r: resumed.append(s))
    assert resumed[0] == 804 and result.meta.steps == 2_000  # went on from step 800, not from 0
    assert Teacher.load(out).meta.steps == 2_000


def test_resume_without_a_checkpoint_and_other_bad_input_exit_2(tmp_path):
    out = tmp_path / "t.pt"
    result = runner.invoke(app, ["teacher", "train", "minatar/breakout", "--out", str(out), "--resume"])
    assert result.exit_code == 2 and "no checkpoint" in result.stderr
    result = runner.invoke(app, ["teacher", "train", "minatar/pong", "--out", str(out)])
    assert result.exit_code == 2 and "allowed: breakout" in result.stderr.replace("\n", "")
    result = runner.invoke(app, ["teacher", "train", "minatar/breakout", "--algo", "a2c", "--out", str(out)])
    assert result.exit_code == 2 and "allowed: dqn, ppo" in result.stderr
    result = runner.invoke(app, ["teacher", "train", "minatar/breakout", "--precision", "fp16", "--out", str(out)])
    assert result.exit_code == 2 and "allowed: fp32, bf16" in result.stderr
    result = runner.invoke(app, ["teacher", "eval", str(tmp_path / "absent.pt")])
    assert result.exit_code == 2 and "no such teacher file" in result.stderr
    assert not list(tmp_path.iterdir())


def test_env_names_and_devices():
    assert parse_env("MinAtar/SpaceInvaders-v1") == EnvSpec("minatar", "space_invaders")
    assert parse_env("ALE/Pong-v5") == EnvSpec("atari", "pong") == parse_env("atari/pong")
    assert parse_env("atari/pong", sticky=0.0).sticky == 0.0
    assert pick_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert pick_device("auto").type == "cpu"
        with pytest.raises(ValueError, match="no GPU is present"):
            pick_device("cuda")
        result = runner.invoke(app, ["teacher", "train", "minatar/breakout", "--device", "cuda", "--out", "x.pt"])
        assert result.exit_code == 2 and "no GPU is present" in result.stderr


def test_teacher_eval_reports_the_score(tmp_path):
    out = tmp_path / "t.pt"
    train_teacher(SPEC, "ppo", 256, out, device="cpu", eval_episodes=1, config={"rollout": 32})
    result = runner.invoke(app, ["teacher", "eval", str(out), "--episodes", "3"])
    assert result.exit_code == 0, result.output
    printed = result.stdout.replace("\n", " ")
    assert "over 3 episodes" in printed and "sampling its policy" in printed


def test_teacher_eval_greedy_scores_a_ppo_teacher_by_its_argmax(tmp_path, monkeypatch):
    """--greedy plays the argmax with --epsilon exploration, as studies score teachers, where a PPO teacher
    otherwise samples its policy."""
    import study.network.rl.train as train_module

    out = tmp_path / "t.pt"
    train_teacher(SPEC, "ppo", 256, out, device="cpu", eval_episodes=1, config={"rollout": 32})
    calls = {"greedy": 0, "sample": 0}
    greedy, sample = train_module.act_greedy, train_module.act_sample

    def counted(name, act):
        def wrapped(*args):
            calls[name] += 1
            return act(*args)
        return wrapped

    monkeypatch.setattr(train_module, "act_greedy", counted("greedy", greedy))
    monkeypatch.setattr(train_module, "act_sample", counted("sample", sample))
    train_module.eval_teacher(out, 2, 0.05, seed=4)
    assert calls["sample"] > 0 and calls["greedy"] == 0
    calls["sample"] = 0
    result = runner.invoke(app, ["teacher", "eval", str(out), "--episodes", "2", "--greedy"])
    assert result.exit_code == 0 and "argmax, epsilon 0.05" in result.stdout.replace("\n", " ")
    assert calls["greedy"] > 0 and calls["sample"] == 0


def test_teacher_train_and_list_draw_the_curve_and_tabulate_a_folder(tmp_path):
    out = tmp_path / "minatar-breakout.pt"
    result = runner.invoke(app, ["teacher", "train", "minatar/breakout", "--algo", "ppo", "--steps", "1024",
                                 "--out", str(out), "--device", "cpu", "--eval-episodes", "1"])
    assert result.exit_code == 0, result.output
    figure = out.with_name(out.name + ".curve.png")
    assert figure.stat().st_size > 2000 and figure.with_suffix(".pdf").is_file()  # drawn when training ends
    figure.unlink()
    md = tmp_path / "README.md"
    result = runner.invoke(app, ["teacher", "list", str(tmp_path), "--markdown", str(md), "--curves"])
    assert result.exit_code == 0, result.output
    assert figure.stat().st_size > 2000  # --curves redraws it
    text = md.read_text()
    assert "| minatar-breakout.pt | MinAtar/Breakout-v1 | 0.1 | ppo |" in text
    assert runner.invoke(app, ["teacher", "list", str(tmp_path / "none")]).exit_code == 2


def test_settings_that_cannot_train_are_refused(tmp_path):
    with pytest.raises(TeacherError, match="learning would never start"):
        train_teacher(SPEC, "dqn", 100, tmp_path / "t.pt", device="cpu", config={"buffer": 100, "learn_start": 500})
    with pytest.raises(TeacherError, match="cannot fill"):
        train_teacher(SPEC, "ppo", 100, tmp_path / "t.pt", device="cpu",
                      config={"num_envs": 1, "rollout": 3, "minibatches": 4})
    assert not list(tmp_path.iterdir())


def test_ppo_minibatches_of_uneven_size_stay_finite():
    from study.network.rl.ppo import PPOConfig, _update

    torch.manual_seed(0)
    from study.network.nets import Net

    net = Net("minatar", (4, 10, 10), 3, value_head=True)
    opt = torch.optim.Adam(net.parameters())
    data = (torch.randint(0, 2, (10, 4, 10, 10), dtype=torch.uint8), torch.randint(0, 3, (10,)), torch.zeros(10),
            torch.randn(10), torch.randn(10))
    _update(net, opt, data, PPOConfig(minibatches=3, epochs=1), torch.Generator().manual_seed(0))
    assert all(torch.isfinite(p).all() for p in net.parameters())


def test_ppo_starts_from_the_reference_initialisation():
    """Orthogonal weights (rows orthonormal up to the gain) and a near-uniform first policy."""
    from study.network.nets import Net
    from study.network.rl.ppo import init_ppo

    torch.manual_seed(0)
    net = init_ppo(Net("nature", (4, 84, 84), 6, value_head=True)).requires_grad_(False)
    w = net.head.weight  # [6, 512]: rows orthogonal, each of norm 0.01
    torch.testing.assert_close(w @ w.T, 1e-4 * torch.eye(6), rtol=0, atol=1e-9)
    first = net.trunk.first.weight.flatten(1)  # [32, 256]
    torch.testing.assert_close(first @ first.T, 2.0 * torch.eye(32), rtol=0, atol=1e-4)
    assert all(float(m.bias.abs().max()) == 0 for m in (net.head, net.value, net.trunk.first))
    logits = net(torch.randint(0, 256, (16, 4, 84, 84), dtype=torch.uint8))
    assert float(torch.softmax(logits, -1).max()) < 0.2  # about 1/6 everywhere


def test_a_resumed_ppo_run_continues_the_uninterrupted_curve(tmp_path, monkeypatch):
    """Interrupted after its checkpoint at 2,048 agent steps and resumed, a PPO run saves at 2,048 exactly what
    an uninterrupted run saves there (weights, optimiser, curve, random streams), then goes on from that step
    with the same learning-rate schedule and as many optimiser steps; only its environments start new
    episodes (their emulator state is not part of a checkpoint)."""
    import study.network.rl.train as train_module

    saved: dict[str, list[dict]] = {}
    real_write = train_module.write_torch

    def keep(path, payload):
        saved.setdefault(path.parent.name, []).append(_copied(payload))
        return real_write(path, payload)

    monkeypatch.setattr(train_module, "write_torch", keep)
    config = {"rollout": 32}  # 8 envs x 32 steps: 256 agent steps an update
    (tmp_path / "whole").mkdir()
    (tmp_path / "cut").mkdir()
    train_teacher(SPEC, "ppo", 4_096, tmp_path / "whole" / "t.pt", device="cpu", checkpoint_every=2_048,
                  eval_episodes=1, config=config)

    def interrupt(step: int, total: int, recent: float) -> None:
        if step >= 2_048:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_teacher(SPEC, "ppo", 4_096, tmp_path / "cut" / "t.pt", device="cpu", checkpoint_every=2_048,
                      eval_episodes=1, config=config, progress=interrupt)
    steps: list[int] = []
    train_teacher(SPEC, "ppo", 4_096, tmp_path / "cut" / "t.pt", resume=True, device="cpu", checkpoint_every=2_048,
                  eval_episodes=1, progress=lambda s, t, r: steps.append(s))
    whole, cut = saved["whole"], saved["cut"]
    assert [p["step"] for p in whole] == [p["step"] for p in cut] == [2_048, 4_096]
    _assert_same(whole[0], cut[0])  # up to the interruption, one run
    assert steps[0] == 2_048 + 256 and steps[-1] == 4_096
    end_a, end_b = whole[1], cut[1]
    assert end_a["optimizer"]["param_groups"] == end_b["optimizer"]["param_groups"]  # the same schedule
    adam_steps = [[s["step"] for s in end["optimizer"]["state"].values()] for end in (end_a, end_b)]
    assert adam_steps[0] == adam_steps[1] and float(adam_steps[0][0]) == 4_096 / 256 * 4 * 4  # epochs x batches
    first = len(cut[0]["curve"])
    assert torch.equal(end_a["curve"][:first], end_b["curve"][:first])
    assert (end_b["curve"][first:, 0] > 2_048).all()  # the episodes it finished after the resume point


def _copied(value):
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, dict):
        return {k: _copied(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_copied(v) for v in value)
    return value


def _assert_same(a, b):
    assert type(a) is type(b)
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            _assert_same(a[key], b[key])
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_same(x, y)
    else:
        assert a == b


def test_an_interrupted_training_prints_the_command_that_resumes_it_with_its_protocol(tmp_path, monkeypatch):
    import study.network.rl.train as train_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "train_teacher", interrupted)
    out = tmp_path / "t.pt"
    result = runner.invoke(app, ["teacher", "train", "atari/pong", "--algo", "ppo", "--steps", "5000", "--sticky",
                                 "0.0", "--checkpoint-every", "1000", "--out", str(out)])
    assert result.exit_code == 130
    assert (f"distill teacher train atari/pong --algo ppo --steps 5000 --sticky 0.0 --out {out} "
            "--checkpoint-every 1000 --resume") in " ".join(result.stderr.split())

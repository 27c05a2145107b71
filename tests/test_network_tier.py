"""The network tiers' building blocks: environments, networks and teacher files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from study.network.envs import MINATAR_GAMES, EnvError, EnvSpec, VecEnv
from study.network.nets import MultiTaskNet, Net, parameters, width_for_fraction
from study.network.teacher import Teacher, TeacherError, TeacherMeta, save_teacher


@pytest.mark.parametrize("game", list(MINATAR_GAMES))
def test_minatar_games_give_channels_first_uint8_observations(game):
    env = VecEnv(EnvSpec("minatar", game), num_envs=2, seed=0)
    obs = env.reset()
    assert obs.dtype == np.uint8 and obs.shape == (2, *env.obs_shape) and env.obs_shape[1:] == (10, 10)
    assert set(np.unique(obs)) <= {0, 1} and env.spec.sticky == 0.1  # the tier's convention, recorded
    env.close()


def test_atari_pong_is_preprocessed_and_sticky_actions_are_explicit():
    spec = EnvSpec("atari", "pong")
    assert spec.id == "ALE/Pong-v5" and spec.sticky == 0.25 and spec.noop_max == 30
    env = VecEnv(spec, num_envs=2, seed=0)
    obs = env.reset()
    assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8 and env.n_actions == 6
    env.close()


def _trace(spec: EnvSpec, steps: int) -> tuple[np.ndarray, list]:
    env = VecEnv(spec, num_envs=3, seed=5)
    env.reset()
    rng = np.random.default_rng(0)
    sums = []
    for _ in range(steps):
        obs, reward, _, _ = env.step(rng.integers(0, env.n_actions, 3))
        sums.append(float(obs.sum()) + float(reward.sum()))
    env.close()
    return np.array(sums), env.finished


@pytest.mark.parametrize(("tier", "game", "steps"), [("minatar", "breakout", 400), ("atari", "pong", 60)])
def test_same_seed_same_episodes_even_with_sticky_actions(tier, game, steps):
    a, finished_a = _trace(EnvSpec(tier, game), steps)
    b, finished_b = _trace(EnvSpec(tier, game), steps)
    np.testing.assert_array_equal(a, b)
    assert finished_a == finished_b


def test_atari_env_groups_step_like_one_vector_env():
    """The loop's groups (env i seeded seed + i, as in one vector env) stepped in turn with send / recv
    give exactly one vector env's observations, rewards and ends."""
    from study.network.loop import env_groups

    spec = EnvSpec("atari", "pong", frame_cap=200)
    whole, groups = VecEnv(spec, 3, seed=4), env_groups(spec, 3, seed=4)
    assert [g.num_envs for g in groups] == [1, 2]
    np.testing.assert_array_equal(whole.reset(), np.concatenate([g.reset() for g in groups]))
    rng = np.random.default_rng(0)
    for _ in range(80):
        actions = rng.integers(0, whole.n_actions, 3)
        groups[0].send(actions[:1])
        groups[1].send(actions[1:])
        parts = [g.recv() for g in groups]
        for x, y in zip(whole.step(actions), zip(*parts, strict=True), strict=True):
            np.testing.assert_array_equal(x, np.concatenate(y))
    with pytest.raises(RuntimeError, match="recv without send"):
        whole.recv()
    for env in (whole, *groups):
        env.close()


def test_bf16_trunks_compute_close_to_fp32_and_return_fp32():
    from study.network.nets import set_precision

    torch.manual_seed(0)
    net = Net("nature", (4, 84, 84), 6)
    obs = torch.randint(0, 256, (4, 4, 84, 84), dtype=torch.uint8)
    with torch.no_grad():
        full = net(obs)
        half = set_precision(net, "bf16")(obs)
    assert half.dtype == torch.float32 and not torch.equal(full, half)  # bf16 arithmetic did happen
    torch.testing.assert_close(half, full, rtol=0.05, atol=0.05 * float(full.abs().max()))
    with pytest.raises(ValueError, match="allowed: fp32, bf16"):
        set_precision(net, "fp16")


def test_whole_episode_scores_are_recorded_unclipped():
    _, finished = _trace(EnvSpec("minatar", "breakout", sticky=0.0), 400)
    assert finished and all(length > 0 for _, length in finished)
    assert all(float(score).is_integer() and score >= 0 for score, _ in finished)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"tier": "snes", "game": "pong"}, "allowed: minatar, atari"),
    ({"tier": "minatar", "game": "pong"}, "allowed: breakout"),
    ({"tier": "atari", "game": "pongg"}, "allowed: ale-py's ROM names"),
    ({"tier": "atari", "game": "pong", "sticky": 1.0}, "allowed: a probability"),
])
def test_bad_environments_are_refused_with_what_is_allowed(kwargs, message):
    with pytest.raises(EnvError, match=message):
        EnvSpec(**kwargs)


def test_nature_cnn_matches_rusu_et_al_and_widths_hit_their_compression_sizes():
    full = parameters(Net("nature", (4, 84, 84), 18))
    assert full == 1_693_362  # "1.69M parameters with 18 actions"
    for fraction in (0.25, 0.07, 0.04):
        w = width_for_fraction("nature", (4, 84, 84), 18, fraction)
        assert abs(parameters(Net("nature", (4, 84, 84), 18, w)) / full - fraction) < 0.003


def test_multitask_student_has_a_head_and_an_input_layer_per_game():
    net = MultiTaskNet("minatar", {"breakout": (4, 10, 10), "seaquest": (10, 10, 10)},
                       {"breakout": 3, "seaquest": 6})
    assert net(torch.zeros(5, 4, 10, 10, dtype=torch.uint8), "breakout").shape == (5, 3)
    assert net(torch.zeros(5, 10, 10, 10, dtype=torch.uint8), "seaquest").shape == (5, 6)
    shared = set(dict(net.trunk.named_parameters()))
    assert shared and all(name.startswith("hidden") for name in shared)  # the hidden layer is shared


def _teacher(algo: str = "dqn") -> tuple[Net, TeacherMeta]:
    torch.manual_seed(0)
    spec = EnvSpec("minatar", "breakout")
    net = Net("minatar", (4, 10, 10), 3, value_head=algo == "ppo")
    meta = TeacherMeta(env=spec.to_dict(), obs_shape=[4, 10, 10], n_actions=3, algo=algo, arch="minatar",
                       steps=123, eval_mean=1.5, eval_std=0.5, eval_episodes=10)
    return net, meta


def test_teacher_file_round_trip_and_teacher_interface(tmp_path):
    net, meta = _teacher()
    path = save_teacher(tmp_path / "t.pt", net, meta)
    teacher = Teacher.load(path, EnvSpec("minatar", "breakout"))
    obs = torch.randint(0, 2, (7, 4, 10, 10), dtype=torch.uint8)
    torch.testing.assert_close(teacher.outputs(obs), net(obs))
    assert teacher.meta.steps == 123 and teacher.meta.outputs == "q"
    q = net(obs).detach()
    pi = torch.softmax(q / 0.5, -1)
    torch.testing.assert_close(teacher.policy(obs, 0.5), pi)
    torch.testing.assert_close(teacher.value(obs, 0.5), (pi * q).sum(-1))  # V_T: expected Q under pi_T
    ppo_net, ppo_meta = _teacher("ppo")
    ppo = Teacher.load(save_teacher(tmp_path / "p.pt", ppo_net, ppo_meta))
    torch.testing.assert_close(ppo.value(obs, 1.0), ppo_net.forward_value(obs)[1].detach())


def test_teacher_files_that_do_not_fit_are_refused(tmp_path):
    net, meta = _teacher()
    path = save_teacher(tmp_path / "t.pt", net, meta)
    with pytest.raises(TeacherError, match="but the study asks for"):
        Teacher.load(path, EnvSpec("minatar", "asterix"))
    with pytest.raises(TeacherError, match="but the study asks for"):
        Teacher.load(path, EnvSpec("minatar", "breakout", sticky=0.0))
    with pytest.raises(TeacherError, match="no such teacher file"):
        Teacher.load(tmp_path / "absent.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(TeacherError, match="not a loadable teacher file"):
        Teacher.load(tmp_path / "junk.pt")
    torch.save({"format": "distill-teacher/1", "meta": "{}", "state": {}, "code": EnvSpec("minatar", "breakout")},
               tmp_path / "pickled.pt")
    with pytest.raises(TeacherError, match="not a loadable teacher file"):  # weights_only refuses objects
        Teacher.load(tmp_path / "pickled.pt")
    torch.save({"weights": net.state_dict()}, tmp_path / "other.pt")
    with pytest.raises(TeacherError, match="not a teacher file"):
        Teacher.load(tmp_path / "other.pt")


def test_teacher_files_with_unusable_metadata_are_refused_clearly(tmp_path):
    net, meta = _teacher()
    meta.arch = "resnet"
    path = save_teacher(tmp_path / "t.pt", net, meta)
    with pytest.raises(TeacherError, match="unusable teacher metadata"):
        Teacher.load(path)


def test_minatar_episodes_end_at_the_frame_cap():
    env = VecEnv(EnvSpec("minatar", "freeway", frame_cap=20), num_envs=2, seed=0)
    env.reset()
    for _ in range(40):
        env.step(np.zeros(2, dtype=np.int64))  # freeway never ends by itself this fast
    assert [length for _, length in env.finished] == [20, 20, 20, 20]

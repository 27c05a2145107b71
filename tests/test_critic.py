"""Critics: TD(n) students bootstrap the n-step return with a learned or an exact value table.

The exact critic's expected update is checked against enumerated episodes in test_exact.py;
here: the recipe's validation and identity, the bootstrap step by step, the learned critic's
TD update, its convergence to the exact values, and the refusals where a critic cannot run.
"""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

import variants as V
from study.cli import app
from study.spec.grid import parse_study
from study.tabular import exact
from study.tabular import generators as gen
from study.tabular import teachers as T
from study.tabular.engine import Plan, TrainConfig, distill
from variants import Control, Variant, VariantError
from variants.surrogate import surrogate

DT = torch.float64


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"critic": "learned"}, ["critic 'learned'", "n_step is none", "allowed"]),
        ({"critic": "oracle", "n_step": 1}, ["unknown critic 'oracle'", "none, learned, exact"]),
        ({"critic": ["exact"], "n_step": 1}, ["unknown critic", "allowed"]),
        ({"critic": "learned", "n_step": 1, "critic_lr": 0.0}, ["critic_lr", "allowed"]),
        ({"critic": "learned", "n_step": 1, "critic_lr": 1.5}, ["critic_lr", "allowed"]),
        ({"critic": "learned", "n_step": 1, "critic_lr": "fast"}, ["critic_lr", "not a number", "allowed"]),
        ({"critic": "learned", "n_step": 1, "critic_init": "optimal"}, ["unknown start 'optimal'", "zero, teacher_v"]),
        ({"critic": "exact", "n_step": 1, "critic_init": "teacher_v"}, ["critic_init 'teacher_v'", "critic 'learned'"]),
    ],
)
def test_bad_critics_are_refused_with_what_is_allowed(kwargs, words):
    with pytest.raises(VariantError) as err:
        V.variant("on_policy_distill_r", **kwargs)
    for w in words:
        assert w in str(err.value), (w, str(err.value))


def test_unused_critic_settings_leave_the_identity_alone():
    plain = V.variant("on_policy_distill_r")
    assert "critic" not in plain.to_dict() and "critic_lr" not in plain.to_dict()
    # a step size without a learned critic changes nothing, so it is not part of the recipe's identity
    assert V.variant("on_policy_distill_r", critic_lr=0.7).fingerprint == plain.fingerprint
    exact_td = V.variant("on_policy_distill_r", n_step=1, critic="exact")
    assert exact_td.to_dict()["critic"] == "exact" and "critic_lr" not in exact_td.to_dict()
    learned = V.variant("on_policy_distill_r", n_step=1, critic="learned", critic_lr=0.2)
    assert learned.to_dict()["critic_lr"] == 0.2
    assert len({plain.fingerprint, exact_td.fingerprint, learned.fingerprint,
                learned.with_(critic_lr=0.5).fingerprint}) == 4
    for v in (plain, exact_td, learned):
        assert Variant.from_dict(v.to_dict()).to_dict() == v.to_dict()
    assert "TD(1) learned critic" in learned.describe()
    # where a learned critic starts is part of the recipe only when it is not the default
    assert learned.with_(critic_init="zero").to_dict() == learned.to_dict()
    warm = learned.with_(critic_init="teacher_v")
    assert warm.fingerprint != learned.fingerprint and warm.to_dict()["critic_init"] == "teacher_v"
    assert Variant.from_dict(warm.to_dict()) == warm and "from V_T" in warm.describe()


def test_gradient_field_counts_an_exact_critic_as_the_whole_return():
    n_distill = V.variant("n_distill")
    assert n_distill.gradient_field
    assert not n_distill.with_(n_step=1).gradient_field
    assert n_distill.with_(n_step=1, critic="exact").gradient_field
    assert not n_distill.with_(n_step=1, critic="learned").gradient_field
    # under fixed control neither the data nor the critic move with the student
    fixed = Variant(control=Control(kind="teacher"), env_reward=True, n_step=1, critic="learned")
    assert fixed.gradient_field and fixed.objective.startswith("E_q")


def _one_episode(critic: str, values: list[float]):
    """One episode of 3 steps padded to 5, rewards 1, 2, 3; no teacher, n_step = 1, gamma 0.5."""
    v = Variant(control=Control(kind="student"), loss="none", reward="none", env_reward=True, gamma=0.5,
                n_step=1, critic=critic)
    logits = torch.zeros(1, 5, 2, dtype=DT, requires_grad=True)
    v_critic = torch.tensor([values], dtype=DT, requires_grad=True)
    out = surrogate(v, student_out=logits, teacher_out=torch.zeros(1, 5, 2, dtype=DT),
                    actions=torch.zeros(1, 5, dtype=torch.long), valid=torch.tensor([[True] * 3 + [False] * 2]),
                    env_reward=torch.tensor([[1.0, 2.0, 3.0, 9.0, 9.0]], dtype=DT), v_critic=v_critic)
    logits_grad, critic_grad = torch.autograd.grad(out.sum(), [logits, v_critic], allow_unused=True)
    return logits_grad, critic_grad


def test_the_bootstrap_and_the_td_regression_step_by_step():
    values = [10.0, 20.0, 30.0, 40.0, 50.0]  # the padding's values must not leak in
    returns = [1 + 0.5 * 20, 2 + 0.5 * 30, 3.0]  # the last step's successor is terminal
    logits_grad, critic_grad = _one_episode("learned", values)
    # d/dlogit(a=0) of -log pi(0) R_t at uniform logits: -(1 - 1/2) R_t
    torch.testing.assert_close(logits_grad[0, :3, 0], torch.tensor([-0.5 * r for r in returns], dtype=DT))
    # the regression (R_t - V(s_t))^2 / 2 under stopgrad(R_t): -(R_t - V(s_t)) on valid steps only
    expect = [-(r - v) for r, v in zip(returns, values[:3], strict=True)] + [0.0, 0.0]
    torch.testing.assert_close(critic_grad[0], torch.tensor(expect, dtype=DT))
    # an exact critic bootstraps the same way but is not trained
    logits_exact, critic_exact = _one_episode("exact", values)
    torch.testing.assert_close(logits_exact, logits_grad)
    assert critic_exact is None or not critic_exact.any()


def test_a_critic_variant_without_values_is_refused():
    v = V.variant("on_policy_distill_r", n_step=1, critic="exact")
    z = torch.zeros(1, 2, 4, dtype=DT)
    with pytest.raises(ValueError, match="v_critic"):
        surrogate(v, student_out=z, teacher_out=z, actions=torch.zeros(1, 2, dtype=torch.long),
                  valid=torch.ones(1, 2, dtype=torch.bool), env_reward=torch.zeros(1, 2, dtype=DT))


@pytest.fixture(scope="module")
def grid():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    mdp = gen.gridworld(3, size=5, seed=2, dtype=DT)
    yield mdp, T.value_iteration(mdp)
    torch.set_num_threads(threads)


def test_a_learned_critic_converges_to_the_exact_values_on_fixed_data(grid):
    """Teacher control: the data do not move, so TD(0) must settle at V of the teacher's pseudo-return."""
    mdp, teacher = grid
    v = Variant(control=Control(kind="teacher"), loss="cross_entropy", env_reward=True, tau=0.5, n_step=1,
                critic="learned", critic_lr=0.2)
    config = TrainConfig(mode="sampled", iterations=600, lr=0.01, episodes=4, max_steps=200, eval_every=600)
    curves = distill(mdp, teacher, [v], Plan.product(3, 1, [0]), config)
    learned = curves.extras["critic"]
    target = exact.critic_values(v, mdp, teacher, teacher)  # the control is the teacher, whatever the student
    occupancy = mdp.occupancy(exact.control_probs(v, teacher, teacher))
    visited = occupancy > 0.05
    assert visited.sum() > 20 and target[visited].abs().max() > 1.0
    error = (learned - target)[visited].abs()
    # (a critic that had not learned, zero everywhere, would be off by the whole mean)
    assert error.mean() < 0.1 * target[visited].abs().mean(), (error.mean(), target[visited].abs().mean())


def test_critic_cells_are_the_same_alone_and_in_a_batch(grid):
    mdp, teacher = grid
    variants = [V.variant("on_policy_distill_r", tau=0.1, n_step=1, critic="learned", name="a"),
                V.variant("no_teacher", n_step=2, critic="exact", name="b"), V.variant("n_distill", tau=0.1, name="c")]
    config = TrainConfig(mode="sampled", iterations=10, lr=0.05, optimizer="adam", eval_every=5, max_steps=60)
    full = distill(mdp, teacher, variants, Plan.product(3, 3, [0]), config)
    for vi in range(2):
        alone = distill(mdp, teacher, variants[vi:vi + 1], Plan(torch.tensor([1]), torch.tensor([0]),
                                                                 torch.tensor([0])), config)
        i = ((full.plan.mdp_index == 1) & (full.plan.variant_index == vi)).nonzero().item()
        assert torch.equal(full.values["return"][:, i], alone.values["return"][:, 0])
    # the learned critic moved only where it exists
    assert full.extras["critic"][full.plan.variant_index == 0].abs().sum() > 0
    assert not full.extras["critic"][full.plan.variant_index != 0].any()


def test_a_critic_started_at_the_teachers_values_moves_only_where_visited(grid):
    """TD + V_pi: the critic starts at V_T; TD moves the visited states and leaves the rest at V_T."""
    mdp, teacher = grid
    v = V.variant("no_teacher", tau=0.1, n_step=1, critic="learned", critic_init="teacher_v")
    config = TrainConfig(mode="sampled", iterations=1, lr=0.05, max_steps=60, eval_every=1)
    curves = distill(mdp, teacher, [v], Plan.product(3, 1, [0]), config)
    v_t = T.teacher_values(mdp, teacher, 0.1, 1.0)
    assert (v_t != 0).float().mean() > 0.9  # a critic that started at zero would differ almost everywhere
    moved = curves.extras["critic"] != v_t.to(curves.extras["critic"].dtype)
    assert moved.any() and (~moved).sum() > 0.5 * moved.numel()


def test_exact_mode_refuses_a_learned_critic_and_runs_an_exact_one(grid):
    mdp, teacher = grid
    config = TrainConfig(mode="exact", iterations=3, eval_every=3)
    with pytest.raises(VariantError, match=r"learned critic.*allowed: mode 'sampled'"):
        distill(mdp, teacher, [V.variant("on_policy_distill_r", n_step=1, critic="learned")], Plan.product(3, 1, [0]),
                config)
    # exact mode: an exact critic's update is the Monte-Carlo one
    td = distill(mdp, teacher, [V.variant("on_policy_distill_r", n_step=1, critic="exact")], Plan.product(3, 1, [0]),
                 config)
    mc = distill(mdp, teacher, [V.variant("on_policy_distill_r")], Plan.product(3, 1, [0]), config)
    torch.testing.assert_close(td.values["return"], mc.values["return"])
    truncated = distill(mdp, teacher, [V.variant("on_policy_distill_r", n_step=1)], Plan.product(3, 1, [0]), config)
    assert not torch.allclose(truncated.values["return"][-1], mc.values["return"][-1])


def test_a_study_with_a_learned_critic_in_exact_mode_exits_2_and_writes_nothing(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[fixed]\nmode = "exact"\nvariant = "on_policy_distill_r"\nn_step = 1\n'
                   'critic = "learned"\n')
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["grid", "run", str(bad), "--out", str(out)])
    assert result.exit_code == 2 and "learned critic" in result.stderr and "mode 'sampled'" in result.stderr
    assert not out.exists()


def test_network_students_refuse_a_critic():
    from study.network.loop import check_variant

    with pytest.raises(VariantError, match=r"critic 'exact'.*allowed here: critic 'none'"):
        check_variant(V.variant("on_policy_distill_r", n_step=1, critic="exact"))


def test_arm_labels_show_whole_numbers_as_the_study_wrote_them(tmp_path):
    from analysis.load import load_results
    from study.run.runner import run_study

    study = parse_study('name = "labels"\nseeds = 1\n[fixed]\nsize = 5\nmdps = 1\niterations = 2\neval_every = 1\n'
                        'max_steps = 20\n[factors]\nvariant = ["on_policy_distill_r", "no_teacher"]\n[[include]]\n'
                        'variant = "on_policy_distill_r"\nn_step = 1\ncritic = ["learned", "exact"]\n')
    run_study(study, tmp_path / "labels", workers=1)
    arms = load_results(tmp_path / "labels").arms
    assert arms == ["on_policy_distill_r", "no_teacher", "on_policy_distill_r, n_step=1, critic=learned",
                    "on_policy_distill_r, n_step=1, critic=exact"]

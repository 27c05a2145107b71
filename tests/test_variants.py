"""Variants: losses, temperature, control, validation, catalogue and surrogate."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math

import pytest
import torch

import variants
from variants import CATALOGUE, Control, Variant, VariantError, losses
from variants import rewards as reward_registry
from variants import spec as spec_module
from variants.policy import entropy, kl, student_log_probs, teacher_log_probs
from variants.rewards import NO_LOSS, RewardParts, RewardSpec
from variants.surrogate import pseudo_rewards, returns_to_go, surrogate

DT = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Random student and teacher outputs ``[B, A]`` in float64."""
    g = _gen(0)
    return torch.randn(7, 5, generator=g, dtype=DT), 2.0 * torch.randn(7, 5, generator=g, dtype=DT)


# ---- losses ---------------------------------------------------------------------------------


@pytest.mark.parametrize("tau", [1.0, 0.3])
def test_cross_entropy_is_forward_kl_plus_teacher_entropy(batch, tau):
    student, teacher = batch
    ce = losses.cross_entropy(student, teacher, tau)
    assert ce.shape == (7,)
    p = torch.softmax(teacher / tau, -1)
    h_teacher = -(p * p.log()).sum(-1)
    fkl = losses.forward_kl(student, teacher, tau)
    torch.testing.assert_close(ce, fkl + h_teacher, rtol=0, atol=1e-12)
    # and forward KL itself, written out
    manual = (p * (p.log() - torch.log_softmax(student, -1))).sum(-1)
    torch.testing.assert_close(fkl, manual, rtol=0, atol=1e-12)


@pytest.mark.parametrize("tau", [1.0, 0.3])
def test_reverse_cross_entropy_is_reverse_kl_plus_student_entropy(batch, tau):
    student, teacher = batch
    rce = losses.reverse_cross_entropy(student, teacher, tau)
    s = torch.softmax(student, -1)
    h_student = -(s * s.log()).sum(-1)
    rkl = losses.reverse_kl(student, teacher, tau)
    torch.testing.assert_close(rce, rkl + h_student, rtol=0, atol=1e-12)
    manual = (s * (s.log() - torch.log_softmax(teacher / tau, -1))).sum(-1)
    torch.testing.assert_close(rkl, manual, rtol=0, atol=1e-12)


def test_jsd_endpoints_are_exactly_forward_and_reverse_kl(batch):
    student, teacher = batch
    assert torch.equal(
        losses.jsd(student, teacher, 0.7, 0.0), losses.forward_kl(student, teacher, 0.7)
    )
    assert torch.equal(
        losses.jsd(student, teacher, 0.7, 1.0), losses.reverse_kl(student, teacher, 0.7)
    )


def test_jsd_interior_approaches_the_endpoints_continuously(batch):
    student, teacher = batch
    fkl = losses.forward_kl(student, teacher, 1.0)
    rkl = losses.reverse_kl(student, teacher, 1.0)
    assert (fkl - rkl).abs().max() > 1e-2  # the two ends differ, so the limits below mean something
    betas = (1e-2, 1e-4, 1e-6)
    err_f = [(losses.jsd(student, teacher, 1.0, b) - fkl).abs().max().item() for b in betas]
    err_r = [(losses.jsd(student, teacher, 1.0, 1 - b) - rkl).abs().max().item() for b in betas]
    for errs in (err_f, err_r):
        # the gap shrinks at least in proportion to beta (resp. 1 - beta): continuous at both ends
        assert errs[1] < 0.05 * errs[0] and errs[2] < 0.05 * errs[1]
        assert errs[2] < 1e-4
    assert err_f[1] < 1e-3  # beta = 1e-4 is already close to forward KL


def test_jsd_matches_its_definition_in_the_interior(batch):
    student, teacher = batch
    beta = 0.3
    p = torch.softmax(teacher, -1)
    s = torch.softmax(student, -1)
    m = beta * p + (1 - beta) * s
    raw = beta * (p * (p / m).log()).sum(-1) + (1 - beta) * (s * (s / m).log()).sum(-1)
    torch.testing.assert_close(
        losses.jsd(student, teacher, 1.0, beta), raw / (beta * (1 - beta)), rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize("beta", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_jsd_is_nonnegative_and_zero_at_the_teacher(batch, beta):
    student, teacher = batch
    assert (losses.jsd(student, teacher, 1.0, beta) >= 0).all()
    assert (losses.jsd(student, teacher, 1.0, beta) > 1e-6).all()
    # student == teacher (same logits, tau = 1): zero divergence
    same = losses.jsd(teacher, teacher, 1.0, beta)
    torch.testing.assert_close(same, torch.zeros_like(same), rtol=0, atol=1e-12)
    # a shifted copy is the same policy
    same = losses.jsd(teacher + 3.0, teacher, 1.0, beta)
    torch.testing.assert_close(same, torch.zeros_like(same), rtol=0, atol=1e-12)


def test_nll_is_minus_log_prob_of_teacher_argmax(batch):
    student, teacher = batch
    out = losses.nll(student, teacher, 1.0)
    lps = torch.log_softmax(student, -1)
    for b in range(student.shape[0]):
        best = int(torch.argmax(teacher[b]))
        assert out[b].item() == pytest.approx(-lps[b, best].item(), abs=1e-12)
    # nll ignores tau
    assert torch.equal(out, losses.nll(student, teacher, 0.01))


def test_mse_is_sum_of_squared_differences(batch):
    student, teacher = batch
    out = losses.mse(student, teacher, 1.0)
    for b in range(student.shape[0]):
        expect = sum(
            (teacher[b, a].item() - student[b, a].item()) ** 2 for a in range(student.shape[1])
        )
        assert out[b].item() == pytest.approx(expect, rel=1e-12)


def test_losses_keep_leading_batch_dimensions():
    g = _gen(1)
    student = torch.randn(2, 3, 4, generator=g, dtype=DT)
    teacher = torch.randn(2, 3, 4, generator=g, dtype=DT)
    for name in variants.LOSSES:
        out = variants.state_loss(name, student, teacher, 0.5, 0.5)
        assert out.shape == (2, 3), name
        assert out.dtype == DT, name
    assert torch.equal(
        variants.state_loss("none", student, teacher, 0.5, 0.5), torch.zeros(2, 3, dtype=DT)
    )


def test_kl_and_entropy_helpers():
    p = torch.tensor([0.5, 0.5, 0.0], dtype=DT).log()
    q = torch.tensor([0.25, 0.25, 0.5], dtype=DT).log()
    assert kl(p, q).item() == pytest.approx(math.log(2.0), abs=1e-12)  # 0 log 0 = 0
    assert entropy(p).item() == pytest.approx(math.log(2.0), abs=1e-12)


# ---- temperature ------------------------------------------------------------------------------


@pytest.mark.parametrize("tau", [0.01, 0.5, 1.0, 3.0])
def test_teacher_log_probs_is_log_softmax_at_temperature(batch, tau):
    _, teacher = batch
    torch.testing.assert_close(
        teacher_log_probs(teacher, tau), torch.log_softmax(teacher / tau, -1), rtol=0, atol=1e-12
    )


def test_teacher_tau_zero_is_argmax_with_ties_split():
    out = torch.tensor([[1.0, 3.0, 3.0, 0.0], [5.0, 1.0, 2.0, 4.0]], dtype=DT)
    probs = teacher_log_probs(out, 0.0).exp()
    expect = torch.tensor([[0.0, 0.5, 0.5, 0.0], [1.0, 0.0, 0.0, 0.0]], dtype=DT)
    torch.testing.assert_close(probs.to(DT), expect, rtol=0, atol=1e-12)


def test_teacher_tau_zero_keeps_dtype():
    out = torch.tensor([[1.0, 3.0, 3.0, 3.0]], dtype=DT)
    lp = teacher_log_probs(out, 0.0)
    assert lp.dtype == DT
    assert lp.exp().sum().item() == pytest.approx(1.0, abs=1e-15)


def test_small_tau_approaches_argmax(batch):
    _, teacher = batch
    hard = teacher_log_probs(teacher, 0.0).exp().to(DT)
    errs = [
        (teacher_log_probs(teacher, tau).exp() - hard).abs().max().item()
        for tau in (1.0, 0.1, 0.001)
    ]
    assert errs[0] > errs[1] > errs[2]
    assert errs[2] < 1e-6


def test_negative_tau_is_refused_by_the_policy():
    with pytest.raises(ValueError, match="tau"):
        teacher_log_probs(torch.zeros(3), -0.5)


def test_rusu_forward_kl_scales_teacher_only(batch):
    student, teacher = batch
    tau = 0.01
    out = losses.forward_kl(student, teacher, tau)
    p = torch.softmax(teacher / tau, -1)
    unscaled = (p * (torch.log_softmax(teacher / tau, -1) - torch.log_softmax(student, -1))).sum(-1)
    scaled = (
        p * (torch.log_softmax(teacher / tau, -1) - torch.log_softmax(student / tau, -1))
    ).sum(-1)
    torch.testing.assert_close(out, unscaled, rtol=1e-12, atol=1e-12)
    assert (out - scaled).abs().max() > 1e-3
    # the student's policy is the softmax of its raw outputs
    torch.testing.assert_close(
        student_log_probs(student), torch.log_softmax(student, -1), rtol=0, atol=1e-12
    )
    rusu = variants.get("rusu_kl").variant
    assert rusu.loss == "forward_kl" and rusu.tau == 0.01


# ---- control ----------------------------------------------------------------------------------

CONTROLS = [
    Control(kind="teacher"),
    Control(kind="student"),
    Control(kind="uniform"),
    Control(kind="teacher", epsilon=0.05, teacher_tau=0.0),
    Control(kind="student", epsilon=0.3),
    Control(kind="mixture", beta=0.3),
    Control(kind="mixture", beta=0.9, schedule="linear", beta_final=0.1, horizon=10, epsilon=0.1),
    Control(kind="mixture", beta=1.0, schedule="exponential", decay=0.9),
]


@pytest.mark.parametrize("control", CONTROLS, ids=lambda c: c.describe())
def test_control_weights_sum_to_one_and_probs_are_distributions(control):
    g = _gen(2)
    tp = torch.softmax(torch.randn(6, 4, generator=g, dtype=DT), -1)
    sp = torch.softmax(torch.randn(6, 4, generator=g, dtype=DT), -1)
    for it in (0, 1, 5, 10, 100):
        w = control.weights(it)
        assert all(x >= 0 for x in w)
        assert sum(w) == pytest.approx(1.0, abs=1e-12)
        q = control.probs(tp, sp, it)
        assert q.shape == (6, 4)
        assert (q >= 0).all()
        torch.testing.assert_close(q.sum(-1), torch.ones(6, dtype=DT), rtol=0, atol=1e-12)
        # the mixture is what the weights say
        torch.testing.assert_close(q, w[0] * tp + w[1] * sp + w[2] / 4, rtol=0, atol=1e-12)


def test_control_pure_kinds():
    assert Control(kind="teacher").weights(7) == (1.0, 0.0, 0.0)
    assert Control(kind="student").weights(7) == (0.0, 1.0, 0.0)
    assert Control(kind="uniform").weights(7) == (0.0, 0.0, 1.0)


def test_mixture_constant_schedule():
    c = Control(kind="mixture", beta=0.3)
    for it in (0, 10, 10_000):
        assert c.beta_at(it) == 0.3
        wt, ws, wu = c.weights(it)
        assert wt == pytest.approx(0.3) and ws == pytest.approx(0.7) and wu == 0.0


def test_mixture_linear_schedule():
    c = Control(kind="mixture", beta=0.8, schedule="linear", beta_final=0.2, horizon=10)
    assert c.beta_at(0) == pytest.approx(0.8)
    assert c.beta_at(5) == pytest.approx(0.5)
    assert c.beta_at(10) == pytest.approx(0.2)
    assert c.beta_at(50) == pytest.approx(0.2)  # held after the horizon
    values = [c.beta_at(i) for i in range(12)]
    assert all(a >= b for a, b in itertools.pairwise(values))


def test_mixture_exponential_schedule():
    c = Control(kind="mixture", beta=0.9, schedule="exponential", decay=0.5)
    for it in range(6):
        assert c.beta_at(it) == pytest.approx(0.9 * 0.5**it)
    dagger = variants.get("dagger").variant.control
    assert dagger.beta_at(0) == 1.0
    assert dagger.beta_at(100) == pytest.approx(0.995**100)


@pytest.mark.parametrize("kind", ["teacher", "student", "mixture"])
def test_epsilon_floor(kind):
    eps = 0.2
    c = Control(kind=kind, beta=0.5, epsilon=eps) if kind == "mixture" else Control(kind=kind, epsilon=eps)
    tp = torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=DT)
    sp = torch.tensor([[0.0, 1.0, 0.0, 0.0]], dtype=DT)
    q = c.probs(tp, sp, 0)
    assert (q >= eps / 4 - 1e-15).all()
    assert q[0, 2].item() == pytest.approx(eps / 4) and q[0, 3].item() == pytest.approx(eps / 4)
    assert c.weights(0)[2] == pytest.approx(eps)


def test_control_dependence_flags():
    assert Control(kind="student").depends_on_student and Control(kind="student").is_pure_student
    assert not Control(kind="teacher").depends_on_student
    assert not Control(kind="uniform").depends_on_student
    assert not Control(kind="mixture", beta=1.0).depends_on_student
    assert Control(kind="mixture", beta=0.5).depends_on_student
    assert not Control(kind="mixture", beta=0.5).is_pure_student
    assert Control(kind="mixture", beta=0.0).is_pure_student
    assert not Control(kind="student", epsilon=0.1).is_pure_student
    assert Control(kind="mixture", beta=1.0, schedule="exponential").depends_on_student


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"kind": "bogus"}, ["kind", "bogus", "allowed", "mixture"]),
        ({"kind": "mixture", "schedule": "cosine"}, ["schedule", "cosine", "allowed", "linear"]),
        ({"beta": 1.5}, ["beta", "1.5", "allowed"]),
        ({"beta": float("nan")}, ["beta", "nan", "allowed"]),
        ({"epsilon": -0.1}, ["epsilon", "-0.1", "allowed"]),
        ({"beta_final": 2.0}, ["beta_final", "allowed"]),
        ({"decay": 0.0}, ["decay", "allowed"]),
        ({"horizon": 0}, ["horizon", "allowed"]),
        ({"teacher_tau": -1.0}, ["teacher_tau", "allowed"]),
        ({"teacher_tau": float("inf")}, ["teacher_tau", "allowed"]),
        ({"kind": "student", "schedule": "linear"}, ["schedule", "mixture"]),
    ],
)
def test_control_validation(kwargs, words):
    with pytest.raises(VariantError) as err:
        Control(**kwargs)
    for w in words:
        assert w in str(err.value)


# ---- variant validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"loss": "bogus"}, ["loss", "bogus", "allowed", "cross_entropy"]),
        ({"reward": "bogus"}, ["reward", "bogus", "allowed", "teacher_logp"]),
        ({"tau": -0.5}, ["tau", "-0.5", "allowed"]),
        ({"tau": float("nan")}, ["tau", "nan", "allowed"]),
        ({"tau": float("inf")}, ["tau", "inf", "allowed"]),
        ({"gamma": 0.0}, ["gamma", "0.0", "allowed"]),
        ({"gamma": 1.5}, ["gamma", "1.5", "allowed"]),
        ({"gamma": -0.1}, ["gamma", "allowed"]),
        ({"jsd_beta": 1.5}, ["jsd_beta", "allowed"]),
        ({"n_step": 0}, ["n_step", "allowed"]),
        ({"loss": "none", "reward": "none"}, ["meaningless", "loss 'none'", "reward 'none'"]),
        (
            {"loss": "none", "reward": "teacher_logp", "v_cond": True},
            ["meaningless", "V cond", "none"],
        ),
        (
            {"loss": "none", "reward": "teacher_v", "env_reward": True},
            ["meaningless", "teacher V", "+R"],
        ),
        ({"loss": "none", "reward": "neg_next_loss"}, ["meaningless", "neg_next_loss", "none"]),
        ({"tau": 0.0, "loss": "reverse_kl"}, ["meaningless", "reverse_kl", "tau", "allowed"]),
        (
            {"tau": 0.0, "loss": "reverse_cross_entropy"},
            ["reverse_cross_entropy", "tau", "allowed"],
        ),
        ({"tau": 0.0, "loss": "jsd", "jsd_beta": 1.0}, ["jsd", "tau", "allowed"]),
        (
            {"tau": 0.0, "loss": "none", "reward": "teacher_logp"},
            ["teacher_logp", "tau", "allowed"],
        ),
        ({"tau": 0.0, "reward": "teacher_logp_next"}, ["teacher_logp_next", "tau", "allowed"]),
        ({"tau": 0.0, "loss": "none", "reward": "log_ratio"}, ["log_ratio", "tau", "allowed"]),
    ],
)
def test_variant_validation(kwargs, words):
    with pytest.raises(VariantError) as err:
        Variant(**kwargs)
    for w in words:
        assert w in str(err.value), (w, str(err.value))


def test_variant_error_is_a_value_error():
    assert issubclass(VariantError, ValueError)


def test_meaningful_combinations_are_accepted():
    Variant(loss="none", reward="none", env_reward=True)  # plain REINFORCE on the env reward
    Variant(tau=0.0, loss="cross_entropy")
    Variant(tau=0.0, loss="jsd", jsd_beta=0.5)
    Variant(tau=0.0, loss="nll")
    Variant(control=Control(kind="teacher"), loss="mse", v_cond=True)
    with pytest.raises(VariantError):
        variants.variant("on_policy_distill", loss="none")  # overrides are validated again


def test_variant_with_changes_and_revalidates():
    v = variants.variant("n_distill", tau=0.5)
    assert v.tau == 0.5 and v.reward == "neg_next_loss" and v.name == "n_distill[tau=0.5]"
    assert variants.variant("n_distill", tau=0.5, name="mine").name == "mine"
    with pytest.raises(VariantError, match="gamma"):
        v.with_(gamma=2.0)


# ---- catalogue ------------------------------------------------------------------------------

# (name, control kind, loss, reward, env_reward, v_cond, gradient field)
TABLE = [
    ("teacher_distill", "teacher", "cross_entropy", "none", False, False, True),
    ("on_policy_distill", "student", "cross_entropy", "none", False, False, False),
    ("entropy_regularised", "student", "none", "teacher_logp", False, False, True),
    ("n_distill", "student", "cross_entropy", "neg_next_loss", False, False, True),
    (
        "expected_entropy_regularised",
        "student",
        "reverse_cross_entropy",
        "teacher_logp_next",
        False,
        False,
        True,
    ),
    ("teacher_v_reward", "student", "none", "teacher_v", False, False, True),
    ("rusu_nll", "teacher", "nll", "none", False, False, True),
    ("rusu_mse", "teacher", "mse", "none", False, False, True),
    ("rusu_kl", "teacher", "forward_kl", "none", False, False, True),
    ("on_policy_distill_r", "student", "cross_entropy", "none", True, False, False),
    ("n_distill_r", "student", "cross_entropy", "neg_next_loss", True, False, True),
    (
        "expected_entropy_regularised_r",
        "student",
        "reverse_cross_entropy",
        "teacher_logp_next",
        True,
        False,
        True,
    ),
    ("on_policy_distill_r_vcond", "student", "cross_entropy", "none", True, True, False),
    ("kl_regularised", "student", "none", "log_ratio", False, False, True),
    ("dagger", "mixture", "nll", "none", False, False, False),
]


@pytest.mark.parametrize("row", TABLE, ids=[r[0] for r in TABLE])
def test_catalogue_rows(row):
    name, kind, loss, reward, env, vcond, field = row
    entry = variants.get(name)
    v = entry.variant
    assert entry.name == name == v.name
    assert v.control.kind == kind
    assert (v.loss, v.reward, v.env_reward, v.v_cond) == (loss, reward, env, vcond)
    assert v.gradient_field is field
    assert entry.reference


def test_catalogue_has_every_documented_row():
    assert set(CATALOGUE) >= {r[0] for r in TABLE}


def test_rusu_rows_use_an_epsilon_greedy_teacher_and_replay():
    for name in ("rusu_nll", "rusu_mse", "rusu_kl"):
        entry = variants.get(name)
        c = entry.variant.control
        assert c.kind == "teacher" and c.epsilon == 0.05 and c.teacher_tau == 0.0
        assert entry.variant.replay and entry.to_dict()["replay"] is True
        assert "Rusu" in entry.reference
    assert "Czarnecki" in variants.get("n_distill").reference


def test_dagger_decays_from_the_teacher():
    c = variants.get("dagger").variant.control
    assert c.kind == "mixture" and c.schedule in ("linear", "exponential") and c.beta == 1.0
    assert c.beta_at(500) < c.beta_at(0)


def test_unknown_catalogue_name():
    with pytest.raises(VariantError) as err:
        variants.get("no_such_variant")
    assert "no_such_variant" in str(err.value) and "n_distill" in str(err.value)


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_entry_to_dict(name):
    entry = CATALOGUE[name]
    d = entry.to_dict()
    assert {"name", "control", "loss", "reward", "gradient_field", "reference"} <= set(d)
    assert d["name"] == name
    assert d["gradient_field"] is entry.variant.gradient_field
    assert d["loss"] == entry.variant.loss and d["reward"] == entry.variant.reward
    assert d["reference"] == entry.reference
    json.dumps(d)  # plain data
    assert Variant.from_dict(d["parts"]) == entry.variant


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_variant_dict_round_trip(name):
    v = CATALOGUE[name].variant
    assert Variant.from_dict(v.to_dict()) == v
    assert Variant.from_dict(json.loads(json.dumps(v.to_dict()))) == v


def test_variant_dict_round_trip_of_a_custom_variant():
    v = Variant(
        control=Control(
            kind="mixture",
            beta=0.7,
            schedule="linear",
            beta_final=0.1,
            horizon=20,
            epsilon=0.05,
            teacher_tau=0.0,
        ),
        loss="jsd",
        jsd_beta=0.25,
        reward="neg_next_loss",
        env_reward=True,
        tau=0.4,
        gamma=0.9,
        n_step=3,
        name="custom",
    )
    assert Variant.from_dict(v.to_dict()) == v


def test_from_dict_rejects_unknown_keys():
    d = variants.get("n_distill").variant.to_dict()
    with pytest.raises(VariantError) as err:
        Variant.from_dict({**d, "temperature": 0.1})
    assert "temperature" in str(err.value) and "allowed" in str(err.value)
    d["control"] = {**d["control"], "eps": 0.1}
    with pytest.raises(VariantError) as err:
        Variant.from_dict(d)
    assert "eps" in str(err.value) and "control" in str(err.value)


def test_from_dict_validates_values():
    d = variants.get("n_distill").variant.to_dict()
    d["gamma"] = 3.0
    with pytest.raises(VariantError, match="gamma"):
        Variant.from_dict(d)


# ---- surrogate ------------------------------------------------------------------------------


def _rtg_loop(rhat: list[float], gamma: float, n_step: int | None) -> list[float]:
    out = []
    for t in range(len(rhat)):
        end = len(rhat) if n_step is None else min(len(rhat), t + n_step)
        out.append(sum(gamma ** (i - t) * rhat[i] for i in range(t, end)))
    return out


@pytest.mark.parametrize("gamma", [1.0, 0.9, 0.5])
@pytest.mark.parametrize("n_step", [None, 1, 3, 20])
def test_returns_to_go_matches_a_loop(gamma, n_step):
    rhat = torch.randn(4, 9, generator=_gen(3), dtype=DT)
    out = returns_to_go(rhat, gamma, n_step)
    assert out.shape == rhat.shape
    for b in range(4):
        expect = _rtg_loop(rhat[b].tolist(), gamma, n_step)
        assert out[b].tolist() == pytest.approx(expect, rel=1e-12, abs=1e-12)


def _trajectories(seed: int = 4, b: int = 3, t: int = 6, a: int = 4):
    g = _gen(seed)
    student = torch.randn(b, t, a, generator=g, dtype=DT)
    teacher = torch.randn(b, t, a, generator=g, dtype=DT)
    actions = torch.randint(0, a, (b, t), generator=g)
    rewards = torch.randn(b, t, generator=g, dtype=DT)
    v_teacher = torch.randn(b, t, generator=g, dtype=DT)
    lengths = torch.tensor([t, 4, 1])[:b]
    valid = torch.arange(t)[None, :] < lengths[:, None]
    return student, teacher, actions, rewards, v_teacher, valid, lengths


REWARD_VARIANTS = [
    "teacher_distill",
    "entropy_regularised",
    "n_distill",
    "expected_entropy_regularised",
    "teacher_v_reward",
    "kl_regularised",
    "on_policy_distill_r",
    "n_distill_r",
]


@pytest.mark.parametrize("name", REWARD_VARIANTS)
def test_pseudo_rewards_are_zero_past_the_end(name):
    v = variants.variant(name)
    student, teacher, actions, rewards, v_teacher, valid, _ = _trajectories()
    loss = torch.where(valid, variants.masked_state_loss(v, student, teacher), 0.0)
    rhat = pseudo_rewards(
        v,
        student_out=student,
        teacher_out=teacher,
        actions=actions,
        valid=valid,
        loss=loss,
        env_reward=rewards,
        v_teacher=v_teacher,
    )
    assert rhat.shape == valid.shape
    assert (rhat[~valid] == 0).all()
    if v.reward != "none" or v.env_reward:
        assert (rhat[valid] != 0).any()


@pytest.mark.parametrize(
    "name", [*REWARD_VARIANTS, "on_policy_distill_r_vcond", "dagger", "rusu_mse"]
)
def test_surrogate_ignores_padding(name):
    v = variants.variant(name)
    student, teacher, actions, rewards, v_teacher, valid, _ = _trajectories()
    v_student = torch.randn(v_teacher.shape, generator=_gen(5), dtype=DT)
    kwargs = dict(env_reward=rewards, v_teacher=v_teacher, v_student=v_student)
    base = surrogate(
        v, student_out=student, teacher_out=teacher, actions=actions, valid=valid, **kwargs
    )
    assert base.shape == (3,)
    # scramble everything past the end of each episode
    g = _gen(6)
    pad = ~valid
    s2, t2, a2 = student.clone(), teacher.clone(), actions.clone()
    s2[pad] = torch.randn(int(pad.sum()), 4, generator=g, dtype=DT) * 5
    t2[pad] = torch.randn(int(pad.sum()), 4, generator=g, dtype=DT) * 5
    a2[pad] = torch.randint(0, 4, (int(pad.sum()),), generator=g)
    r2, vt2, vs2 = rewards.clone(), v_teacher.clone(), v_student.clone()
    r2[pad], vt2[pad], vs2[pad] = 100.0, -100.0, 100.0
    other = surrogate(
        v,
        student_out=s2,
        teacher_out=t2,
        actions=a2,
        valid=valid,
        env_reward=r2,
        v_teacher=vt2,
        v_student=vs2,
    )
    torch.testing.assert_close(other, base, rtol=1e-12, atol=1e-12)
    # and the padded rows equal the same episodes cut to their own length
    lengths = valid.sum(-1)
    for b in range(3):
        n = int(lengths[b])
        alone = surrogate(
            v,
            student_out=student[b : b + 1, :n],
            teacher_out=teacher[b : b + 1, :n],
            actions=actions[b : b + 1, :n],
            valid=valid[b : b + 1, :n],
            env_reward=rewards[b : b + 1, :n],
            v_teacher=v_teacher[b : b + 1, :n],
            v_student=v_student[b : b + 1, :n],
        )
        assert alone.item() == pytest.approx(base[b].item(), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("loss", ["cross_entropy", "jsd", "mse"])
def test_n_distill_reward_is_minus_the_next_loss(loss):
    v = variants.variant("n_distill", loss=loss)
    student, teacher, actions, _, _, valid, lengths = _trajectories()
    per_state = variants.state_loss(loss, student, teacher, v.tau, v.jsd_beta)
    loss_t = torch.where(valid, per_state, 0.0)
    rhat = pseudo_rewards(
        v, student_out=student, teacher_out=teacher, actions=actions, valid=valid, loss=loss_t
    )
    for b in range(3):
        n = int(lengths[b])
        for t in range(n - 1):
            assert rhat[b, t].item() == pytest.approx(-per_state[b, t + 1].item(), rel=1e-12)
        assert rhat[b, n - 1].item() == 0.0  # nothing after the last step


def test_teacher_v_and_next_action_rewards_step_by_step():
    student, teacher, actions, rewards, v_teacher, valid, lengths = _trajectories()
    gamma = 0.8
    v = variants.variant("teacher_v_reward", gamma=gamma)
    loss = torch.zeros(valid.shape, dtype=DT)
    rhat = pseudo_rewards(
        v,
        student_out=student,
        teacher_out=teacher,
        actions=actions,
        valid=valid,
        loss=loss,
        env_reward=rewards,
        v_teacher=v_teacher,
    )
    e = variants.variant("expected_entropy_regularised", tau=0.5)
    rhat_e = pseudo_rewards(
        e, student_out=student, teacher_out=teacher, actions=actions, valid=valid, loss=loss
    )
    lpt = torch.log_softmax(teacher / 0.5, -1)
    for b in range(3):
        n = int(lengths[b])
        for t in range(n):
            nxt = gamma * v_teacher[b, t + 1].item() if t + 1 < n else 0.0
            expect = rewards[b, t].item() + nxt - v_teacher[b, t].item()
            assert rhat[b, t].item() == pytest.approx(expect, rel=1e-12, abs=1e-12)
            nxt_e = lpt[b, t + 1, actions[b, t + 1]].item() if t + 1 < n else 0.0
            assert rhat_e[b, t].item() == pytest.approx(nxt_e, rel=1e-12, abs=1e-12)


def test_surrogate_value_matches_its_formula():
    v = variants.variant("entropy_regularised", gamma=0.9, n_step=2, tau=0.7)
    student, teacher, actions, _, _, valid, lengths = _trajectories()
    out = surrogate(v, student_out=student, teacher_out=teacher, actions=actions, valid=valid)
    lps = torch.log_softmax(student, -1)
    lpt = torch.log_softmax(teacher / 0.7, -1)
    for b in range(3):
        n = int(lengths[b])
        r = [lpt[b, t, actions[b, t]].item() for t in range(n)]
        ret = _rtg_loop(r, 0.9, 2)
        expect = sum(-lps[b, t, actions[b, t]].item() * ret[t] for t in range(n))
        assert out[b].item() == pytest.approx(expect, rel=1e-12)


def test_surrogate_holds_the_return_under_stopgrad():
    v = variants.variant("kl_regularised")
    student, teacher, actions, _, _, valid, _ = _trajectories()
    x = student.clone().requires_grad_()
    out = surrogate(v, student_out=x, teacher_out=teacher, actions=actions, valid=valid).sum()
    (grad,) = torch.autograd.grad(out, x)
    # by hand: d/dx of -log pi(a_t) * R_t with R fixed
    lps = torch.log_softmax(student, -1)
    rhat = torch.where(
        valid, (torch.log_softmax(teacher, -1) - lps).gather(-1, actions[..., None])[..., 0], 0.0
    )
    ret = returns_to_go(rhat, 1.0)
    onehot = torch.nn.functional.one_hot(actions, 4).to(DT)
    expect = -(onehot - lps.exp()) * (ret * valid)[..., None]
    torch.testing.assert_close(grad, expect, rtol=1e-10, atol=1e-12)


def test_v_cond_masks_the_loss():
    v = variants.variant("on_policy_distill_r_vcond")
    g = _gen(7)
    student = torch.randn(5, 3, generator=g, dtype=DT)
    teacher = torch.randn(5, 3, generator=g, dtype=DT)
    vt = torch.tensor([1.0, 0.0, 2.0, -1.0, 0.5], dtype=DT)
    vs = torch.tensor([0.0, 1.0, 2.0, -2.0, 0.6], dtype=DT)
    out = variants.masked_state_loss(v, student, teacher, vt, vs)
    full = losses.cross_entropy(student, teacher, 1.0)
    keep = torch.tensor([True, False, False, True, False])
    torch.testing.assert_close(out[keep], full[keep], rtol=0, atol=0)
    assert (out[~keep] == 0).all()
    with pytest.raises(ValueError):
        variants.masked_state_loss(v, student, teacher, vt, None)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"env_reward": "false"}, "env_reward"),
        ({"v_cond": 1}, "v_cond"),
        ({"n_step": 1.5}, "n_step"),
        ({"n_step": True}, "n_step"),
        ({"tau": "0.5"}, "tau"),
        ({"gamma": True}, "gamma"),
        ({"control": {"kind": "teacher"}}, "control"),
    ],
)
def test_wrongly_typed_parts_are_refused(kwargs, field):
    with pytest.raises(VariantError, match=field):
        Variant(**kwargs)


def test_control_type_and_beta_checks():
    with pytest.raises(VariantError, match="beta"):
        Control(kind="mixture", beta="0.5")
    with pytest.raises(VariantError, match="applies to kind 'mixture'"):
        Control(kind="student", beta=0.3)
    with pytest.raises(VariantError, match="horizon"):
        Control(kind="mixture", schedule="linear", horizon=2.5)


def test_unknown_override_is_a_variant_error():
    with pytest.raises(VariantError, match="foo"):
        variants.variant("n_distill", foo=1)


def test_fingerprint_ignores_the_name_and_follows_the_parts():
    a = variants.variant("n_distill")
    assert a.fingerprint == a.with_(name="other").fingerprint
    assert a.fingerprint != a.with_(tau=0.5).fingerprint
    assert a.fingerprint == Variant.from_dict(a.to_dict()).fingerprint


# ---- replay: derived from the variant, one source of truth ---------------------------------------

REPLAYED = {"teacher_distill", "rusu_nll", "rusu_mse", "rusu_kl"}


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_replay_follows_the_catalogue_rows(name):
    """Fixed data with no pseudo-reward and no +R replay; the student's own data (dagger's
    decaying mixture included) and any reward do not; the catalogue reads the variant's flag."""
    entry = CATALOGUE[name]
    assert entry.variant.replay is (name in REPLAYED)
    assert entry.to_dict()["replay"] is entry.variant.replay


def test_replay_needs_fixed_data_and_no_reward():
    teacher = Control(kind="teacher")
    assert Variant(control=Control(kind="uniform"), loss="mse").replay
    assert Variant(control=Control(kind="mixture", beta=1.0, epsilon=0.3)).replay  # fixed mixture
    assert not Variant(control=Control(kind="mixture", beta=0.5)).replay
    assert not Variant(control=teacher, env_reward=True).replay
    assert not Variant(control=teacher, reward="teacher_logp").replay
    assert not Variant(control=teacher, loss="none", reward="teacher_v").replay  # r_t is inside it


# ---- the reward registry: properties, not names ----------------------------------------------------


def _register(monkeypatch, *specs: RewardSpec) -> None:
    """Register rewards in a copy of the registry, everywhere it is read."""
    registry = {**reward_registry.REWARDS, **{s.name: s for s in specs}}
    for module in (reward_registry, spec_module, variants):
        monkeypatch.setattr(module, "REWARDS", registry)


def _now_logp(*, gamma, teacher_logp, student_logp, loss, v_teacher):
    return RewardParts(now=0.5 * teacher_logp)


def test_registry_entries_are_consistent():
    for name, spec in reward_registry.REWARDS.items():
        assert spec.name == name and spec.summary and spec.words
        if spec.completes != "any":
            assert spec.completes <= set(variants.LOSSES), name
    assert reward_registry.REWARDS["none"].is_zero
    assert not any(s.is_zero for n, s in reward_registry.REWARDS.items() if n != "none")


def test_reward_parts_of_an_unknown_reward_name_what_is_allowed():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="unknown pseudo-reward 'bogus'; allowed: none, teacher_logp"):
        variants.reward_parts("bogus", env_reward=False, gamma=1.0, teacher_logp=x, student_logp=x,
                              loss=x[:, 0], v_teacher=None)


def test_reward_parts_env_weight_follows_the_properties():
    x = torch.zeros(2, 3)
    kw = dict(gamma=0.9, teacher_logp=x, student_logp=x, loss=x[:, 0], v_teacher=x[:, 0])
    assert variants.reward_parts("teacher_v", env_reward=False, **kw).env == 1.0  # includes r_t
    assert variants.reward_parts("teacher_logp", env_reward=False, **kw).env == 0.0
    assert variants.reward_parts("teacher_logp", env_reward=True, **kw).env == 1.0
    with pytest.raises(ValueError, match="log pi_T"):
        variants.reward_parts("log_ratio", env_reward=False, **{**kw, "teacher_logp": None})


def _derived(control: Control, loss: str, reward: str, env: bool, gamma: float, n_step: int | None):
    """Everything a variant derives from its reward, or the error that refuses it."""
    try:
        v = Variant(control=control, loss=loss, reward=reward, env_reward=env, gamma=gamma, n_step=n_step,
                    tau=0.5)
    except VariantError as err:
        return str(err).replace(f"reward {reward!r}", "reward <name>")
    return (v.gradient_field, v.objective, v.replay)


@pytest.mark.parametrize("original", list(reward_registry.REWARDS))
def test_a_renamed_copy_of_a_reward_derives_the_same_answers(monkeypatch, original):
    """The derivations read the properties: a copy under another name gets the same answers."""
    clone = dataclasses.replace(reward_registry.REWARDS[original], name="clone")
    _register(monkeypatch, clone)
    controls = [Control(kind="teacher"), Control(kind="student"), Control(kind="mixture", beta=0.5),
                Control(kind="student", epsilon=0.1)]
    for control, loss, env, gamma, n_step in itertools.product(
            controls, list(variants.LOSSES), (False, True), (1.0, 0.9), (None, 2)):
        case = (control, loss, env, gamma, n_step)
        assert _derived(*case[:2], "clone", *case[2:]) == _derived(*case[:2], original, *case[2:]), case


def test_a_new_reward_gets_its_gradient_field_from_its_properties(monkeypatch):
    _register(
        monkeypatch,
        RewardSpec("half_logp", "0.5 log pi_T(a_t | s_t)", _now_logp, completes=NO_LOSS, words="half log pi_T",
                   objective_term="- 0.5 log pi_T(a_t|s_t)", needs_teacher_logp=True),
        RewardSpec("half_logp_ce", "made up", _now_logp, completes=frozenset({"cross_entropy"}),
                   words="made up", student_dependent=True),
        RewardSpec("shaped", "r_t + shaping", None, completes="any", words="the shaped reward",
                   needs_v_teacher=True, needs_loss=True, includes_env_reward=True),
    )
    student, teacher = Control(kind="student"), Control(kind="teacher")
    v = Variant(control=student, loss="none", reward="half_logp", tau=0.5)
    assert v.gradient_field and v.objective == "E_{pi_theta}[sum_t - 0.5 log pi_T(a_t|s_t)]"
    assert v.with_(env_reward=True).objective == "E_{pi_theta}[sum_t - 0.5 log pi_T(a_t|s_t) - r_t]"
    assert not v.with_(loss="cross_entropy").gradient_field  # completes loss 'none' only
    assert not v.with_(gamma=0.9).gradient_field and not v.with_(n_step=2).gradient_field
    assert v.with_(control=teacher, loss="mse").gradient_field  # fixed data, student-independent reward
    with pytest.raises(VariantError, match="reward 'half_logp' needs log pi_T"):
        v.with_(tau=0.0)
    # a student-dependent reward that completes cross_entropy
    w = Variant(control=student, loss="cross_entropy", reward="half_logp_ce")
    assert w.gradient_field and w.objective == "E_{pi_theta}[sum_t cross_entropy(s_t)]"
    assert not w.with_(loss="mse").gradient_field
    assert not w.with_(control=teacher).gradient_field and not w.with_(control=teacher).replay
    # includes r_t, needs the loss, completes any loss
    x = Variant(control=student, loss="mse", reward="shaped")
    assert x.gradient_field and x.objective == "E_{pi_theta}[sum_t mse(s_t) - r_t]"
    assert not x.replay and not x.with_(control=teacher).replay
    with pytest.raises(VariantError, match="the shaped reward already contains the environment reward"):
        x.with_(env_reward=True)
    with pytest.raises(VariantError, match="reward 'shaped' is the shaped reward, which is zero with loss 'none'"):
        x.with_(loss="none")
    assert variants.reward_parts("shaped", env_reward=False, gamma=1.0, teacher_logp=None,
                                 student_logp=torch.zeros(1, 2), loss=torch.zeros(1), v_teacher=None).env == 1.0


def test_changing_a_property_changes_the_answer_under_the_same_name(monkeypatch):
    """Expected entropy regularised is a gradient field only because its reward completes its loss."""
    v = variants.variant("expected_entropy_regularised")
    assert v.gradient_field
    spec = reward_registry.REWARDS["teacher_logp_next"]
    _register(monkeypatch, dataclasses.replace(spec, completes=NO_LOSS))
    assert not Variant.from_dict(v.to_dict()).gradient_field
    n = variants.variant("n_distill", control=Control(kind="teacher"))
    assert not n.gradient_field
    _register(monkeypatch, dataclasses.replace(reward_registry.REWARDS["neg_next_loss"], student_dependent=False))
    assert Variant.from_dict(n.to_dict()).gradient_field


def _regrouping_cases() -> list[variants.Variant]:
    cases = [e.variant for e in variants.CATALOGUE.values()]
    base = variants.variant("entropy_regularised")
    cases += [base.with_(gamma=0.9), base.with_(n_step=2, critic="learned", gamma=0.95),
              variants.variant("n_distill").with_(env_reward=True, n_step=3),
              variants.variant("on_policy_distill").with_(loss="reverse_kl", tau=0.5)]
    return cases


@pytest.mark.parametrize("variant", _regrouping_cases(), ids=lambda v: v.name or v.describe())
def test_regrouped_surrogate_has_the_per_step_surrogates_value_and_gradient(variant):
    """Summing the per-step surrogate over trajectories in a finite state space, or regrouping its terms
    by state, gives the same loss and the same gradients for the student's table and a learned critic."""
    from variants.policy import student_log_probs

    gen = torch.Generator().manual_seed(3)
    n_states, n_actions, b, t = 6, 3, 5, 9
    table = torch.randn(n_states, n_actions, generator=gen, dtype=torch.float64, requires_grad=True)
    critic = torch.randn(n_states, generator=gen, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(n_states, n_actions, generator=gen, dtype=torch.float64)
    v_teacher = torch.randn(n_states, generator=gen, dtype=torch.float64)
    v_student = torch.randn(n_states, generator=gen, dtype=torch.float64)
    states = torch.randint(n_states, (b, t), generator=gen)
    actions = torch.randint(n_actions, (b, t), generator=gen)
    env_reward = torch.randn(b, t, generator=gen, dtype=torch.float64)
    valid = torch.arange(t).unsqueeze(0) < torch.tensor([9, 1, 4, 7, 2]).unsqueeze(-1)
    uses_v = variant.reward_spec.needs_v_teacher or variant.v_cond

    per_step = variants.surrogate(
        variant, student_out=table[states], teacher_out=teacher[states], actions=actions, valid=valid,
        env_reward=env_reward, v_teacher=v_teacher[states] if uses_v else None,
        v_student=v_student[states] if variant.v_cond else None,
        v_critic=critic[states] if variant.critic != "none" else None).sum()

    index = valid.nonzero(as_tuple=True)
    rows, where, counts = torch.unique(states[index], return_inverse=True, return_counts=True)
    v_t, v_s = (v_teacher[rows] if uses_v else None), (v_student[rows] if variant.v_cond else None)
    action_returns = state_returns = None
    if variants.has_returns(variant):
        loss = variants.masked_state_loss(variant, table[rows].detach(), teacher[rows], v_t, v_s)
        ret = variants.step_returns(
            variant, index, valid, student_logp=student_log_probs(table[rows].detach())[where],
            teacher_out=teacher[rows][where], actions=actions[index], loss=loss[where],
            env_reward=env_reward[index], v_teacher=None if v_t is None else v_t[where],
            v_critic=critic[states].detach() if variant.critic != "none" else None)
        action_returns = ret.new_zeros(len(rows), n_actions).index_put_((where, actions[index]), ret, accumulate=True)
        state_returns = action_returns.sum(-1)
    regrouped = variants.regrouped_surrogate(
        variant, student_out=table[rows], teacher_out=teacher[rows], visits=counts, action_returns=action_returns,
        v_teacher=v_t, v_student=v_s, v_critic=critic[rows] if variant.critic == "learned" else None,
        state_returns=state_returns)

    inputs = [table, critic] if variant.critic == "learned" else [table]
    want = torch.autograd.grad(per_step, inputs)
    got = torch.autograd.grad(regrouped, inputs)
    for a, b_ in zip(want, got, strict=True):
        torch.testing.assert_close(b_, a, rtol=1e-10, atol=1e-12)
    if variant.critic != "learned":  # a learned critic's regrouped value omits a constant
        torch.testing.assert_close(regrouped, per_step, rtol=1e-10, atol=1e-12)

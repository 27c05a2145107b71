"""The exact engine: expected updates, declared objectives, and the update field's Jacobian.

Three independent checks:

1. For every gradient-field variant, the gradient of the expected surrogate (the expected
   update) equals the gradient of the objective the variant declares, written independently
   with a differentiable occupancy.
2. On a small acyclic MDP built by hand, every trajectory is enumerated with its probability
   under the control policy and fed through the *sampled* surrogate; the probability-weighted
   sum of autograd gradients must equal the exact engine's expected update, for every variant.
3. The Jacobian of the update field is asymmetric for on-policy distill (Theorem 1) and
   symmetric for N-distill and expected entropy regularised (Theorem 2).
"""

from __future__ import annotations

import pytest
import torch

import variants
from study.tabular import exact, generators, teachers
from study.tabular.mdp import TabularMDP
from study.tabular.students import Student
from variants import CATALOGUE, Control, Variant, VariantError
from variants import rewards as reward_registry
from variants import spec as spec_module
from variants.rewards import NO_LOSS, RewardParts, RewardSpec

DT = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


STUDENT = Control(kind="student")

# Combinations nobody named, to check that the derived gradient_field flag is honest.
EXTRA_FIELDS: dict[str, Variant] = {
    "teacher_control_env_reward": Variant(control=Control(kind="teacher"), env_reward=True),
    "teacher_control_teacher_v": Variant(
        control=Control(kind="teacher"), loss="none", reward="teacher_v"
    ),
    "uniform_reverse_kl_next_logp": Variant(
        control=Control(kind="uniform"), loss="reverse_kl", reward="teacher_logp_next", tau=0.7
    ),
    "fixed_mixture_eps": Variant(
        control=Control(kind="mixture", beta=1.0, epsilon=0.2),
        loss="forward_kl",
        reward="teacher_logp",
        tau=0.5,
    ),
    "kl_regularised_r": variants.variant("kl_regularised", env_reward=True),
    "entropy_regularised_r": variants.variant("entropy_regularised", env_reward=True),
    "n_distill_jsd": variants.variant("n_distill", loss="jsd", jsd_beta=0.3),
    "n_distill_mse": variants.variant("n_distill", loss="mse"),
    "n_distill_reverse_kl": variants.variant("n_distill", loss="reverse_kl", tau=0.5),
    "n_distill_r_nll": variants.variant("n_distill_r", loss="nll"),
    "n_distill_argmax_teacher": variants.variant("n_distill", tau=0.0),
    "expected_er_tau": variants.variant("expected_entropy_regularised", tau=0.4),
    "teacher_v_tau": variants.variant("teacher_v_reward", tau=0.3),
    "reinforce": Variant(control=STUDENT, loss="none", reward="none", env_reward=True),
    "mixture_beta0_n_distill": Variant(
        control=Control(kind="mixture", beta=0.0), reward="neg_next_loss"
    ),
}

FIELD_CASES = {name: e.variant for name, e in CATALOGUE.items() if e.variant.gradient_field}
FIELD_CASES.update(EXTRA_FIELDS)


@pytest.fixture(scope="module")
def garnet() -> tuple[TabularMDP, torch.Tensor, torch.Tensor]:
    mdp = generators.garnet(
        2, n_states=6, n_actions=3, branching=2, absorb=0.15, n_terminal=1, seed=4, dtype=DT
    )
    g = _gen(11)
    teacher_out = 1.5 * torch.randn(2, 6, 3, generator=g, dtype=DT)
    logits = torch.randn(2, 6, 3, generator=g, dtype=DT)
    return mdp, teacher_out, logits


def _v_teacher(variant: Variant, mdp: TabularMDP, teacher_out: torch.Tensor) -> torch.Tensor:
    return teachers.teacher_values(mdp, teacher_out, variant.tau, variant.gamma).to(DT)


def _grad(fn, logits: torch.Tensor) -> torch.Tensor:
    x = logits.clone().requires_grad_()
    (g,) = torch.autograd.grad(fn(x).sum(), x)
    return g


def test_catalogue_has_gradient_fields_to_check():
    expected = {
        "teacher_distill",
        "entropy_regularised",
        "n_distill",
        "expected_entropy_regularised",
        "teacher_v_reward",
        "rusu_nll",
        "rusu_mse",
        "rusu_kl",
    }
    assert expected <= set(FIELD_CASES)
    assert "on_policy_distill" not in FIELD_CASES and "dagger" not in FIELD_CASES


# ---- 1. expected update = gradient of the declared objective -------------------------------------


@pytest.mark.parametrize("name", list(FIELD_CASES))
def test_expected_update_is_the_gradient_of_the_declared_objective(garnet, name):
    mdp, teacher_out, logits = garnet
    v = FIELD_CASES[name]
    assert v.gradient_field, name
    assert v.gamma == 1.0 and v.n_step is None
    vt = _v_teacher(v, mdp, teacher_out)
    update = _grad(lambda x: exact.expected_surrogate(v, mdp, teacher_out, x, v_teacher=vt), logits)
    objective = _grad(
        lambda x: exact.declared_objective(v, mdp, teacher_out, x, v_teacher=vt), logits
    )
    assert update.abs().max() > 1e-3  # a real update, not a vacuous zero
    scale = 1.0 + update.abs().max().item()
    torch.testing.assert_close(update, objective, rtol=0, atol=1e-9 * scale)


NOT_FIELDS = [name for name, e in CATALOGUE.items() if not e.variant.gradient_field]


@pytest.mark.parametrize("name", NOT_FIELDS)
def test_declared_objective_refuses_non_gradient_fields(garnet, name):
    mdp, teacher_out, logits = garnet
    with pytest.raises(VariantError, match="not a gradient field"):
        exact.declared_objective(CATALOGUE[name].variant, mdp, teacher_out, logits)


def test_the_gradient_check_has_power(garnet):
    """On-policy distill's update is not the gradient of E_pi[sum_t H(pi_T, pi_theta)(s_t)]."""
    mdp, teacher_out, logits = garnet
    v = variants.variant("on_policy_distill")
    update = _grad(lambda x: exact.expected_surrogate(v, mdp, teacher_out, x), logits)

    def naive(x):
        occ = mdp.occupancy(torch.softmax(x, -1))
        return (occ * variants.masked_state_loss(v, x, teacher_out)).sum(-1)

    assert (update - _grad(naive, logits)).abs().max() > 1e-3
    # while N-distill's update is exactly that gradient
    n = variants.variant("n_distill")
    update_n = _grad(lambda x: exact.expected_surrogate(n, mdp, teacher_out, x), logits)
    torch.testing.assert_close(update_n, _grad(naive, logits), rtol=0, atol=1e-9)


@pytest.mark.parametrize("critic", ["none", "exact"])
@pytest.mark.parametrize("n_step", [1, 2])
def test_gradient_field_flag_is_honest_under_n_step_truncation(garnet, n_step, critic):
    mdp, teacher_out, logits = garnet
    v = variants.variant("n_distill", n_step=n_step, critic=critic)
    params = logits[:1]
    one = mdp.select(torch.tensor([0]))
    jac = torch.func.jacrev(lambda p: exact.update_field(v, one, teacher_out[:1], lambda z: z, p))(
        params
    )
    jac = jac.reshape(18, 18)
    symmetric = ((jac - jac.T).norm() / jac.norm()).item() < 1e-8
    assert v.gradient_field == symmetric


# ---- 2. exact engine vs the sampled surrogate, by enumerating trajectories ---------------------


def _acyclic_mdp(absorb: float) -> TabularMDP:
    """Depth 3, two actions, up to two successors, terminal leaves 5 and 6."""
    succ = torch.tensor(
        [
            [[1, 2], [2, 5]],  # 0: root; action 1 may end at once
            [[3, 4], [4, 6]],  # 1
            [[3, 5], [4, 3]],  # 2
            [[5, 6], [6, 6]],  # 3: the same successor listed twice
            [[5, 6], [5, 5]],  # 4: a zero-probability branch
            [[5, 5], [5, 5]],  # 5: terminal
            [[6, 6], [6, 6]],  # 6: terminal
        ]
    )
    prob = torch.tensor(
        [
            [[0.6, 0.4], [0.7, 0.3]],
            [[0.5, 0.5], [0.8, 0.2]],
            [[0.9, 0.1], [0.25, 0.75]],
            [[0.5, 0.5], [0.3, 0.7]],
            [[0.2, 0.8], [1.0, 0.0]],
            [[1.0, 0.0], [1.0, 0.0]],
            [[1.0, 0.0], [1.0, 0.0]],
        ],
        dtype=DT,
    )
    reward = torch.randn(7, 2, 2, generator=_gen(21), dtype=DT)
    terminal = torch.tensor([False] * 5 + [True] * 2)
    start = torch.tensor([0.7, 0.3, 0, 0, 0, 0, 0], dtype=DT)
    return TabularMDP(
        succ=succ[None],
        prob=prob[None],
        reward=reward[None],
        terminal=terminal[None],
        start=start[None],
        absorb=torch.tensor([absorb], dtype=DT),
    ).validate()


def _control(
    variant: Variant, teacher_out: torch.Tensor, logits: torch.Tensor, it: int
) -> torch.Tensor:
    """The control policy, written out from the weights (independent of the exact engine)."""
    wt, ws, wu = variant.control.weights(it)
    tau = variant.control.teacher_tau if variant.control.teacher_tau is not None else variant.tau
    if tau == 0:
        pi_t = torch.nn.functional.one_hot(teacher_out.argmax(-1), teacher_out.shape[-1]).to(DT)
    else:
        pi_t = torch.softmax(teacher_out / tau, -1)
    return wt * pi_t + ws * torch.softmax(logits, -1) + wu / teacher_out.shape[-1]


def _enumerate(mdp: TabularMDP, q: torch.Tensor):
    """Every episode as (probability, [(s, a, r), ...])."""
    succ, prob, reward = mdp.succ[0], mdp.prob[0], mdp.reward[0]
    terminal, absorb = mdp.terminal[0], float(mdp.absorb[0])
    out = []

    def walk(s: int, p: float, path: list) -> None:
        for a in range(q.shape[-1]):
            for k in range(succ.shape[-1]):
                pk = p * float(q[s, a]) * float(prob[s, a, k])
                if pk == 0.0:
                    continue
                s2 = int(succ[s, a, k])
                step = [*path, (s, a, float(reward[s, a, k]))]
                if bool(terminal[s2]):
                    out.append((pk, step))
                else:
                    out.append((pk * absorb, step))
                    if absorb < 1.0:
                        walk(s2, pk * (1.0 - absorb), step)

    for s0 in range(mdp.n_states):
        if float(mdp.start[0, s0]) > 0:
            walk(s0, float(mdp.start[0, s0]), [])
    return out


def _sampled_expectation(variant, mdp, teacher_out, logits, v_teacher, v_student, it, v_critic=None):
    """Probability-weighted gradient of the sampled surrogate over all episodes."""
    q = _control(variant, teacher_out, logits, it)
    episodes = _enumerate(mdp, q)
    total_p = sum(p for p, _ in episodes)
    assert total_p == pytest.approx(1.0, abs=1e-12)
    b, t = len(episodes), max(len(path) for _, path in episodes)
    # padding holds garbage that the valid mask must hide
    states = torch.full((b, t), 2, dtype=torch.long)
    actions = torch.ones((b, t), dtype=torch.long)
    rewards = torch.full((b, t), 7.0, dtype=DT)
    valid = torch.zeros((b, t), dtype=torch.bool)
    weights = torch.tensor([p for p, _ in episodes], dtype=DT)
    for i, (_, path) in enumerate(episodes):
        for j, (s, a, r) in enumerate(path):
            states[i, j], actions[i, j], rewards[i, j], valid[i, j] = s, a, r, True
    x = logits.clone().requires_grad_()
    per_episode = variants.surrogate(
        variant,
        student_out=x[states],
        teacher_out=teacher_out[states],
        actions=actions,
        valid=valid,
        env_reward=rewards,
        v_teacher=v_teacher[states],
        v_student=v_student[states],
        v_critic=v_critic[states] if v_critic is not None else None,
    )
    (grad,) = torch.autograd.grad((weights * per_episode).sum(), x)
    return grad, b


ENUM_CASES: list[tuple[str, Variant, int]] = [(name, e.variant, 0) for name, e in CATALOGUE.items()]
ENUM_CASES += [
    ("dagger@300", variants.variant("dagger"), 300),
    (
        "mixture_linear@3",
        Variant(
            control=Control(
                kind="mixture", beta=0.9, schedule="linear", beta_final=0.2, horizon=4, epsilon=0.1
            ),
            reward="neg_next_loss",
            tau=0.6,
        ),
        3,
    ),
    (
        "uniform_jsd",
        Variant(
            control=Control(kind="uniform"), loss="jsd", jsd_beta=0.4, reward="teacher_logp_next"
        ),
        0,
    ),
    ("n_distill_gamma_nstep", variants.variant("n_distill_r", gamma=0.9, n_step=2), 0),
    ("expected_er_nstep1", variants.variant("expected_entropy_regularised", n_step=1, tau=0.5), 0),
    ("teacher_v_gamma", variants.variant("teacher_v_reward", gamma=0.8), 0),
    # an exact critic bootstraps the n-step return: in expectation, the whole return
    ("opd_r_td1_exact_critic", variants.variant("on_policy_distill_r", n_step=1, critic="exact"), 0),
    ("n_distill_r_td2_exact_critic", variants.variant("n_distill_r", n_step=2, gamma=0.9, critic="exact"), 0),
    ("teacher_v_td1_exact_critic", variants.variant("teacher_v_reward", n_step=1, critic="exact"), 0),
    (
        "vcond_td1_exact_critic",
        variants.variant("on_policy_distill_r_vcond", n_step=1, critic="exact", control=Control(kind="teacher")),
        0,
    ),
    ("kl_regularised_r_gamma", variants.variant("kl_regularised", env_reward=True, gamma=0.7), 0),
    (
        "vcond_teacher_control",
        Variant(control=Control(kind="teacher", epsilon=0.3), v_cond=True, reward="log_ratio"),
        0,
    ),
    (
        "entropy_regularised_eps",
        variants.variant("entropy_regularised", control=Control(kind="student", epsilon=0.25)),
        0,
    ),
]


@pytest.fixture(scope="module")
def acyclic() -> tuple[TabularMDP, torch.Tensor, torch.Tensor]:
    mdp = _acyclic_mdp(absorb=0.2)
    g = _gen(5)
    teacher_out = 2.0 * torch.randn(7, 2, generator=g, dtype=DT)
    logits = torch.randn(7, 2, generator=g, dtype=DT)
    return mdp, teacher_out, logits


ENUM_PARAMS = [
    pytest.param(n, v, it, id=n)
    for n, v, it in ENUM_CASES
]
ARGMAX_ACTING = [n for n, v, _ in ENUM_CASES if v.control.teacher_tau == 0.0]


@pytest.mark.parametrize(("name", "variant", "it"), ENUM_PARAMS)
def test_exact_engine_matches_enumerated_sampled_surrogate(acyclic, name, variant, it):
    mdp, teacher_out, logits = acyclic
    v_teacher = _v_teacher(variant, mdp, teacher_out[None])[0]
    v_student = mdp.evaluate(torch.softmax(logits, -1)[None], variant.gamma)[0]
    if variant.v_cond:  # make sure the mask is neither all on nor all off
        mask = (v_teacher > v_student)[~mdp.terminal[0]]
        assert mask.any() and not mask.all()
    v_critic = None
    if variant.critic == "exact":
        v_critic = exact.critic_values(
            variant, mdp, teacher_out[None], logits[None], iteration=it, v_teacher=v_teacher[None]
        )[0]
    sampled, n_episodes = _sampled_expectation(
        variant, mdp, teacher_out, logits, v_teacher, v_student, it, v_critic
    )
    # the enumeration covers many episodes, unless a deterministic teacher acts alone
    deterministic = variant.control.weights(it)[0] == 1.0 and variant.tau == 0.0
    assert n_episodes > (3 if deterministic else 30)
    expected = _grad(
        lambda x: exact.expected_surrogate(
            variant, mdp, teacher_out[None], x[None], iteration=it, v_teacher=v_teacher[None]
        ),
        logits,
    )
    assert expected.abs().max() > 1e-3
    torch.testing.assert_close(
        expected, sampled, rtol=0, atol=1e-10 * (1 + expected.abs().max().item())
    )


@pytest.mark.parametrize("name", ARGMAX_ACTING)
def test_argmax_acting_teacher_matches_enumeration_to_float32_precision(acyclic, name):
    """The Rusu variants' logic is right; only their precision suffers from the bug above."""
    mdp, teacher_out, logits = acyclic
    v = variants.variant(name)
    vt = torch.zeros(7, dtype=DT)
    sampled, _ = _sampled_expectation(v, mdp, teacher_out, logits, vt, vt, 0)
    expected = _grad(lambda x: exact.expected_surrogate(v, mdp, teacher_out[None], x[None]), logits)
    assert expected.abs().max() > 1e-3
    torch.testing.assert_close(expected, sampled, rtol=0, atol=1e-6)


def test_control_probs_of_an_argmax_teacher_are_float64_exact(acyclic):
    _, teacher_out, logits = acyclic
    v = variants.variant("rusu_kl")
    q = exact.control_probs(v, teacher_out, logits)
    expect = 0.95 * torch.nn.functional.one_hot(teacher_out.argmax(-1), 2).to(DT) + 0.025
    assert q.dtype == DT
    torch.testing.assert_close(q, expect, rtol=0, atol=1e-15)


def test_enumeration_sees_the_iteration(acyclic):
    """DAgger's control moves from the teacher to the student: the expected update moves too."""
    mdp, teacher_out, logits = acyclic
    v = variants.variant("dagger")
    vt = torch.zeros(7, dtype=DT)
    early, _ = _sampled_expectation(v, mdp, teacher_out, logits, vt, vt, 0)
    late, _ = _sampled_expectation(v, mdp, teacher_out, logits, vt, vt, 300)
    assert (early - late).abs().max() > 1e-3


def test_exact_engine_matches_enumeration_without_absorption():
    mdp = _acyclic_mdp(absorb=0.0)
    g = _gen(6)
    teacher_out = torch.randn(7, 2, generator=g, dtype=DT)
    logits = torch.randn(7, 2, generator=g, dtype=DT)
    for name in ("n_distill_r", "expected_entropy_regularised_r", "teacher_v_reward"):
        v = variants.variant(name)
        vt = _v_teacher(v, mdp, teacher_out[None])[0]
        vs = mdp.evaluate(torch.softmax(logits, -1)[None])[0]
        sampled, _ = _sampled_expectation(v, mdp, teacher_out, logits, vt, vs, 0)
        expected = _grad(
            lambda x, v=v, vt=vt: exact.expected_surrogate(
                v, mdp, teacher_out[None], x[None], v_teacher=vt[None]
            ),
            logits,
        )
        torch.testing.assert_close(expected, sampled, rtol=0, atol=1e-10)


# ---- 3. the update field's Jacobian -------------------------------------------------------------


def _jacobian(
    variant: Variant,
    mdp: TabularMDP,
    teacher_out: torch.Tensor,
    params: torch.Tensor,
    logits_fn=lambda z: z,
) -> torch.Tensor:
    vt = _v_teacher(variant, mdp, teacher_out) if exact.values_needed(variant) else None
    jac = torch.func.jacrev(
        lambda p: exact.update_field(variant, mdp, teacher_out, logits_fn, p, v_teacher=vt)
    )(params)
    n = params.numel()
    return jac.reshape(n, n)


def _asymmetry(jac: torch.Tensor) -> float:
    return ((jac - jac.T).norm() / jac.norm()).item()


@pytest.fixture(scope="module")
def one_garnet(garnet) -> tuple[TabularMDP, torch.Tensor, torch.Tensor]:
    mdp, teacher_out, logits = garnet
    return mdp.select(torch.tensor([0])), teacher_out[:1], logits[:1]


def test_update_field_is_the_expected_update(one_garnet):
    mdp, teacher_out, logits = one_garnet
    for name in ("on_policy_distill", "n_distill", "dagger"):
        v = variants.variant(name)
        field = exact.update_field(v, mdp, teacher_out, lambda z: z, logits, iteration=5)
        update = _grad(
            lambda x, v=v: exact.expected_surrogate(v, mdp, teacher_out, x, iteration=5), logits
        )
        torch.testing.assert_close(field, update, rtol=0, atol=1e-12)


def test_on_policy_distill_jacobian_is_asymmetric(one_garnet):
    mdp, teacher_out, logits = one_garnet
    jac = _jacobian(variants.variant("on_policy_distill"), mdp, teacher_out, logits)
    assert jac.norm() > 1e-3
    assert _asymmetry(jac) > 1e-2


@pytest.mark.parametrize(
    "name",
    [
        "n_distill",
        "expected_entropy_regularised",
        "n_distill_r",
        "expected_entropy_regularised_r",
        "entropy_regularised",
        "kl_regularised",
        "teacher_v_reward",
        "teacher_distill",
    ],
)
def test_gradient_field_jacobians_are_symmetric(one_garnet, name):
    mdp, teacher_out, logits = one_garnet
    jac = _jacobian(variants.variant(name), mdp, teacher_out, logits)
    assert jac.norm() > 1e-3
    assert _asymmetry(jac) < 1e-8


SWEEP_CONTROLS = {
    "teacher": Control(kind="teacher"),
    "student": Control(kind="student"),
    "uniform": Control(kind="uniform"),
    "mixture": Control(kind="mixture", beta=0.5),
    "student_eps": Control(kind="student", epsilon=0.1),
    "teacher_mixture_eps": Control(kind="mixture", beta=1.0, epsilon=0.3),
}


@pytest.mark.parametrize("control", list(SWEEP_CONTROLS))
def test_gradient_field_flag_matches_the_jacobian_for_every_combination(control):
    """Every valid (loss, reward, +R) under this control, at gamma = 1: the derived flag is
    True exactly when the update field's Jacobian is symmetric, and then the declared
    objective's gradient is the update (+V cond, a piecewise mask, is left out)."""
    mdp = generators.garnet(
        1, n_states=4, n_actions=3, branching=2, absorb=0.2, n_terminal=1, seed=3, dtype=DT
    )
    g = _gen(0)
    teacher_out = torch.randn(1, 4, 3, generator=g, dtype=DT)
    params = torch.randn(1, 4, 3, generator=g, dtype=DT)
    vt = teachers.teacher_values(mdp, teacher_out, 0.7)
    checked = {True: 0, False: 0}
    for loss in variants.LOSSES:
        for reward in variants.REWARDS:
            for env in (False, True):
                try:
                    v = Variant(
                        control=SWEEP_CONTROLS[control],
                        loss=loss,
                        reward=reward,
                        env_reward=env,
                        tau=0.7,
                    )
                except VariantError:
                    continue
                jac = _jacobian(v, mdp, teacher_out, params)
                asym = _asymmetry(jac)
                label = (loss, reward, env, v.gradient_field, asym)
                if v.gradient_field:
                    assert asym < 1e-8, label
                    update = _grad(
                        lambda x, v=v: exact.expected_surrogate(
                            v, mdp, teacher_out, x, v_teacher=vt
                        ),
                        params,
                    )
                    objective = _grad(
                        lambda x, v=v: exact.declared_objective(
                            v, mdp, teacher_out, x, v_teacher=vt
                        ),
                        params,
                    )
                    torch.testing.assert_close(update, objective, rtol=0, atol=1e-9)
                else:
                    assert asym > 1e-3, label
                checked[v.gradient_field] += 1
    assert checked[False] > 0
    if control in ("teacher", "uniform", "student"):
        assert checked[True] > 0


def _register(monkeypatch, *specs: RewardSpec) -> None:
    """Register rewards in a copy of the registry, everywhere it is read."""
    registry = {**reward_registry.REWARDS, **{s.name: s for s in specs}}
    for module in (reward_registry, spec_module, variants):
        monkeypatch.setattr(module, "REWARDS", registry)


def _half_logp(*, gamma, teacher_logp, student_logp, loss, v_teacher):
    return RewardParts(now=0.5 * teacher_logp)


def _next_v(*, gamma, teacher_logp, student_logp, loss, v_teacher):
    return RewardParts(arrive=v_teacher)


def test_a_registered_reward_gets_an_honest_derived_gradient_field(monkeypatch, one_garnet):
    """A reward nobody wrote into Variant: its flag comes from its properties and the
    Jacobian agrees; declaring a wrong property flips the flag, and the Jacobian catches it."""
    mdp, teacher_out, params = one_garnet
    _register(
        monkeypatch,
        RewardSpec("half_logp", "0.5 log pi_T(a_t|s_t)", _half_logp, completes=NO_LOSS, words="half log pi_T",
                   needs_teacher_logp=True),
        RewardSpec("half_logp_wrong", "the same, misdeclared", _half_logp, completes=frozenset({"mse"}),
                   words="half log pi_T", needs_teacher_logp=True),
        RewardSpec("next_v", "V_T(s_{t+1})", _next_v, completes=NO_LOSS, words="V_T of the next state",
                   needs_v_teacher=True),
    )
    cases = [
        (Variant(loss="none", reward="half_logp", tau=0.7), True),
        (Variant(loss="cross_entropy", reward="half_logp", tau=0.7), False),
        (Variant(control=Control(kind="teacher"), loss="cross_entropy", reward="half_logp", tau=0.7), True),
        (Variant(loss="none", reward="next_v", env_reward=True), True),
        (Variant(loss="mse", reward="next_v"), False),
    ]
    for v, field in cases:
        assert v.gradient_field is field, v.describe()
        asym = _asymmetry(_jacobian(v, mdp, teacher_out, params))
        assert (asym < 1e-8) if field else (asym > 1e-3), (v.describe(), asym)
    assert exact.values_needed(cases[3][0]) and not exact.values_needed(cases[0][0])
    wrong = Variant(loss="mse", reward="half_logp_wrong", tau=0.7)
    assert wrong.gradient_field  # the flag follows the declaration ...
    assert _asymmetry(_jacobian(wrong, mdp, teacher_out, params)) > 1e-3  # ... which this check refutes


def test_jacobians_with_shared_parameters_on_the_two_step_toy():
    """Fig. 2's student: one logit at s0 and one shared by sL and sR."""
    mdp = generators.two_step_toy(dtype=DT)
    student = Student(kind="linear", pin_last=True)
    teacher_out = torch.tensor([[[1.0, 0.0], [2.0, -1.0], [-0.5, 1.5], [0.0, 0.0]]], dtype=DT)
    params = torch.tensor([[[0.4], [-0.3]]], dtype=DT)

    def logits_fn(p):
        return student.logits(p, mdp)

    on_policy = _jacobian(
        variants.variant("on_policy_distill_r"), mdp, teacher_out, params, logits_fn
    )
    n_distill = _jacobian(variants.variant("n_distill_r"), mdp, teacher_out, params, logits_fn)
    assert _asymmetry(on_policy) > 1e-2
    assert _asymmetry(n_distill) < 1e-8


# ---- Proposition 1: tabular students under on-policy distill reach the teacher ------------------


def test_on_policy_distill_converges_on_teacher_reachable_states():
    mdp = generators.garnet(1, n_states=6, n_actions=3, branching=2, absorb=0.2, seed=8, dtype=DT)
    teacher_out = 2.0 * torch.randn(1, 6, 3, generator=_gen(9), dtype=DT)
    v = variants.variant("on_policy_distill")
    params = torch.zeros(1, 6, 3, dtype=DT, requires_grad=True)
    opt = torch.optim.SGD([params], lr=2.0)
    pi_t = torch.softmax(teacher_out, -1)
    reach = mdp.occupancy(pi_t)[0] > 1e-9

    def kl_per_state():
        with torch.no_grad():
            return variants.kl(torch.log_softmax(teacher_out, -1), torch.log_softmax(params, -1))[0]

    start = kl_per_state()[reach]
    for _ in range(300):
        opt.zero_grad()
        exact.expected_surrogate(v, mdp, teacher_out, params).sum().backward()
        opt.step()
    end = kl_per_state()[reach]
    assert reach.sum() >= 3
    assert (end < 1e-2).all() and (end < 0.05 * start).all()
    greedy = params.detach().argmax(-1)[0]
    assert torch.equal(greedy[reach], teacher_out.argmax(-1)[0][reach])

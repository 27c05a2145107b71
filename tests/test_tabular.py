"""The tabular tier: generators, exact MDP quantities, teachers, rng, rollouts, engine."""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest
import torch

import variants
from study.tabular import engine, generators, teachers
from study.tabular.mdp import MDPError, TabularMDP
from study.tabular.metrics import evaluate_students
from study.tabular.rng import (
    START,
    STEP,
    CounterRNG,
    categorical,
    combine,
    draws,
    instance_keys,
    mix32,
    to_uniform,
)
from study.tabular.rollout import rollout
from study.tabular.students import Student

DT = torch.float64
TENSORS = ("succ", "prob", "reward", "terminal", "start", "absorb")


def _same_mdp(a: TabularMDP, b: TabularMDP) -> bool:
    return all(torch.equal(getattr(a, k), getattr(b, k)) for k in TENSORS)


def _dense(mdp: TabularMDP, i: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Independent dense tables of MDP ``i``: P[s, a, s'] (continuing), R[s, a], start."""
    succ, prob, reward = (
        mdp.succ[i].numpy(),
        mdp.prob[i].double().numpy(),
        mdp.reward[i].double().numpy(),
    )
    term = mdp.terminal[i].numpy()
    absorb = float(mdp.absorb[i])
    s_count, a_count, k_count = succ.shape
    p = np.zeros((s_count, a_count, s_count))
    r = np.zeros((s_count, a_count))
    for s in range(s_count):
        for a in range(a_count):
            for k in range(k_count):
                nxt = succ[s, a, k]
                r[s, a] += prob[s, a, k] * reward[s, a, k]
                if not term[nxt]:
                    p[s, a, nxt] += prob[s, a, k] * (1 - absorb)
    return p, r, mdp.start[i].double().numpy()


def _dense_values(mdp: TabularMDP, policy: np.ndarray, i: int = 0, gamma: float = 1.0):
    """V^pi and the occupancy by plain numpy linear algebra."""
    p, r, mu = _dense(mdp, i)
    p_pi = np.einsum("sa,sat->st", policy, p)
    r_pi = (policy * r).sum(-1)
    eye = np.eye(len(mu))
    v = np.linalg.solve(eye - gamma * p_pi, r_pi)
    d = np.linalg.solve((eye - p_pi).T, mu)
    return v, d


# ---- generators ---------------------------------------------------------------------------------


def _check_valid(mdp: TabularMDP) -> None:
    rows = mdp.prob.sum(-1)
    torch.testing.assert_close(rows, torch.ones_like(rows), rtol=0, atol=1e-6)
    assert (mdp.prob >= 0).all()
    assert mdp.succ.min() >= 0 and mdp.succ.max() < mdp.n_states
    assert (mdp.start[mdp.terminal] == 0).all()
    torch.testing.assert_close(mdp.start.sum(-1), torch.ones(mdp.n_mdps, dtype=mdp.dtype))
    assert ((mdp.absorb >= 0) & (mdp.absorb < 1)).all()


def _cell_values(mdp: TabularMDP, i: int) -> torch.Tensor:
    """The reward of entering each cell (NaN for cells nothing leads to, such as walls);
    checks it does not depend on where one comes from."""
    value = torch.full((mdp.n_states,), float("nan"), dtype=DT)
    value[mdp.succ[i].reshape(-1)] = mdp.reward[i].reshape(-1).double()
    assert torch.equal(value[mdp.succ[i]], mdp.reward[i].double())
    return value


@pytest.mark.parametrize("seed", [0, 7])
def test_gridworld_default(seed):
    mdp = generators.gridworld(3, seed=seed)
    assert (mdp.n_mdps, mdp.n_states, mdp.n_actions) == (3, 400, 4)
    _check_valid(mdp)
    centre = 10 * 20 + 10
    assert torch.equal(mdp.start[:, centre], torch.ones(3))
    assert (mdp.start.sum(-1) == 1).all()
    torch.testing.assert_close(mdp.absorb, torch.full((3,), 0.01))
    for i in range(3):
        value = _cell_values(mdp, i)
        term = mdp.terminal[i]
        goal_values = value[term & (value != 0) & ~value.isnan()]
        assert sorted(goal_values.tolist()) == sorted([10.0, -10.0, 5.0, -5.0])
        assert term.sum() == 40 + 4  # walls (10% of the cells) and the four terminal cells
        others = value[~term]
        assert set(others.unique().tolist()) <= {0.0, -1.0}
        assert int((others == -1).sum()) == round(0.1 * (400 - 1 - 40 - 4))
        assert value[centre] == 0 and not term[centre]


def test_gridworld_moves_follow_the_grid():
    size = 6
    mdp = generators.gridworld(2, size=size, seed=3)
    moves = [(-1, 0), (0, 1), (1, 0), (0, -1)]
    for i in range(2):
        term = mdp.terminal[i]
        value = _cell_values(mdp, i)
        wall = term & (value == 0)
        for s in range(size * size):
            if term[s]:
                continue
            r, c = divmod(s, size)
            for a, (dr, dc) in enumerate(moves):
                k = int(mdp.prob[i, s, a].argmax())
                assert mdp.prob[i, s, a, k] == 1.0  # noise 0: deterministic
                nxt = int(mdp.succ[i, s, a, k])
                r2, c2 = r + dr, c + dc
                inside = 0 <= r2 < size and 0 <= c2 < size
                if not inside or wall[r2 * size + c2]:
                    assert nxt == s  # bumping into the edge or a wall: stay
                else:
                    assert nxt == r2 * size + c2


@pytest.mark.parametrize("n_actions", [40, 400])
@pytest.mark.parametrize("noise", [0.0, 0.2])
def test_gridworld_extra_actions_repeat_the_moves(n_actions, noise):
    size = 20 if n_actions == 40 else 8
    mdp = generators.gridworld(1, size=size, n_actions=n_actions, noise=noise, seed=1)
    base = generators.gridworld(1, size=size, n_actions=4, noise=noise, seed=1)
    assert mdp.n_actions == n_actions
    _check_valid(mdp)
    p, r, _ = _dense(mdp)
    p4, r4, _ = _dense(base)
    # action a acts exactly like move a mod 4 of the same grid with four actions
    for a in (4, 5, 6, 7, n_actions // 2 + 1, n_actions - 1):
        np.testing.assert_allclose(p[:, a], p4[:, a % 4], atol=1e-7)
        np.testing.assert_allclose(r[:, a], r4[:, a % 4], atol=1e-6)
    # so the optimal values do not change with the action count
    v = teachers.value_iteration(mdp.to(torch.float64)).max(-1).values
    v4 = teachers.value_iteration(base.to(torch.float64)).max(-1).values
    torch.testing.assert_close(v, v4, rtol=0, atol=1e-6)


def test_gridworld_noise_eta():
    eta = 0.2
    mdp = generators.gridworld(1, size=5, noise=eta, n_actions=6, seed=2)
    table = mdp.prob[0, 0]  # move probabilities per action (the same in every cell)
    assert torch.allclose(mdp.prob[0], table.expand_as(mdp.prob[0]))
    for a in range(6):
        for k in range(4):
            expect = (1 - eta + eta / 4) if k == a % 4 else eta / 4
            assert table[a, k].item() == pytest.approx(expect, abs=1e-6)


def test_garnet_structure():
    mdp = generators.garnet(
        4, n_states=7, n_actions=3, branching=3, absorb=0.1, n_terminal=2, seed=5
    )
    _check_valid(mdp)
    assert (mdp.n_states, mdp.n_actions, mdp.succ.shape[-1]) == (7, 3, 3)
    for i in range(4):
        for s in range(7):
            for a in range(3):
                assert len(set(mdp.succ[i, s, a].tolist())) == 3  # distinct successors
        # reward depends on (s, a) only
        assert torch.equal(mdp.reward[i], mdp.reward[i, :, :, :1].expand_as(mdp.reward[i]))
    assert mdp.terminal[:, -2:].all() and not mdp.terminal[:, :-2].any()
    torch.testing.assert_close(mdp.start[:, :5], torch.full((4, 5), 0.2))


def test_two_step_toy():
    mdp = generators.two_step_toy(dtype=DT)
    _check_valid(mdp)
    assert mdp.start[0].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert mdp.succ[0, 0, :, 0].tolist() == [1, 2]
    # returns of the four deterministic policies (the second choice shared or not)
    expect = {(0, 0): -1.0, (0, 1): -2.0, (1, 0): 0.0, (1, 1): -3.0}
    for (first, second), ret in expect.items():
        pol = torch.zeros(1, 4, 2, dtype=DT)
        pol[0, 0, first] = 1.0
        pol[0, 1:, second] = 1.0
        assert mdp.episode_return(pol).item() == pytest.approx(ret)
    # sL and sR share one feature, so a linear student gives them the same logits
    stud = Student(kind="linear", pin_last=True)
    params = torch.tensor([[[0.3], [-1.2]]], dtype=DT)
    assert stud.param_shape(mdp) == (2, 1)
    logits = stud.logits(params, mdp)
    assert torch.equal(logits[0, 1], logits[0, 2])
    assert logits[0, 0].tolist() == [0.3, 0.0]


@pytest.mark.parametrize("noise", [0.0, 0.25])
def test_corridor(noise):
    length = 4
    mdp = generators.corridor(2, length=length, noise=noise, absorb=0.0, dtype=DT)
    _check_valid(mdp)
    assert mdp.terminal[0].tolist() == [False] * length + [True]
    assert mdp.start[0, 0] == 1.0
    right = torch.zeros(2, length + 1, 2, dtype=DT)
    right[..., 1] = 1.0
    p, r, _ = _dense(mdp)
    assert p[0, 0, 0] == pytest.approx(1 - noise)  # left in cell 0 stays put
    if noise == 0.0:
        # three -1 steps, then +10 on entering the goal
        assert mdp.episode_return(right)[0].item() == pytest.approx(-(length - 1) + 10.0)
    v, _ = _dense_values(mdp, right[0].numpy())
    np.testing.assert_allclose(mdp.evaluate(right)[0].numpy(), v, rtol=1e-10)
    assert r[length - 1, 1] == pytest.approx((1 - noise) * 10.0 + noise * -1.0)


def test_exit_chain_lets_the_agent_end_early():
    mdp = generators.exit_chain(1, length=5, step_reward=1.0, dtype=DT)
    _check_valid(mdp)
    go, leave = torch.zeros(1, 6, 3, dtype=DT), torch.zeros(1, 6, 3, dtype=DT)
    go[..., 0] = 1.0
    leave[..., 2] = 1.0
    assert mdp.episode_return(go).item() == pytest.approx(5.0)
    assert mdp.episode_return(leave).item() == pytest.approx(0.0)
    assert mdp.occupancy(go).sum().item() == pytest.approx(5.0)  # episode length
    assert mdp.occupancy(leave).sum().item() == pytest.approx(1.0)


GEN_CASES = [
    (generators.gridworld, {"size": 6}),
    (generators.garnet, {"n_states": 6}),
]


@pytest.mark.parametrize(("gen", "kwargs"), GEN_CASES, ids=["gridworld", "garnet"])
def test_generators_are_seeded_and_batch_independent(gen, kwargs):
    a = gen(20, seed=11, **kwargs)
    b = gen(5, seed=11, **kwargs)
    assert _same_mdp(a, gen(20, seed=11, **kwargs))
    assert _same_mdp(a.select(torch.arange(5)), b)
    assert _same_mdp(a.select(torch.tensor([4])), b.select(torch.tensor([4])))
    c = gen(5, seed=12, **kwargs)
    for i in range(5):
        one = torch.tensor([i])
        assert not _same_mdp(b.select(one), c.select(one))
    # and different MDPs within one batch
    assert not _same_mdp(b.select(torch.tensor([0])), b.select(torch.tensor([1])))


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: generators.gridworld(size=2), "size"),
        (lambda: generators.gridworld(n_actions=3), "n_actions"),
        (lambda: generators.gridworld(wall_frac=0.6), "wall_frac"),
        (lambda: generators.gridworld(noise=1.5), "noise"),
        (lambda: generators.gridworld(noise=float("nan")), "noise"),
        (lambda: generators.gridworld(absorb=1.0), "absorb"),
        (lambda: generators.gridworld(penalty_frac=-0.1), "penalty_frac"),
        (
            lambda: generators.gridworld(size=3, wall_frac=0.5, terminal_values=(1.0,) * 5),
            "terminal_values",
        ),
        (lambda: generators.garnet(n_states=1), "n_states"),
        (lambda: generators.garnet(n_actions=1), "n_actions"),
        (lambda: generators.garnet(n_states=4, branching=5), "branching"),
        (lambda: generators.garnet(branching=0), "branching"),
        (lambda: generators.garnet(absorb=-0.1), "absorb"),
        (lambda: generators.garnet(n_states=4, n_terminal=4), "n_terminal"),
        (lambda: generators.garnet(absorb=0.0, n_terminal=0), "absorb"),
        (lambda: generators.corridor(length=1), "length"),
        (lambda: generators.corridor(noise=2.0), "noise"),
        (lambda: generators.exit_chain(length=1), "length"),
    ],
)
def test_generator_parameters_are_checked(call, name):
    with pytest.raises(MDPError) as err:
        call()
    assert name in str(err.value)


def test_validate_catches_broken_tensors():
    mdp = generators.garnet(2, n_states=4, seed=0)
    bad_prob = mdp.prob.clone()
    bad_prob[0, 0, 0, 0] += 0.5
    with pytest.raises(MDPError, match="sum to one"):
        replace(mdp, prob=bad_prob).validate()
    bad_succ = mdp.succ.clone()
    bad_succ[1, 2, 1, 0] = 4
    with pytest.raises(MDPError, match="out of range"):
        replace(mdp, succ=bad_succ).validate()
    term = mdp.terminal.clone()
    term[0, 0] = True
    with pytest.raises(MDPError, match="terminal"):
        replace(mdp, terminal=term).validate()
    with pytest.raises(MDPError, match="absorb"):
        replace(mdp, absorb=torch.tensor([0.1, 1.0])).validate()


# ---- exact quantities of an MDP ---------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny() -> TabularMDP:
    return generators.garnet(
        3, n_states=5, n_actions=3, branching=2, absorb=0.3, n_terminal=1, seed=2, dtype=DT
    )


def _random_policy(n: int, s: int, a: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(n, s, a, generator=g, dtype=DT), -1)


def test_policy_matrix_rows_sum_to_at_most_one(tiny):
    pol = _random_policy(3, 5, 3, 0)
    p = tiny.policy_matrix(pol)
    assert p.shape == (3, 5, 5)
    assert (p >= 0).all()
    assert (p.sum(-1) <= 1 - 0.3 + 1e-12).all()  # absorption takes 30% every step
    for i in range(3):
        dense, _, _ = _dense(tiny, i)
        np.testing.assert_allclose(
            p[i].numpy(), np.einsum("sa,sat->st", pol[i].numpy(), dense), atol=1e-12
        )


def test_evaluate_and_occupancy_match_dense_linear_algebra(tiny):
    pol = _random_policy(3, 5, 3, 1)
    for gamma in (1.0, 0.7):
        v = tiny.evaluate(pol, gamma)
        for i in range(3):
            v_ref, d_ref = _dense_values(tiny, pol[i].numpy(), i, gamma)
            np.testing.assert_allclose(v[i].numpy(), v_ref, rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(
                tiny.occupancy(pol)[i].numpy(), d_ref, rtol=1e-10, atol=1e-12
            )
    ret = tiny.episode_return(pol)
    torch.testing.assert_close(ret, (tiny.start * tiny.evaluate(pol)).sum(-1))


def test_occupancy_and_values_agree_with_monte_carlo(tiny):
    """Sample means within 5 standard errors (sample size 8000 episodes per start state)."""
    mdp = tiny.select(torch.tensor([0]))
    pol = _random_policy(1, 5, 3, 2)
    live = (~mdp.terminal[0]).nonzero().squeeze(-1)
    n_live = len(live)
    # one instance per start state: the values V(s) by their own episodes
    batch = mdp.select(torch.zeros(n_live, dtype=torch.long))
    batch = replace(batch, start=torch.nn.functional.one_hot(live, 5).to(DT))
    episodes = 8000
    ro = rollout(
        batch,
        pol.expand(n_live, -1, -1),
        instance_keys(torch.arange(n_live), 99),
        episodes=episodes,
        max_steps=80,
    )
    assert not ro.cut.any()
    valid = ro.valid
    returns = torch.where(valid, ro.rewards, 0.0).sum(-1).view(n_live, episodes)
    v_exact = mdp.evaluate(pol)[0, live]
    mean, se = returns.mean(-1), returns.std(-1) / episodes**0.5
    assert ((mean - v_exact).abs() < 5 * se).all(), (mean, v_exact, se)
    # occupancy from the start distribution: mix the per-start visit counts by mu
    visits = torch.nn.functional.one_hot(ro.states, 5).to(DT) * valid[..., None]
    visits = visits.sum(1).view(n_live, episodes, 5)
    mu = mdp.start[0, live]
    d_mc = (mu[:, None] * visits.mean(1)).sum(0)
    d_se = ((mu[:, None] ** 2) * visits.var(1) / episodes).sum(0).sqrt()
    d_exact = mdp.occupancy(pol)[0]
    assert ((d_mc - d_exact).abs() <= 5 * d_se + 1e-12).all(), (d_mc, d_exact, d_se)
    assert (d_exact[mdp.terminal[0]] == 0).all()


def test_uniform_states_and_select(tiny):
    w = tiny.uniform_states()
    torch.testing.assert_close(w.sum(-1), torch.ones(3, dtype=DT))
    assert (w[tiny.terminal] == 0).all()
    picked = tiny.select(torch.tensor([2, 2, 0]))
    assert picked.n_mdps == 3
    assert torch.equal(picked.prob[0], tiny.prob[2]) and torch.equal(picked.prob[2], tiny.prob[0])
    assert tiny.to(torch.float32).prob.dtype == torch.float32


# ---- teachers ----------------------------------------------------------------------------------


def test_value_iteration_beats_every_deterministic_policy():
    mdp = generators.garnet(2, n_states=4, n_actions=2, absorb=0.2, n_terminal=1, seed=9, dtype=DT)
    q = teachers.value_iteration(mdp)
    greedy = torch.nn.functional.one_hot(q.argmax(-1), 2).to(DT)
    v_greedy = mdp.evaluate(greedy)
    torch.testing.assert_close(v_greedy, q.max(-1).values, rtol=1e-7, atol=1e-7)
    best = torch.full_like(v_greedy, -float("inf"))
    for choice in itertools.product(range(2), repeat=4):
        pol = torch.nn.functional.one_hot(torch.tensor(choice), 2).to(DT).expand(2, -1, -1)
        v = mdp.evaluate(pol)
        assert (v_greedy >= v - 1e-7).all()
        best = torch.maximum(best, v)
    torch.testing.assert_close(v_greedy, best, rtol=1e-7, atol=1e-7)


def test_adversarial_teacher_is_worse_than_uniform():
    # on a corridor, the adversary walks away from the goal until the episode is absorbed
    corridor = generators.corridor(1, length=5, noise=0.1, dtype=DT)
    q = teachers.value_iteration(corridor)
    assert torch.equal(teachers.adversarial(q), -q)
    adv = teachers.teacher_policy(teachers.adversarial(q), 0.0).to(DT)
    assert (adv[0, :5, 0] == 1).all()
    uniform = torch.full_like(q, 0.5)
    assert corridor.episode_return(adv).item() < corridor.episode_return(uniform).item() - 10
    # on grid worlds, worse than uniform on average (not on every single grid)
    mdp = generators.gridworld(8, size=6, noise=0.1, seed=1, dtype=DT)
    q = teachers.value_iteration(mdp)
    uniform = torch.full_like(q, 0.25)
    for tau in (0.0, 0.5):
        adv = teachers.teacher_policy(teachers.adversarial(q), tau).to(DT)
        assert mdp.episode_return(adv).mean() < mdp.episode_return(uniform).mean() - 1.0
    good = teachers.teacher_policy(q, 0.0).to(DT)
    assert (mdp.episode_return(good) > mdp.episode_return(uniform)).all()


@pytest.mark.parametrize("tau", [0.5, 0.0])
def test_noisy_teacher(tau):
    mdp = generators.garnet(3, n_states=30, n_actions=4, seed=1, dtype=DT)
    q = teachers.value_iteration(mdp)
    out = teachers.noisy(q, 0.3, tau, seed=4)
    changed = (out != q).any(-1)
    assert 0 < changed.sum() < changed.numel()
    assert torch.equal(out[~changed], q[~changed])
    picked = out[changed]
    if tau > 0:
        # out = tau log p: softmax(out / tau) is p itself, already normalised
        torch.testing.assert_close(torch.softmax(picked / tau, -1), torch.exp(picked / tau))
        torch.testing.assert_close(
            torch.exp(picked / tau).sum(-1), torch.ones(len(picked), dtype=DT)
        )
    else:
        assert (picked >= 0).all()
        torch.testing.assert_close(picked.sum(-1), torch.ones(len(picked), dtype=DT))
    assert torch.equal(out, teachers.noisy(q, 0.3, tau, seed=4))
    assert not torch.equal(out, teachers.noisy(q, 0.3, tau, seed=5))
    # the first instance's noise does not depend on the rest of the batch
    assert torch.equal(teachers.noisy(q[:1], 0.3, tau, seed=4), out[:1])
    assert torch.equal(teachers.noisy(q, 0.0, tau), q)
    mask = torch.zeros(3, 30, dtype=torch.bool)
    mask[:, :5] = True
    all_masked = teachers.noisy(q, 1.0, tau, mask=mask)
    assert (all_masked[:, :5] != q[:, :5]).any(-1).all()
    assert torch.equal(all_masked[:, 5:], q[:, 5:])
    with pytest.raises(MDPError, match="fraction"):
        teachers.noisy(q, 1.5, tau)


@pytest.mark.parametrize("tau", [1.0, 0.1, 0.0])
def test_teacher_values_is_the_value_of_the_softmax_policy(tiny, tau):
    g = torch.Generator().manual_seed(3)
    out = torch.randn(3, 5, 3, generator=g, dtype=DT)
    v = teachers.teacher_values(tiny, out, tau)
    for i in range(3):
        if tau > 0:
            pol = torch.softmax(out[i] / tau, -1)
        else:
            pol = torch.nn.functional.one_hot(out[i].argmax(-1), 3).to(DT)
        v_ref, _ = _dense_values(tiny, pol.numpy(), i)
        np.testing.assert_allclose(v[i].numpy(), v_ref, rtol=1e-6, atol=1e-6)


def test_q_learning_is_seeded_and_batch_independent():
    mdp = generators.garnet(3, n_states=5, n_actions=2, absorb=0.2, seed=0, dtype=DT)
    q = teachers.q_learning(mdp, episodes=6, max_steps=15, seed=1)
    assert q.shape == (3, 5, 2) and (q != 0).any()
    assert torch.equal(q, teachers.q_learning(mdp, episodes=6, max_steps=15, seed=1))
    assert torch.equal(
        q[:2], teachers.q_learning(mdp.select(torch.arange(2)), episodes=6, max_steps=15, seed=1)
    )
    assert not torch.equal(q, teachers.q_learning(mdp, episodes=6, max_steps=15, seed=2))


def _q_learning_one_mdp(mdp: TabularMDP, i: int, episodes: int, max_steps: int, seed: int,
                        lr: float = 0.1, epsilon: float = 0.1) -> torch.Tensor:
    """Plain per-step Q-learning of MDP ``i`` alone, with the same random stream as the batched teachers."""
    keys = instance_keys(torch.tensor([seed]), torch.tensor([i]))
    q = torch.zeros(mdp.n_states, mdp.n_actions, dtype=mdp.dtype)
    for ep in range(episodes):
        s = int(categorical(mdp.start[i:i + 1], to_uniform(combine(combine(keys, START), ep)))[0])
        key = combine(combine(keys, STEP), ep)
        for t in range(max_steps):
            u = draws(key, t, 4)[0]
            a = int(u[1] * mdp.n_actions) if u[0] < epsilon else int(q[s].argmax())
            a = min(a, mdp.n_actions - 1)
            k = int(categorical(mdp.prob[i, s, a].unsqueeze(0), u[2:3])[0])
            s2, r = int(mdp.succ[i, s, a, k]), mdp.reward[i, s, a, k]
            goes_on = not bool(mdp.terminal[i, s2]) and bool(u[3] >= mdp.absorb[i])
            target = r + (q[s2].max() if goes_on else 0.0)
            q[s, a] = q[s, a] + lr * (target - q[s, a])
            if not goes_on:
                break
            s = s2
    return q


def test_batched_q_learning_equals_q_learning_each_mdp_alone():
    mdp = generators.gridworld(3, size=5, noise=0.2, seed=4, dtype=DT)
    q = teachers.q_learning(mdp, episodes=8, max_steps=40, seed=3)
    for i in range(3):
        assert torch.equal(q[i], _q_learning_one_mdp(mdp, i, 8, 40, 3))


# ---- counter-based random numbers ------------------------------------------------------------


def _lowbias32(x: int) -> int:
    x &= 0xFFFFFFFF
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    return x ^ (x >> 16)


def test_mix32_is_lowbias32():
    xs = [0, 1, 2, 12345, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x9E3779B9, 2**40 + 5]
    out = mix32(torch.tensor(xs, dtype=torch.int64)).tolist()
    assert out == [_lowbias32(x) for x in xs]


def test_rng_is_deterministic_and_batch_independent():
    keys = instance_keys(torch.tensor([0, 0, 1, 1, 2]), torch.tensor([0, 1, 0, 1, 0]))
    assert len(set(keys.tolist())) == 5
    rng = CounterRNG(keys)
    u = rng.uniform(3, 7, shape=(4, 6))
    assert u.shape == (5, 4, 6)
    assert torch.equal(u, CounterRNG(keys.clone()).uniform(3, 7, shape=(4, 6)))
    for i in range(5):
        alone = CounterRNG(keys[i : i + 1]).uniform(3, 7, shape=(4, 6))
        assert torch.equal(alone[0], u[i])
    # a batch in another order gives each instance the same numbers
    perm = torch.tensor([4, 2, 0, 1, 3])
    assert torch.equal(
        CounterRNG(keys[perm]).normal(1, shape=(3,)), rng.normal(1, shape=(3,))[perm]
    )
    # different counters and different instances differ
    assert not torch.equal(rng.uniform(3, 7, shape=(4, 6)), rng.uniform(3, 8, shape=(4, 6)))
    assert not torch.equal(u[0], u[1])
    # draws for successive steps of a sub-stream differ
    key = rng.key(2, 0)
    assert not torch.equal(draws(key, 0, 3), draws(key, 1, 3))
    assert torch.equal(draws(key[1:2], 5, 3)[0], draws(key, 5, 3)[1])


def test_uniform_and_normal_moments():
    rng = CounterRNG(instance_keys(torch.arange(4), 17))
    u = rng.uniform(1, shape=(50_000,))
    assert ((u > 0) & (u < 1)).all()
    n = u.numel()
    # mean 1/2 and variance 1/12, within 5 standard errors of 200k draws
    assert abs(u.mean().item() - 0.5) < 5 * (1 / 12) ** 0.5 / n**0.5
    assert abs(u.var().item() - 1 / 12) < 5 * (1 / 180) ** 0.5 / n**0.5
    # no lag-1 correlation along a stream
    x = u[0] - 0.5
    corr = (x[1:] * x[:-1]).mean() / x.var()
    assert abs(corr.item()) < 5 / 50_000**0.5
    z = rng.normal(2, shape=(50_000,))
    assert abs(z.mean().item()) < 5 / n**0.5
    assert abs(z.std().item() - 1.0) < 5 * 0.5**0.5 / n**0.5
    lo, hi = to_uniform(torch.tensor([0, 2**32 - 1])).tolist()
    assert 0 < lo and hi < 1


def test_categorical_frequencies():
    probs = torch.tensor([0.1, 0.0, 0.6, 0.3], dtype=DT)
    rng = CounterRNG(instance_keys(torch.tensor([5]), 0))
    u = rng.uniform(9, shape=(40_000,))[0]
    idx = categorical(probs.expand(40_000, -1), u)
    freq = torch.bincount(idx, minlength=4).to(DT) / 40_000
    se = (probs * (1 - probs) / 40_000).sqrt()
    assert ((freq - probs).abs() <= 5 * se + 1e-12).all()
    assert freq[1] == 0
    assert categorical(torch.tensor([[0.0, 0.0, 1.0]]), torch.tensor([0.999])).item() == 2


# ---- rollouts --------------------------------------------------------------------------------


def test_rollout_episodes_are_well_formed_and_batch_independent(tiny):
    pol = _random_policy(3, 5, 3, 5)
    keys = instance_keys(torch.arange(3), 1)
    ro = rollout(tiny, pol, keys, episodes=50, max_steps=40)
    b, t = ro.valid.shape
    assert b == 150 and torch.equal(ro.instance, torch.arange(3).repeat_interleave(50))
    # valid is a prefix of each row, with at least one step
    assert (ro.valid[:, 0]).all()
    assert (ro.valid[:, 1:] <= ro.valid[:, :-1]).all()
    # no valid step is taken from a terminal state
    assert not tiny.terminal[ro.instance[:, None].expand(-1, t), ro.states][ro.valid].any()
    assert torch.equal(ro.lengths, ro.valid.sum(-1))
    again = rollout(tiny, pol, keys, episodes=50, max_steps=40)
    assert torch.equal(again.states, ro.states) and torch.equal(again.rewards, ro.rewards)
    alone = rollout(tiny.select(torch.tensor([1])), pol[1:2], keys[1:2], episodes=50, max_steps=40)
    n = alone.valid.shape[1]
    rows = ro.instance == 1
    assert torch.equal(alone.valid, ro.valid[rows, :n])
    assert not ro.valid[rows, n:].any()
    v = alone.valid
    assert torch.equal(alone.states[v], ro.states[rows, :n][v])
    assert torch.equal(alone.actions[v], ro.actions[rows, :n][v])
    assert torch.equal(alone.rewards[v], ro.rewards[rows, :n][v])
    other = rollout(tiny, pol, combine(keys, 1), episodes=50, max_steps=40)
    assert not torch.equal(other.lengths, ro.lengths)


def test_rollout_cuts_long_episodes():
    mdp = generators.exit_chain(1, length=10, dtype=DT)
    go = torch.zeros(1, 11, 3, dtype=DT)
    go[..., 0] = 1.0
    ro = rollout(mdp, go, instance_keys(torch.tensor([0])), episodes=2, max_steps=4)
    assert ro.cut.all() and (ro.lengths == 4).all()
    ro = rollout(mdp, go, instance_keys(torch.tensor([0])), episodes=2, max_steps=50)
    assert not ro.cut.any() and (ro.lengths == 10).all()
    assert ro.rewards[ro.valid].sum().item() == pytest.approx(20.0)


# ---- students and metrics ----------------------------------------------------------------------


def test_students():
    mdp = generators.garnet(2, n_states=4, n_actions=3, seed=0, dtype=DT)
    table = Student()
    keys = instance_keys(torch.arange(2))
    assert torch.equal(table.init(mdp, keys), torch.zeros(2, 4, 3, dtype=DT))
    p = table.init(mdp, keys, scale=0.5)
    assert p.shape == (2, 4, 3) and torch.equal(p, table.init(mdp, keys, scale=0.5))
    assert torch.equal(table.init(mdp, keys[1:], scale=0.5)[0], p[1])
    assert Student(pin_last=True).logits(p[..., :2], mdp)[..., 2].abs().max() == 0
    with pytest.raises(MDPError, match="kind"):
        Student(kind="mlp")
    with pytest.raises(MDPError, match="features"):
        Student(kind="linear").param_shape(mdp)


def test_metrics_of_the_teacher_itself(tiny):
    g = torch.Generator().manual_seed(8)
    out = torch.randn(3, 5, 3, generator=g, dtype=DT)
    logp = torch.log_softmax(out, -1)
    occ = tiny.occupancy(logp.exp())
    m = evaluate_students(tiny, logp, out, out + 2.0, occ)
    for name in ("kl_student", "kl_teacher", "kl_uniform"):
        assert m[name].abs().max() < 1e-12
    torch.testing.assert_close(m["agreement"], torch.ones(3, dtype=DT))
    torch.testing.assert_close(m["return"], tiny.episode_return(logp.exp()))
    worse = evaluate_students(tiny, logp, out, -out, occ)
    assert (worse["kl_teacher"] > 0.01).all() and (worse["agreement"] < 1).all()


# ---- engine -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def grid() -> tuple[TabularMDP, torch.Tensor]:
    mdp = generators.gridworld(2, size=5, seed=1, dtype=DT)
    return mdp, teachers.value_iteration(mdp)


SAMPLED = ["on_policy_distill", "teacher_v_reward", "on_policy_distill_r_vcond"]


def test_train_config_validation():
    with pytest.raises(MDPError, match="mode"):
        engine.TrainConfig(mode="approx")
    with pytest.raises(MDPError, match="optimizer"):
        engine.TrainConfig(optimizer="lbfgs")
    with pytest.raises(MDPError, match="episodes"):
        engine.TrainConfig(episodes=0)
    with pytest.raises(MDPError, match="lr"):
        engine.TrainConfig(lr=0.0)


def test_plan_product():
    plan = engine.Plan.product(2, 3, [5, 6])
    assert len(plan) == 12
    assert plan.mdp_index.tolist() == [0] * 6 + [1] * 6
    assert plan.variant_index.tolist() == [0, 0, 1, 1, 2, 2] * 2
    assert plan.seed.tolist() == [5, 6] * 6


def test_sampled_distill_is_deterministic_and_batch_independent(grid):
    mdp, q = grid
    vs = [variants.variant(n) for n in SAMPLED]
    plan = engine.Plan.product(2, 3, [0, 1])
    cfg = engine.TrainConfig(
        mode="sampled", iterations=4, eval_every=2, max_steps=40, episodes=2, lr=0.5
    )
    first = engine.distill(mdp, q, vs, plan, cfg)
    second = engine.distill(mdp, q, vs, plan, cfg)
    assert first.steps == [0, 2, 4]
    for name, values in first.values.items():
        assert values.shape == (3, 12)
        assert torch.equal(values, second.values[name]), name
    # mean episode length per evaluation interval: none before the first record
    lengths = first.extras["episode_length"]
    assert lengths.shape == (3, 12) and lengths[0].isnan().all() and (lengths[1:] >= 1).all()
    assert torch.equal(lengths[1:], second.extras["episode_length"][1:])
    # training moved the students
    assert (first.values["kl_teacher"][-1] != first.values["kl_teacher"][0]).any()
    # instance (MDP 1, variant 2, seed 1) alone, with the same variant list
    col = 1 * 6 + 2 * 2 + 1
    alone = engine.distill(
        mdp, q, vs, engine.Plan(torch.tensor([1]), torch.tensor([2]), torch.tensor([1])), cfg
    )
    assert torch.equal(alone.extras["episode_length"][1:, 0], first.extras["episode_length"][1:, col])
    for name, values in first.values.items():
        torch.testing.assert_close(alone.values[name][:, 0], values[:, col], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(alone.teacher_return[0], first.teacher_return[col])
    # a different seed gives different episodes
    assert not torch.equal(
        first.extras["episode_length"][1:, col], first.extras["episode_length"][1:, col - 1]
    )


def test_exact_on_policy_distill_converges_on_a_gridworld(grid):
    mdp, q = grid
    v = variants.variant("on_policy_distill")
    cfg = engine.TrainConfig(mode="exact", iterations=30, eval_every=10, lr=1.0)
    curves = engine.distill(mdp, q, [v], engine.Plan.product(2, 1, [0]), cfg, student=Student())
    kl_t, agree = curves.values["kl_teacher"], curves.values["agreement"]
    assert curves.steps == [0, 10, 20, 30]
    assert (kl_t[1:] < kl_t[:-1]).all()
    assert (kl_t[-1] < 0.2 * kl_t[0]).all()
    assert (agree[-1] > agree[0]).all() and (agree[-1] > 0.95).all()
    # the student starts uniform and ends near the teacher's return
    torch.testing.assert_close(curves.values["return"][0], curves.uniform_return)
    gap0 = (curves.teacher_return - curves.values["return"][0]).abs()
    gap1 = (curves.teacher_return - curves.values["return"][-1]).abs()
    assert (gap1 < 0.5 * gap0).all()


def test_occupancy_and_return_from_one_factorisation_equal_the_separate_solves():
    mdp = generators.gridworld(3, size=6, noise=0.2, seed=2, dtype=DT)
    policy = torch.softmax(torch.randn(3, mdp.n_states, mdp.n_actions, generator=torch.Generator().manual_seed(0),
                                       dtype=DT), -1)
    occ, ret = mdp.occupancy_and_return(policy)
    torch.testing.assert_close(occ, mdp.occupancy(policy), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ret, mdp.episode_return(policy), rtol=1e-10, atol=1e-12)


def test_solves_by_slices_of_the_batch_equal_one_solve(monkeypatch):
    """A batch too big for SOLVE_ENTRIES is solved slice by slice: the same numbers, and the same gradients
    to float32 rounding."""
    import study.tabular.solve as mdp_module

    mdp = generators.gridworld(5, size=6, noise=0.2, seed=3)  # float32, as studies run
    logits = torch.randn(5, mdp.n_states, mdp.n_actions, generator=torch.Generator().manual_seed(1),
                         requires_grad=True)
    reward = torch.randn(5, mdp.n_states, mdp.n_actions, generator=torch.Generator().manual_seed(2))

    def everything() -> list[torch.Tensor]:
        policy = torch.softmax(logits, -1)
        out = [mdp.occupancy(policy), mdp.evaluate(policy, 0.9), mdp.evaluate(policy, reward=reward),
               *mdp.occupancy_and_return(policy)]
        (grad,) = torch.autograd.grad(sum(o.sum() for o in out), logits)
        return [*out, grad]

    whole = everything()
    monkeypatch.setattr(mdp_module, "SOLVE_ENTRIES", 2 * mdp.n_states**2)  # slices of 2, 2 and 1 MDPs
    sliced = everything()
    for a, b in zip(whole[:-1], sliced[:-1], strict=True):
        assert a.shape == b.shape and torch.equal(a, b)
    # the backward solves differ from the batched ones by float32 rounding at most
    torch.testing.assert_close(whole[-1], sliced[-1], rtol=5e-5, atol=5e-5)


def test_random_argmax_picks_uniformly_among_the_maxima():
    from study.tabular.kernels import _greedy

    values = np.array([[0.0, 2.0, 1.0, 2.0]] * 4 + [[5.0, 1.0, 1.0, 1.0]])
    u = [0.0, 0.49, 0.5, 0.999999, 0.7]
    assert [_greedy(row, x, True) for row, x in zip(values, u, strict=True)] == [1, 1, 3, 3, 0]
    assert [_greedy(row, x, False) for row, x in zip(values, u, strict=True)] == [1, 1, 1, 1, 0]


@pytest.mark.parametrize("explore", [False, True])
@pytest.mark.parametrize("lr", [0.1, 1.0])
def test_compiled_q_learning_learns_the_tensor_codes_teachers(explore, lr):
    """The compiled Q-learning reads the same hashed numbers and computes each update in the MDP's own
    precision, operation by operation: the batched tensor code's Q-tables bit for bit."""
    from study.tabular.reference import tensor_q_learning

    for mdp in (generators.gridworld(3, size=7, noise=0.2, seed=1),
                generators.garnet(3, n_states=9, n_actions=3, seed=2, dtype=torch.float64)):
        kw = dict(episodes=40, seed=3, explore=explore, lr=lr, epsilon=0.3, gamma=0.95, max_steps=60)
        assert torch.equal(teachers.q_learning(mdp, **kw), tensor_q_learning(mdp, **kw))


def test_exploring_q_learning_covers_the_grid():
    """Random greedy ties and random non-terminal starts reach states that start-state episodes with
    first-index ties never learn (their Q rows stay all zero)."""
    from study.tabular import generators, teachers

    mdp = generators.gridworld(4, size=8, seed=3)
    free = ~mdp.terminal

    def learned(explore: bool) -> float:
        q = teachers.q_learning(mdp, episodes=200, seed=0, explore=explore)
        touched = (q != 0).any(-1) & free
        return float(touched.sum() / free.sum())

    plain, explored = learned(False), learned(True)
    assert explored > 0.95 and plain < 0.5


@pytest.mark.parametrize("kind", ["gridworld", "garnet", "exit_chain", "corridor"])
def test_compiled_rollout_draws_the_tensor_rollouts_episodes(kind):
    """The compiled kernel reads the same hashed numbers as the tensor loop it replaced and computes the
    control policy (teacher, student softmax and uniform, weighted per instance) at the visited states
    only: the same episodes, including cut ones and several episodes per instance."""
    from study.tabular.reference import tensor_rollout
    from study.tabular.rollout import Acting

    make = {"gridworld": lambda: generators.gridworld(3, size=6, noise=0.2, seed=4),
            "garnet": lambda: generators.garnet(3, n_states=7, n_actions=3, seed=1),
            "exit_chain": lambda: generators.exit_chain(3, length=6),
            "corridor": lambda: generators.corridor(3, length=5, noise=0.3)}
    mdp = make[kind]()
    gen = torch.Generator().manual_seed(7)
    shape = (3, mdp.n_states, mdp.n_actions)
    teacher = torch.softmax(torch.randn(shape, generator=gen, dtype=torch.float64) * 2, -1)
    logits = torch.randn(shape, generator=gen, dtype=torch.float64) * 2
    weights = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.3, 0.5, 0.2]], dtype=torch.float64)
    mixed = (weights[:, 2, None, None] / mdp.n_actions + weights[:, 0, None, None] * teacher
             + weights[:, 1, None, None] * torch.softmax(logits, -1))
    for round_ in range(3):
        keys = combine(instance_keys(torch.arange(3), 5), round_)
        for ours, control in ((rollout(mdp, teacher, keys, episodes=4, max_steps=12), teacher),
                              (rollout(mdp, Acting(teacher, logits, weights), keys, episodes=4, max_steps=12), mixed)):
            ref = tensor_rollout(mdp, control, keys, episodes=4, max_steps=12)
            assert torch.equal(ours.valid, ref.valid) and torch.equal(ours.cut, ref.cut)
            assert torch.equal(ours.instance, ref.instance) and torch.equal(ours.lengths, ref.valid.sum(-1))
            v = ref.valid
            assert torch.equal(ours.states[v], ref.states[v]) and torch.equal(ours.actions[v], ref.actions[v])
            assert torch.equal(ours.rewards[v], ref.rewards[v]) and ours.rewards.dtype == ref.rewards.dtype


def test_rollout_counts_each_visited_state_once():
    """The rollout's per-row bookkeeping: every step's row is its instance and state, rows are distinct,
    and their visit counts add up to the steps taken."""
    mdp = generators.gridworld(4, size=6, noise=0.2, seed=5)
    pol = torch.softmax(torch.randn(4, mdp.n_states, mdp.n_actions, generator=torch.Generator().manual_seed(2)), -1)
    ro = rollout(mdp, pol, instance_keys(torch.arange(4), 3), episodes=3, max_steps=30)
    flat = ro.instance[ro.episode] * mdp.n_states + ro.step_states
    assert torch.equal(ro.visited[ro.step_row], flat)
    assert len(torch.unique(ro.visited)) == len(ro.visited)
    assert torch.equal(ro.visits, torch.bincount(ro.step_row, minlength=len(ro.visited)))
    assert int(ro.visits.sum()) == int(ro.lengths.sum()) == len(ro.step_states)


def test_explored_q_learning_teachers_are_optimal_on_deterministic_grid_worlds():
    """The q_learning_explored recipe (uniform behaviour, random starts and ties, targets through the
    expected fall, step size 1 on deterministic moves) reaches the optimal return on every grid world within
    the paper's 2,000 episodes; the plain recipe does not."""
    from study.run.tabular import optimal_return

    mdp = generators.gridworld(8, size=12, seed=4)
    optimal = optimal_return(mdp)

    def greedy_return(q: torch.Tensor) -> torch.Tensor:
        return mdp.to(torch.float64).episode_return(teachers.teacher_policy(q.double(), 0.0))

    explored = greedy_return(teachers.explored_q_learning(mdp, episodes=2000, seed=0))
    plain = greedy_return(teachers.q_learning(mdp, episodes=2000, seed=0))
    assert (explored >= optimal - 1e-6 * optimal.abs().clamp(min=1)).all(), (explored, optimal)
    assert (plain < optimal - 0.01).any()


def test_extra_actions_that_are_not_copies_of_the_moves():
    """Fig. 4's extra actions: repeating the moves (the default, unchanged), staying in place, or moving
    at random; noise replaces the chosen effect as for the moves."""
    plain = generators.gridworld(2, size=6, n_actions=9, seed=3, noise=0.2)
    again = generators.gridworld(2, size=6, n_actions=9, seed=3, noise=0.2, extra_actions="repeat")
    assert torch.equal(plain.succ, again.succ) and torch.equal(plain.prob, again.prob)
    stay = generators.gridworld(2, size=6, n_actions=9, seed=3, noise=0.2, extra_actions="stay").validate()
    assert stay.succ.shape[-1] == 5
    own = torch.arange(stay.n_states).view(1, -1, 1)
    assert torch.equal(stay.succ[..., 4], own.expand(2, -1, 9))
    torch.testing.assert_close(stay.prob[:, :, 4:, 4], torch.full_like(stay.prob[:, :, 4:, 4], 0.8))
    assert (stay.prob[:, :, :4, 4] == 0).all() and torch.equal(stay.prob[:, :, :4, :4], plain.prob[:, :, :4])
    rand = generators.gridworld(2, size=6, n_actions=9, seed=3, noise=0.2, extra_actions="random").validate()
    torch.testing.assert_close(rand.prob[:, :, 4:], torch.full_like(rand.prob[:, :, 4:], 0.25))
    assert torch.equal(rand.prob[:, :, :4], plain.prob[:, :, :4])
    # the uniform policy's walk changes with the design, the optimum does not get worse
    for mdp in (stay, rand):
        assert (optimal_value(mdp) >= optimal_value(plain) - 1e-5).all()
    with pytest.raises(MDPError, match="extra_actions"):
        generators.gridworld(1, size=6, n_actions=5, extra_actions="copy")


def optimal_value(mdp):
    q = teachers.value_iteration(mdp.to(torch.float64))
    return (mdp.start.double() * q.max(-1).values).sum(-1)


def test_costly_extra_actions_are_real_distinct_moves_the_teacher_leaves_alone():
    """Fig. 4's costly design: action a moves like a mod 4 and pays its own cost from [extra_cost, 2 extra_cost]
    on top of the cell it enters; a temperature-0.1 teacher's return is the same at every action count."""
    base = generators.paper_gridworld(2, size=8, n_actions=4, seed=1, extra_actions="costly", dtype=DT)
    wide = generators.paper_gridworld(2, size=8, n_actions=40, seed=1, extra_actions="costly", dtype=DT)
    assert torch.equal(wide.succ[:, :, 4:], wide.succ[:, :, :4].repeat(1, 1, 9, 1))  # the same moves
    cost = (wide.reward[:, :, :4].repeat(1, 1, 9, 1) - wide.reward[:, :, 4:])[..., 0]  # [N, S, 36]
    assert torch.allclose(cost, cost[:, :1])  # one cost per action, whatever the state
    assert cost.min() >= 2.0 and cost.max() <= 4.0 and len(torch.unique(cost[0, 0])) == 36  # distinct
    returns = [(m.start * m.evaluate(teachers.teacher_policy(teachers.value_iteration(m), 0.1))).sum(-1)
               for m in (base, wide)]
    torch.testing.assert_close(returns[0], returns[1], atol=1e-4, rtol=0)
    # the layout does not depend on the design
    repeat = generators.paper_gridworld(2, size=8, n_actions=40, seed=1, dtype=DT)
    assert torch.equal(repeat.succ, wide.succ) and torch.equal(repeat.terminal, wide.terminal)


def test_paper_gridworld_places_cells_one_by_one_with_fixed_probabilities():
    """Czarnecki et al.'s placement: counts vary from grid to grid, their averages follow the probabilities,
    the centre is never changed, and the schema's defaults are the generator's."""
    from study.spec import schema

    mdp = generators.paper_gridworld(300, size=20, seed=0)
    terminal = mdp.terminal.double()
    walls_or_terminals = terminal.sum(-1)
    assert walls_or_terminals.std() > 1.0  # counts vary
    # expected share of changed cells per kind, tried in order: wall, four terminals, -1
    p = [0.1] + [0.005] * 4 + [0.1]
    expected_terminal = p[0] + sum(p[1:5]) * (1 - p[0])
    assert abs(float(terminal.mean()) * 400 / 399 - expected_terminal) < 0.01
    centre = 10 * 20 + 10
    assert not mdp.terminal[:, centre].any() and (mdp.start[:, centre] == 1).all()
    # noise eta: the intended move with 1 - eta + eta/4, each other move with eta/4
    torch.testing.assert_close(mdp.prob[0, centre, 0], torch.tensor([0.925, 0.025, 0.025, 0.025]))
    assert (schema.PAPER_WALL_PROB, schema.PAPER_TERMINAL_PROB, schema.PAPER_PENALTY_PROB) == (
        generators.PAPER_WALL_PROB, generators.PAPER_TERMINAL_PROB, generators.PAPER_PENALTY_PROB)
    assert schema.EnvParams().extra_cost == generators.EXTRA_COST
    with pytest.raises(MDPError, match="terminal_prob"):
        generators.paper_gridworld(1, terminal_prob=0.5)
    with pytest.raises(MDPError, match="absorb"):
        generators.paper_gridworld(1, absorb=0.0)

"""Bad parameters of the tabular generators, teachers and MDP validation raise
MDPError naming the parameter, its value and what is allowed; valid edge values pass."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from study.tabular import generators as G
from study.tabular import teachers as T
from study.tabular.mdp import MDPError

torch.set_num_threads(1)

NAN = float("nan")
INF = float("inf")
DT = torch.float64


def _small() -> G.TabularMDP:
    return G.garnet(2, n_states=4, n_actions=2, absorb=0.3, seed=0, dtype=DT)


def _q():
    return torch.zeros(2, 4, 3, dtype=DT)


# (call, parameter name, bad value as it must appear in the message)
GENERATOR_CASES = [
    # batch count n
    *[(lambda g=g, v=v: g(v), "n", str(v)) for g in (G.gridworld, G.garnet, G.corridor, G.exit_chain, G.bandit)
      for v in (0, -1)],
    (lambda: G.gridworld(2.0), "n", "2.0"),
    (lambda: G.garnet(True), "n", "True"),
    # integer parameters must be ints
    (lambda: G.gridworld(size=3.5), "size", "3.5"),
    (lambda: G.gridworld(size=4.0), "size", "4.0"),
    (lambda: G.gridworld(size=True), "size", "True"),
    (lambda: G.gridworld(size="5"), "size", "'5'"),
    (lambda: G.gridworld(n_actions=4.0), "n_actions", "4.0"),
    (lambda: G.gridworld(seed=1.5), "seed", "1.5"),
    (lambda: G.gridworld(seed=-1), "seed", "-1"),
    (lambda: G.garnet(n_states=5.0), "n_states", "5.0"),
    (lambda: G.garnet(n_actions=2.5), "n_actions", "2.5"),
    (lambda: G.garnet(branching=1.0), "branching", "1.0"),
    (lambda: G.garnet(n_terminal=False), "n_terminal", "False"),
    (lambda: G.garnet(seed=0.0), "seed", "0.0"),
    (lambda: G.garnet(seed=-3), "seed", "-3"),
    (lambda: G.corridor(length=3.0), "length", "3.0"),
    (lambda: G.exit_chain(length=True), "length", "True"),
    (lambda: G.bandit(n_actions=2.0), "n_actions", "2.0"),
    # ranges, including the ones whose upper bound used to be unstated
    (lambda: G.gridworld(size=2), "size", "2"),
    (lambda: G.gridworld(n_actions=3), "n_actions", "3"),
    (lambda: G.gridworld(wall_frac=0.6), "wall_frac", "0.6"),
    (lambda: G.gridworld(penalty_frac=1.1), "penalty_frac", "1.1"),
    (lambda: G.gridworld(absorb=1.0), "absorb", "1.0"),
    (lambda: G.garnet(n_states=1), "n_states", "1"),
    (lambda: G.garnet(n_actions=1), "n_actions", "1"),
    (lambda: G.garnet(n_states=4, branching=5), "branching", "5"),
    (lambda: G.garnet(branching=0), "branching", "0"),
    (lambda: G.garnet(n_states=4, n_terminal=4), "n_terminal", "4"),
    (lambda: G.garnet(n_terminal=-1), "n_terminal", "-1"),
    (lambda: G.garnet(absorb=0.0, n_terminal=0), "absorb", "0.0"),
    (lambda: G.corridor(length=1), "length", "1"),
    (lambda: G.exit_chain(length=1), "length", "1"),
    (lambda: G.exit_chain(absorb=1.0), "absorb", "1.0"),
    (lambda: G.bandit(n_actions=1), "n_actions", "1"),
    # float parameters reject NaN (and infinities where the range is bounded)
    (lambda: G.gridworld(wall_frac=NAN), "wall_frac", "nan"),
    (lambda: G.gridworld(penalty_frac=NAN), "penalty_frac", "nan"),
    (lambda: G.gridworld(noise=NAN), "noise", "nan"),
    (lambda: G.gridworld(absorb=NAN), "absorb", "nan"),
    (lambda: G.gridworld(terminal_values=(1.0, NAN)), "terminal_values", "nan"),
    (lambda: G.gridworld(terminal_values=(INF,)), "terminal_values", "inf"),
    (lambda: G.gridworld(terminal_values=5.0), "terminal_values", "5.0"),
    (lambda: G.gridworld(terminal_values=(), absorb=0.0), "absorb", "0.0"),
    (lambda: G.gridworld(size=3, wall_frac=0.5, terminal_values=(1.0,) * 5), "terminal_values", "5"),
    (lambda: G.garnet(absorb=NAN), "absorb", "nan"),
    (lambda: G.garnet(absorb=-0.1), "absorb", "-0.1"),
    (lambda: G.corridor(noise=NAN), "noise", "nan"),
    (lambda: G.corridor(absorb=NAN), "absorb", "nan"),
    (lambda: G.corridor(goal_reward=NAN), "goal_reward", "nan"),
    (lambda: G.corridor(step_reward=INF), "step_reward", "inf"),
    (lambda: G.exit_chain(step_reward=NAN), "step_reward", "nan"),
    (lambda: G.exit_chain(absorb=NAN), "absorb", "nan"),
    (lambda: G.gridworld(noise=True), "noise", "True"),
    # dtype
    (lambda: G.gridworld(dtype=torch.int64), "dtype", "int64"),
    (lambda: G.two_step_toy(dtype="float32"), "dtype", "float32"),
]

TEACHER_CASES = [
    (lambda: T.noisy(_q(), 0.3, -1.0), "tau", "-1.0"),
    (lambda: T.noisy(_q(), 0.3, NAN), "tau", "nan"),
    (lambda: T.noisy(_q(), 0.3, INF), "tau", "inf"),
    (lambda: T.noisy(_q(), 1.5, 1.0), "fraction", "1.5"),
    (lambda: T.noisy(_q(), NAN, 1.0), "fraction", "nan"),
    (lambda: T.noisy(_q(), 0.3, 1.0, seed=-1), "seed", "-1"),
    (lambda: T.noisy(_q(), 0.3, 1.0, seed=1.0), "seed", "1.0"),
    (lambda: T.noisy(_q(), 0.3, 1.0, mask=torch.ones(2, 5, dtype=torch.bool)), "mask", "(2, 5)"),
    (lambda: T.noisy(torch.zeros(4, 3), 0.3, 1.0), "q", "(4, 3)"),
    (lambda: T.q_learning(_small(), episodes=0), "episodes", "0"),
    (lambda: T.q_learning(_small(), episodes=2.0), "episodes", "2.0"),
    (lambda: T.q_learning(_small(), max_steps=0), "max_steps", "0"),
    (lambda: T.q_learning(_small(), lr=0.0), "lr", "0.0"),
    (lambda: T.q_learning(_small(), lr=1.5), "lr", "1.5"),
    (lambda: T.q_learning(_small(), lr=NAN), "lr", "nan"),
    (lambda: T.q_learning(_small(), epsilon=-0.1), "epsilon", "-0.1"),
    (lambda: T.q_learning(_small(), epsilon=1.1), "epsilon", "1.1"),
    (lambda: T.q_learning(_small(), gamma=0.0), "gamma", "0.0"),
    (lambda: T.q_learning(_small(), gamma=1.01), "gamma", "1.01"),
    (lambda: T.q_learning(_small(), seed=-2), "seed", "-2"),
    (lambda: T.value_iteration(_small(), gamma=0.0), "gamma", "0.0"),
    (lambda: T.value_iteration(_small(), gamma=NAN), "gamma", "nan"),
    (lambda: T.value_iteration(_small(), gamma=2.0), "gamma", "2.0"),
    (lambda: T.value_iteration(_small(), tol=0.0), "tol", "0.0"),
    (lambda: T.value_iteration(_small(), tol=-1e-3), "tol", "-0.001"),
    (lambda: T.value_iteration(_small(), tol=NAN), "tol", "nan"),
    (lambda: T.value_iteration(_small(), max_iter=0), "max_iter", "0"),
    (lambda: T.value_iteration(_small(), max_iter=10.0), "max_iter", "10.0"),
    (lambda: T.teacher_policy(_q(), -0.5), "tau", "-0.5"),
    (lambda: T.teacher_values(_small(), _q()[:, :, :2], 1.0, gamma=0.0), "gamma", "0.0"),
]


@pytest.mark.parametrize(("call", "name", "value"), GENERATOR_CASES + TEACHER_CASES)
def test_bad_parameter_raises_mdp_error_naming_it(call, name, value):
    with pytest.raises(MDPError) as err:
        call()
    message = str(err.value)
    assert message.startswith(name), message
    assert value in message, message
    assert "allowed" in message, message


def _broken(field: str):
    """A valid batch with one tensor broken, and what the message must show."""
    mdp = _small()
    if field == "succ_high":
        succ = mdp.succ.clone()
        succ[1, 2, 1, 0] = 7
        return replace(mdp, succ=succ), ("succ", "out of range", "max 7", "n_states (4)")
    if field == "succ_low":
        succ = mdp.succ.clone()
        succ[0, 0, 0, 0] = -2
        return replace(mdp, succ=succ), ("succ", "out of range", "min -2")
    if field == "prob_negative":
        prob = mdp.prob.clone()
        prob[0, 0, 0] = torch.tensor([-0.25, 1.25])
        return replace(mdp, prob=prob), ("prob", "negative", "-0.25", "prob >= 0")
    if field == "prob_sum":
        prob = mdp.prob.clone()
        prob[0, 0, 0, 0] += 0.5
        return replace(mdp, prob=prob), ("prob", "sum to one", "1.5")
    if field == "prob_nan":
        prob = mdp.prob.clone()
        prob[0, 0, 0, 0] = NAN
        return replace(mdp, prob=prob), ("prob", "non-finite")
    if field == "reward_nan":
        reward = mdp.reward.clone()
        reward[1, 1, 1, 1] = NAN
        return replace(mdp, reward=reward), ("reward", "nan")
    if field == "start_sum":
        return replace(mdp, start=mdp.start * 0.5), ("start", "sum to one", "0.5")
    if field == "start_negative":
        start = mdp.start.clone()
        start[0] = torch.tensor([1.5, -0.5, 0.0, 0.0], dtype=DT)
        return replace(mdp, start=start), ("start", "-0.5")
    if field == "start_on_terminal":
        terminal = mdp.terminal.clone()
        terminal[0, 0] = True
        return replace(mdp, terminal=terminal), ("start", "terminal", "MDP 0, state 0", "0.25")
    if field == "absorb_one":
        return replace(mdp, absorb=torch.tensor([0.1, 1.0], dtype=DT)), ("absorb", "1.0", "0 <= absorb < 1")
    if field == "absorb_nan":
        return replace(mdp, absorb=torch.tensor([NAN, 0.1], dtype=DT)), ("absorb", "nan")
    if field == "absorb_shape":
        return replace(mdp, absorb=torch.zeros(3, dtype=DT)), ("absorb", "(3,)", "(2,)")
    if field == "terminal_shape":
        return replace(mdp, terminal=mdp.terminal[:, :3]), ("terminal", "(2, 3)", "(2, 4)")
    if field == "terminal_dtype":
        return replace(mdp, terminal=mdp.terminal.long()), ("terminal", "int64", "torch.bool")
    if field == "reward_shape":
        return replace(mdp, reward=mdp.reward[..., :1]), ("reward", "(2, 4, 2, 1)", "(2, 4, 2, 2)")
    if field == "features_shape":
        return replace(mdp, features=torch.zeros(2, 3, 1, dtype=DT)), ("features", "(2, 3, 1)")
    if field == "succ_dtype":
        return replace(mdp, succ=mdp.succ.to(DT)), ("succ", "float64", "int64")
    raise AssertionError(field)


@pytest.mark.parametrize(
    "field",
    ["succ_high", "succ_low", "prob_negative", "prob_sum", "prob_nan", "reward_nan", "start_sum",
     "start_negative", "start_on_terminal", "absorb_one", "absorb_nan", "absorb_shape", "terminal_shape",
     "terminal_dtype", "reward_shape", "features_shape", "succ_dtype"],
)
def test_validate_names_the_offending_value(field):
    mdp, expected = _broken(field)
    with pytest.raises(MDPError) as err:
        mdp.validate()
    message = str(err.value)
    assert message.startswith(expected[0]), message
    for part in expected[1:]:
        assert part in message, message
    assert "allowed" in message, message


def test_valid_edge_values_still_work():
    assert G.gridworld(1, size=3, wall_frac=0.0, seed=0).n_states == 9
    assert G.gridworld(1, size=3, n_actions=4, wall_frac=0.5, penalty_frac=1.0, noise=1.0, absorb=0.0,
                       terminal_values=(1.0,) * 4).n_states == 9  # 9 cells - 4 walls - start = 4 terminals
    assert G.gridworld(1, size=4, terminal_values=(), absorb=0.5).terminal.sum() == round(0.1 * 16)
    assert G.gridworld(1, size=3, absorb=0.9995).absorb.item() == pytest.approx(0.9995)
    assert G.gridworld(1, size=3, n_actions=10_001, seed=0).n_actions == 10_001  # no hidden upper bound
    g = G.garnet(1, n_states=3, n_actions=2, branching=3, seed=0)  # branching == n_states
    assert g.succ.shape == (1, 3, 2, 3)
    assert torch.equal(g.succ[0].sort(-1).values, torch.arange(3).expand(3, 2, 3))
    assert G.garnet(1, n_states=3, n_terminal=2, absorb=0.0).terminal.sum() == 2
    assert G.garnet(1, n_states=2, n_actions=2, branching=1, absorb=0.0, n_terminal=1).n_states == 2
    assert G.corridor(1, length=2, noise=1.0, absorb=0.0).n_states == 3
    assert G.exit_chain(1, length=2).n_states == 3
    assert G.bandit(1, n_actions=2).n_actions == 2
    assert G.two_step_toy(torch.float64).dtype == torch.float64


def test_numpy_and_torch_ints_count_as_ints():
    np = pytest.importorskip("numpy")
    mdp = G.gridworld(np.int64(2), size=np.int32(3), seed=np.int64(1))
    assert mdp.n_mdps == 2
    assert mdp.info["size"] == 3 and type(mdp.info["size"]) is int
    assert G.garnet(1, n_states=np.int64(4), absorb=np.float64(0.5)).n_states == 4


def test_teacher_edge_values_still_work():
    mdp = _small()
    q = T.value_iteration(mdp, gamma=1.0, tol=1e-6, max_iter=10_000)
    assert torch.isfinite(q).all()
    with pytest.raises(MDPError, match="did not converge"):
        T.value_iteration(mdp, max_iter=1)
    q1 = T.q_learning(mdp, episodes=1, max_steps=1, lr=1.0, epsilon=0.0, gamma=1.0, seed=0)
    assert (q1 != 0).any()  # one episode of one step updates one entry per MDP
    assert T.q_learning(mdp, episodes=1, max_steps=2, epsilon=1.0, gamma=1e-3).shape == q.shape
    assert torch.equal(T.noisy(q, 0.5, 0.0), T.noisy(q, 0.5, 0))
    assert torch.equal(T.noisy(q, 0.0, 2.0), q)
    pi = T.teacher_policy(q, 0.0)
    assert torch.allclose(pi.sum(-1), torch.ones(2, 4, dtype=DT))
    assert math.isfinite(float(T.teacher_values(mdp, q, 0.5, gamma=0.9).sum()))

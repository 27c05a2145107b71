"""Tabular teachers: raw outputs (Q-values) whose softmax at a temperature is pi_T."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from study.tabular import kernels
from study.tabular.mdp import MDPError, TabularMDP, check_float, check_int
from study.tabular.rng import NOISE, START, STEP, CounterRNG, instance_keys
from study.tabular.rollout import step_table
from variants.policy import teacher_log_probs

_SEED_MAX = 2**63 - 1  # seeds are held in int64 tensors


def _check_gamma(gamma: object) -> float:
    return check_float("gamma", gamma, "0 < gamma <= 1", 0.0, 1.0, low_open=True)


def _check_tau(tau: object) -> float:
    return check_float("tau", tau, "a finite tau >= 0 (0 is the argmax)", 0.0, math.inf, high_open=True)


def _check_seed(seed: object) -> int:
    return check_int("seed", seed, 0, _SEED_MAX, "0 <= seed < 2**63")


def _check_mdp(mdp: object) -> TabularMDP:
    if not isinstance(mdp, TabularMDP):
        raise MDPError(f"mdp: {type(mdp).__name__} is not a TabularMDP; allowed: a TabularMDP")
    return mdp


def _check_outputs(name: str, out: object) -> Tensor:
    if not isinstance(out, Tensor) or out.dim() != 3 or not out.is_floating_point():
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise MDPError(f"{name}: {shape} is not a floating [N, S, A] tensor; allowed: a floating [N, S, A] tensor")
    return out


def value_iteration(mdp: TabularMDP, gamma: float = 1.0, tol: float = 1e-8, max_iter: int = 100_000) -> Tensor:
    """Optimal ``Q*`` ``[N, S, A]`` by value iteration.

    Converges when every policy's episodes end (absorption, terminal states)
    or ``gamma < 1``; raises :class:`MDPError` if it does not within ``max_iter``.
    """
    mdp = _check_mdp(mdp)
    gamma = _check_gamma(gamma)
    tol = check_float("tol", tol, "a finite tol > 0", 0.0, math.inf, low_open=True, high_open=True)
    max_iter = check_int("max_iter", max_iter, 1)
    r = mdp.expected_reward()
    q = torch.zeros_like(r)
    for _ in range(max_iter):
        new = r + gamma * mdp.expect_next(q.max(-1).values)
        if (new - q).abs().max() < tol:
            return new
        q = new
    raise MDPError(f"value iteration did not converge in {max_iter} sweeps (episodes may never end)")


def q_learning(
    mdp: TabularMDP,
    *,
    episodes: int = 2000,
    lr: float = 0.1,
    epsilon: float = 0.1,
    gamma: float = 1.0,
    max_steps: int = 1000,
    seed: int = 0,
    explore: bool = False,
    expected_fall: bool = False,
) -> Tensor:
    """Tabular Q-learning teachers, one MDP after another in a compiled loop.

    Epsilon-greedy behaviour, a constant step size and one episode per MDP per
    round, as the paper's teachers; draws are per MDP (counter-based), so a
    teacher does not depend on its batch.

    ``explore=False`` is the plain recipe: episodes from the MDP's start state, greedy ties to the first
    action. With Q starting at zero, every untried state then sends its greedy action the same way (into a
    wall on a grid world) and most of the grid is never learned, however many episodes run. ``explore=True``
    breaks greedy ties uniformly at random and starts every episode in a state drawn uniformly from the
    non-terminal ones, so the episodes cover the grid. ``expected_fall`` bootstraps through the chance of
    falling into the absorbing state (with ``gamma (1 - absorb)``) instead of cutting the target where an
    episode happened to fall, so that Q converges to the MDP's own values.
    """
    mdp = _check_mdp(mdp)
    episodes = check_int("episodes", episodes, 1)
    lr = check_float("lr", lr, "0 < lr <= 1", 0.0, 1.0, low_open=True)
    epsilon = check_float("epsilon", epsilon, "0 <= epsilon <= 1", 0.0, 1.0)
    gamma = _check_gamma(gamma)
    max_steps = check_int("max_steps", max_steps, 1)
    seed = _check_seed(seed)
    n = mdp.n_mdps
    rng = CounterRNG(instance_keys(torch.full((n,), seed), torch.arange(n)))
    q = torch.zeros(n, mdp.n_states, mdp.n_actions, dtype=mdp.dtype)
    starts = mdp.start
    if explore:  # the fifth uniform of each step breaks greedy ties
        free = (~mdp.terminal).to(mdp.dtype)
        starts = free / free.sum(-1, keepdim=True)
    discount = torch.full((n,), gamma, dtype=mdp.dtype)
    if expected_fall:
        discount = (gamma * (1.0 - mdp.absorb.to(torch.float64))).to(mdp.dtype)
    real = torch.empty(0, dtype=mdp.dtype).numpy().dtype.type
    kernels.q_learning(q.numpy(), rng.key(START).numpy(), rng.key(STEP).numpy(), starts.cumsum(-1).numpy(),
                       step_table(mdp).numpy(), mdp.absorb.to(torch.float64).numpy(), episodes, real(lr), epsilon,
                       discount.numpy(), max_steps, explore, expected_fall)
    return q


def explored_q_learning(mdp: TabularMDP, *, episodes: int = 2000, gamma: float = 1.0, seed: int = 0) -> Tensor:
    """A Q-learning teacher a practitioner would call trained: uniform behaviour (epsilon 1; Q-learning
    learns the greedy values off-policy), episodes from uniformly random non-terminal states, random greedy
    ties, targets through the expected fall, and step size 1 where every move is deterministic (the update
    is then exact) or 0.1 where moves are noisy."""
    return q_learning(mdp, episodes=episodes, gamma=gamma, seed=seed, expected_fall=True, **explored_recipe(mdp))


def explored_recipe(mdp: TabularMDP) -> dict[str, Any]:
    """The exploring recipe's step size and behaviour on ``mdp`` (what :func:`explored_q_learning` passes to
    Q-learning besides the expected fall), for whatever else runs the same recipe."""
    deterministic = bool((mdp.prob.max(-1).values == 1).all())
    return {"lr": 1.0 if deterministic else 0.1, "epsilon": 1.0, "explore": True}


def adversarial(q: Tensor) -> Tensor:
    """A teacher that prefers the worst actions: outputs ``-Q``."""
    return -q


def noisy(q: Tensor, fraction: float, tau: float, seed: int = 0, mask: Tensor | None = None) -> Tensor:
    """Replace the teacher's outputs at a random ``fraction`` of states with a random
    action distribution: outputs ``tau * log p`` with ``p ~ Dirichlet(1)``, so that
    ``softmax(out / tau) = p`` (at ``tau = 0`` the argmax of ``p``).
    ``mask`` ``[N, S]`` limits which states may be chosen (e.g. non-terminal ones).
    """
    q = _check_outputs("q", q)
    fraction = check_float("fraction", fraction, "0 <= fraction <= 1 (of the states)", 0.0, 1.0)
    tau = _check_tau(tau)
    seed = _check_seed(seed)
    n, s, a = q.shape
    if mask is not None and (not isinstance(mask, Tensor) or mask.dtype != torch.bool or mask.shape != (n, s)):
        got = f"shape {tuple(mask.shape)}, dtype {mask.dtype}" if isinstance(mask, Tensor) else type(mask).__name__
        raise MDPError(f"mask: {got} does not fit q; allowed: None or a bool tensor of shape {(n, s)}")
    rng = CounterRNG(instance_keys(torch.full((n,), seed), torch.arange(n)))
    pick = rng.uniform(NOISE, 0, shape=(s,)) < fraction
    if mask is not None:
        pick &= mask
    gamma_draws = -torch.log(rng.uniform(NOISE, 1, shape=(s, a)))  # Exp(1) -> Dirichlet(1)
    p = gamma_draws / gamma_draws.sum(-1, keepdim=True)
    noise_out = (tau * torch.log(p) if tau > 0 else p).to(q.dtype)
    return torch.where(pick.unsqueeze(-1), noise_out, q)


def teacher_policy(out: Tensor, tau: float) -> Tensor:
    """``pi_T = softmax(out / tau)`` (argmax at tau 0)."""
    tau = _check_tau(tau)
    return teacher_log_probs(out, tau).exp()


def teacher_values(mdp: TabularMDP, out: Tensor, tau: float, gamma: float = 1.0) -> Tensor:
    """``V_T = V^{pi_T}`` exactly, ``[N, S]``: what the V-based variants shape with."""
    mdp = _check_mdp(mdp)
    gamma = _check_gamma(gamma)
    return mdp.evaluate(teacher_policy(out, tau), gamma)

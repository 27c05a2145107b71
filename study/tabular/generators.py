"""Seeded generators of finite MDPs, each returning a batched :class:`TabularMDP`.

MDP ``i`` of a batch made with seed ``s`` depends only on ``(s, i)``, so a
batch of 20 is the first 20 of a batch of 1000.
"""

from __future__ import annotations

import numpy as np
import torch

from study.tabular.mdp import MDPError, TabularMDP, check_finite, check_float, check_int

# Grid moves: up, right, down, left.
_MOVES = np.array([(-1, 0), (0, 1), (1, 0), (0, -1)])


def _rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, index])


def _stack(mdps: list[dict], dtype: torch.dtype, info: dict) -> TabularMDP:
    cat = lambda key, dt: torch.as_tensor(np.stack([m[key] for m in mdps]), dtype=dt)  # noqa: E731
    mdp = TabularMDP(
        succ=cat("succ", torch.int64),
        prob=cat("prob", dtype),
        reward=cat("reward", dtype),
        terminal=cat("terminal", torch.bool),
        start=cat("start", dtype),
        absorb=cat("absorb", dtype),
        features=cat("features", dtype) if "features" in mdps[0] else None,
        info=info,
    )
    return mdp.validate()


def _check_n(n: object) -> int:
    return check_int("n", n, 1, allowed="n >= 1 (the number of MDPs in the batch)")


def _check_seed(seed: object) -> int:
    return check_int("seed", seed, 0)


def _check_absorb(absorb: object) -> float:
    return check_float("absorb", absorb, "0 <= absorb < 1", 0.0, 1.0, high_open=True)


def _check_dtype(dtype: object) -> torch.dtype:
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise MDPError(f"dtype: {dtype!r} is not a floating dtype; allowed: a torch floating dtype "
                       "such as torch.float32 or torch.float64")
    return dtype


def _check_grid(n: object, size: object, n_actions: object, extra_actions: object, extra_cost: object,
                noise: object, absorb: object, seed: object,
                dtype: object) -> tuple[int, int, int, float, float, float, int, torch.dtype]:
    """The settings both grid-world generators share, checked (each names what is allowed)."""
    if extra_actions not in EXTRA_ACTIONS:
        raise MDPError(f"extra_actions: unknown design {extra_actions!r}; allowed: {', '.join(EXTRA_ACTIONS)}")
    return (_check_n(n), check_int("size", size, 3), check_int("n_actions", n_actions, 4),
            check_float("extra_cost", extra_cost, "0 <= extra_cost <= 1000", 0.0, 1000.0),
            check_float("noise", noise, "0 <= noise (eta) <= 1", 0.0, 1.0), _check_absorb(absorb),
            _check_seed(seed), _check_dtype(dtype))


EXTRA_ACTIONS = ("repeat", "stay", "random", "costly")
#: the least extra cost of a "costly" extra action (each draws its own from [extra_cost, 2 extra_cost])
EXTRA_COST = 2.0


def gridworld(
    n: int = 1,
    *,
    size: int = 20,
    n_actions: int = 4,
    wall_frac: float = 0.1,
    terminal_values: tuple[float, ...] = (10.0, -10.0, 5.0, -5.0),
    penalty_frac: float = 0.1,
    noise: float = 0.0,
    absorb: float = 0.01,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    extra_actions: str = "repeat",
    extra_cost: float = EXTRA_COST,
) -> TabularMDP:
    """Czarnecki et al.'s grid worlds.

    A ``size x size`` grid; a fraction ``wall_frac`` of cells are walls; one
    terminal cell per entry of ``terminal_values``; a fraction
    ``penalty_frac`` of the other cells cost -1 on entry; the rest are worth 0.
    The reward of a cell is received on entering it (staying in place enters
    it again). Moves into walls or off the grid leave the agent in place.
    With probability ``noise`` (eta) a uniformly random move replaces the
    chosen one. Every step ends the episode with probability ``absorb``.
    Episodes start at the centre.

    Actions 0-3 move up, right, down, left. Actions beyond the fourth (for the
    action-count scaling of Fig. 4: 40, 400, 4000) repeat the four moves
    cyclically: action ``a`` moves like ``a mod 4``. The MDP, its optimal
    values and the uniform policy's random walk stay those of the 4-action
    grid, and the teacher spreads its mass over equivalent copies; what grows
    is only the number of actions a sampled update must cover. Two designs
    whose extra actions are not copies: ``extra_actions="stay"`` (they leave
    the agent in place, entering its own cell again; a fifth successor per
    action) and ``"random"`` (they move in a uniformly random direction).
    Either way noise, when set, replaces the chosen effect as for the moves.
    A fourth design, ``"costly"``, keeps the extra actions real and distinct
    but worse than the best move: action ``a`` moves like ``a mod 4`` and
    pays its own cost, drawn once per grid world from ``[extra_cost,
    2 extra_cost]``, on top of the cell it enters. With ``extra_cost = 2`` a
    teacher at temperature 0.1 puts under 1e-5 of its mass on 4,000 of them,
    so its return is the same at every action count, while a student that
    spreads its mass over them pays for it.

    Wall cells are stored as terminal states with no start mass: they are
    unreachable, and metrics over "non-terminal" states skip them. (Free cells
    that walls happen to cut off from the centre stay non-terminal.)
    """
    n, size, n_actions, extra_cost, noise, absorb, seed, dtype = _check_grid(
        n, size, n_actions, extra_actions, extra_cost, noise, absorb, seed, dtype)
    wall_frac = check_float("wall_frac", wall_frac, "0 <= wall_frac <= 0.5", 0.0, 0.5)
    penalty_frac = check_float("penalty_frac", penalty_frac, "0 <= penalty_frac <= 1", 0.0, 1.0)
    if isinstance(terminal_values, (str, bytes)) or not hasattr(terminal_values, "__iter__"):
        raise MDPError(f"terminal_values: {terminal_values!r} is not a sequence; "
                       "allowed: a sequence of finite numbers")
    terminal_values = tuple(check_finite(f"terminal_values[{j}]", v) for j, v in enumerate(terminal_values))
    n_cells = size * size
    room = n_cells - round(wall_frac * n_cells) - 1  # free cells other than the start
    if len(terminal_values) > room:
        raise MDPError(f"terminal_values: {len(terminal_values)} terminal cells do not fit; allowed: at most "
                       f"{room} for size {size} and wall_frac {wall_frac} (the free cells other than the start)")
    if absorb == 0 and not terminal_values:
        raise MDPError("absorb: 0.0 with no terminal_values lets episodes never end; "
                       "allowed: absorb > 0 or at least one terminal value")
    centre = (size // 2) * size + size // 2
    mdps = []
    for i in range(n):
        rng = _rng(seed, i)
        others = np.setdiff1d(np.arange(n_cells), [centre])
        order = rng.permutation(others)
        n_walls = round(wall_frac * n_cells)
        walls = order[:n_walls]
        terminals = order[n_walls:n_walls + len(terminal_values)]
        free = order[n_walls + len(terminal_values):]
        penalties = free[: round(penalty_frac * len(free))]
        value = np.zeros(n_cells)
        value[terminals] = terminal_values
        value[penalties] = -1.0
        is_wall = np.zeros(n_cells, bool)
        is_wall[walls] = True
        is_terminal = np.zeros(n_cells, bool)
        is_terminal[terminals] = True
        costs = _extra_costs(rng, n_actions, extra_actions, extra_cost)
        mdps.append(_grid_mdp(size, is_wall, is_terminal, value, n_actions, noise, absorb, extra_actions, costs))
    info = {"generator": "gridworld", "size": size, "n_actions": n_actions, "extra_actions": extra_actions,
            **({"extra_cost": extra_cost} if extra_actions == "costly" else {}),
            "wall_frac": wall_frac,
            "terminal_values": list(terminal_values), "penalty_frac": penalty_frac, "noise": noise,
            "absorb": absorb, "seed": seed}
    return _stack(mdps, dtype, info)


def _extra_costs(rng: np.random.Generator, n_actions: int, extra_actions: str, extra_cost: float) -> np.ndarray | None:
    """What each action pays on top of the cell it enters: nothing unless the extra actions are "costly", then
    each extra action its own draw from ``[extra_cost, 2 extra_cost]`` (after the layout's draws, so a grid's
    layout does not depend on the design)."""
    if extra_actions != "costly":
        return None
    costs = np.zeros(n_actions)
    costs[4:] = rng.uniform(extra_cost, 2 * extra_cost, n_actions - 4)
    return costs


def _grid_mdp(size: int, is_wall: np.ndarray, is_terminal: np.ndarray, value: np.ndarray, n_actions: int,
              noise: float, absorb: float, extra_actions: str, costs: np.ndarray | None = None) -> dict:
    """One grid world's arrays from its layout: walls, terminal cells and the reward for entering each cell;
    start at the centre; moves, extra actions and noise as :func:`gridworld` describes; ``costs`` ``[A]``: what
    each action pays on top of the cell it enters ("costly" extra actions)."""
    n_cells = size * size
    rows, cols = np.divmod(np.arange(n_cells), size)
    # destination of each of the four moves from each cell
    r2 = np.clip(rows[:, None] + _MOVES[None, :, 0], 0, size - 1)
    c2 = np.clip(cols[:, None] + _MOVES[None, :, 1], 0, size - 1)
    dest = r2 * size + c2
    dest = np.where(is_wall[dest], np.arange(n_cells)[:, None], dest)  # [S, 4]
    # probabilities over the four moves (and staying, for that design) for each action
    if extra_actions == "stay":
        dest = np.concatenate([dest, np.arange(n_cells)[:, None]], axis=1)  # [S, 5]
    move_p = np.zeros((n_actions, dest.shape[1]))
    move_p[:, :4] = noise / 4
    effect = (np.arange(n_actions) % 4 if extra_actions in ("repeat", "costly")
              else np.minimum(np.arange(n_actions), 4))
    if extra_actions == "random":
        move_p[4:, :4] = 0.25
        move_p[np.arange(4), effect[:4]] += 1 - noise
    else:
        move_p[np.arange(n_actions), effect] += 1 - noise
    k_count = dest.shape[1]
    succ = np.broadcast_to(dest[:, None, :], (n_cells, n_actions, k_count)).copy()
    prob = np.broadcast_to(move_p[None], (n_cells, n_actions, k_count)).copy()
    start = np.zeros(n_cells)
    start[(size // 2) * size + size // 2] = 1.0
    reward = value[succ] if costs is None else value[succ] - costs[None, :, None]
    return {"succ": succ, "prob": prob, "reward": reward, "terminal": is_wall | is_terminal,
            "start": start, "absorb": np.float64(absorb)}


#: Czarnecki et al.'s appendix, "distribution over MDPs": the kinds a cell can be turned into, in the order
#: they are tried, with this generator's default probabilities (see :func:`paper_gridworld` for which of
#: these the paper's text gives)
PAPER_TERMINALS = (10.0, 5.0, -5.0, -10.0)
PAPER_WALL_PROB = 0.1
PAPER_TERMINAL_PROB = 0.005
PAPER_PENALTY_PROB = 0.1
PAPER_NOISE = 0.1


def paper_gridworld(
    n: int = 1,
    *,
    size: int = 20,
    n_actions: int = 4,
    wall_prob: float = PAPER_WALL_PROB,
    terminal_prob: float = PAPER_TERMINAL_PROB,
    penalty_prob: float = PAPER_PENALTY_PROB,
    noise: float = PAPER_NOISE,
    absorb: float = 0.01,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    extra_actions: str = "repeat",
    extra_cost: float = EXTRA_COST,
) -> TabularMDP:
    """Czarnecki et al.'s grid worlds with the placement of their appendix.

    Cells are visited one by one from the upper-left corner, row by row; each
    is tried in turn for a wall (probability ``wall_prob``), a terminal cell
    worth +10, +5, -5 and -10 on entry (``terminal_prob`` each) and a
    non-terminal cell costing -1 (``penalty_prob``), and the first kind drawn
    is kept, so a cell is changed at most once and the counts vary from grid
    to grid. The start cell (the centre) is never changed. Dynamics as in
    :func:`gridworld`: with probability ``1 - noise`` (eta) the intended move,
    with ``noise / 4`` each of the four moves; moves into walls or off the
    grid stay in place; absorption ``absorb`` per step.

    The paper's text gives the procedure, absorption 0.01 and the start in
    the centre; the probabilities and eta are this generator's choices
    (results/REPLICATION.md says how they move the results). A grid may have
    no positive terminal at all: then the best policy avoids the -1 cells
    until the episode is absorbed.
    """
    n, size, n_actions, extra_cost, noise, absorb, seed, dtype = _check_grid(
        n, size, n_actions, extra_actions, extra_cost, noise, absorb, seed, dtype)
    wall_prob = check_float("wall_prob", wall_prob, "0 <= wall_prob <= 0.5", 0.0, 0.5)
    terminal_prob = check_float("terminal_prob", terminal_prob, "0 <= terminal_prob <= 0.25", 0.0, 0.25)
    penalty_prob = check_float("penalty_prob", penalty_prob, "0 <= penalty_prob <= 1", 0.0, 1.0)
    if absorb == 0:
        raise MDPError("absorb: 0.0 lets a grid without terminal cells run for ever; allowed: 0 < absorb < 1 "
                       "(the paper: 0.01)")
    n_cells = size * size
    centre = (size // 2) * size + size // 2
    kinds = [wall_prob] + [terminal_prob] * len(PAPER_TERMINALS) + [penalty_prob]
    mdps = []
    for i in range(n):
        rng = _rng(seed, i)
        draws = rng.random((n_cells, len(kinds)))  # one draw per cell and kind, tried in order
        hit = draws < np.array(kinds)
        hit[centre] = False
        kind = np.where(hit.any(1), hit.argmax(1), -1)  # the first kind drawn, -1 for none
        is_wall = kind == 0
        is_terminal = (kind >= 1) & (kind <= len(PAPER_TERMINALS))
        value = np.zeros(n_cells)
        value[is_terminal] = np.array(PAPER_TERMINALS)[kind[is_terminal] - 1]
        value[kind == len(kinds) - 1] = -1.0
        costs = _extra_costs(rng, n_actions, extra_actions, extra_cost)
        mdps.append(_grid_mdp(size, is_wall, is_terminal, value, n_actions, noise, absorb, extra_actions, costs))
    info = {"generator": "paper_gridworld", "size": size, "n_actions": n_actions, "extra_actions": extra_actions,
            **({"extra_cost": extra_cost} if extra_actions == "costly" else {}),
            "wall_prob": wall_prob, "terminal_values": list(PAPER_TERMINALS), "terminal_prob": terminal_prob,
            "penalty_prob": penalty_prob, "noise": noise, "absorb": absorb, "seed": seed}
    return _stack(mdps, dtype, info)


def garnet(
    n: int = 1,
    *,
    n_states: int = 10,
    n_actions: int = 3,
    branching: int = 2,
    absorb: float = 0.1,
    n_terminal: int = 0,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> TabularMDP:
    """Random Garnet MDPs: each (s, a) reaches ``branching`` distinct states with
    Dirichlet(1) probabilities and pays a N(0, 1) reward; episodes end by
    absorption (probability ``absorb`` per step) or in one of ``n_terminal``
    terminal states. Starts are uniform over the non-terminal states.
    """
    n = _check_n(n)
    n_states = check_int("n_states", n_states, 2)
    n_actions = check_int("n_actions", n_actions, 2)
    branching = check_int("branching", branching, 1, n_states, f"1 <= branching <= n_states ({n_states})")
    absorb = _check_absorb(absorb)
    n_terminal = check_int("n_terminal", n_terminal, 0, n_states - 1,
                           f"0 <= n_terminal < n_states ({n_states})")
    seed = _check_seed(seed)
    dtype = _check_dtype(dtype)
    if absorb == 0 and n_terminal == 0:
        raise MDPError("absorb: 0.0 with n_terminal 0 lets episodes never end; "
                       "allowed: absorb > 0 or n_terminal > 0")
    mdps = []
    for i in range(n):
        rng = _rng(seed, i)
        succ = np.stack([rng.choice(n_states, size=branching, replace=False)
                         for _ in range(n_states * n_actions)]).reshape(n_states, n_actions, branching)
        prob = rng.dirichlet(np.ones(branching), size=(n_states, n_actions))
        r = rng.normal(size=(n_states, n_actions))
        reward = np.broadcast_to(r[..., None], succ.shape).copy()
        terminal = np.zeros(n_states, bool)
        terminal[n_states - n_terminal:] = True
        start = (~terminal).astype(float)
        start /= start.sum()
        mdps.append({"succ": succ, "prob": prob, "reward": reward, "terminal": terminal,
                     "start": start, "absorb": np.float64(absorb)})
    info = {"generator": "garnet", "n_states": n_states, "n_actions": n_actions, "branching": branching,
            "absorb": absorb, "n_terminal": n_terminal, "seed": seed}
    return _stack(mdps, dtype, info)


def two_step_toy(dtype: torch.dtype = torch.float32) -> TabularMDP:
    """The toy of Czarnecki et al.'s Fig. 2.

    States s0, sL, sR and a terminal state. From s0, L goes to sL and R to sR;
    from sL, L ends with -1 and R with -2; from sR, L ends with 0 and R with
    -3. Features put s0 alone and sL, sR together, so a linear student with
    one free logit per feature has two parameters (theta_0 at s0, theta_1
    shared by sL and sR): the shared-parameter student of the figure.
    """
    dtype = _check_dtype(dtype)
    end = 3
    succ = np.array([[[1], [2]], [[end], [end]], [[end], [end]], [[end], [end]]])
    prob = np.ones((4, 2, 1))
    reward = np.array([[[0.0], [0.0]], [[-1.0], [-2.0]], [[0.0], [-3.0]], [[0.0], [0.0]]])
    terminal = np.array([False, False, False, True])
    start = np.array([1.0, 0, 0, 0])
    features = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 0.0]])
    mdp = {"succ": succ, "prob": prob, "reward": reward, "terminal": terminal, "start": start,
           "absorb": np.float64(0.0), "features": features}
    return _stack([mdp], dtype, {"generator": "two_step_toy", "states": ["s0", "sL", "sR", "end"],
                                 "actions": ["L", "R"]})


def corridor(
    n: int = 1,
    *,
    length: int = 10,
    goal_reward: float = 10.0,
    step_reward: float = -1.0,
    noise: float = 0.0,
    absorb: float = 0.01,
    dtype: torch.dtype = torch.float32,
) -> TabularMDP:
    """A corridor (Czarnecki et al.'s Fig. 6 setting): cells 0..length-1, actions
    left (0) and right (1), start in cell 0, the goal (terminal) past the right
    end. Each step pays ``step_reward``; entering the goal pays ``goal_reward``.
    Moving left in cell 0 stays put. ``noise`` flips the chosen move.
    """
    n = _check_n(n)
    length = check_int("length", length, 2)
    goal_reward = check_finite("goal_reward", goal_reward)
    step_reward = check_finite("step_reward", step_reward)
    noise = check_float("noise", noise, "0 <= noise <= 1", 0.0, 1.0)
    absorb = _check_absorb(absorb)
    dtype = _check_dtype(dtype)
    goal = length
    s = np.arange(length + 1)
    left = np.maximum(s - 1, 0)
    right = np.minimum(s + 1, goal)
    succ = np.stack([np.stack([left, right], -1), np.stack([right, left], -1)], 1)  # [S, A, 2]
    prob = np.broadcast_to(np.array([1 - noise, noise]), succ.shape).copy()
    reward = np.where(succ == goal, goal_reward, step_reward).astype(float)
    terminal = s == goal
    start = np.zeros(length + 1)
    start[0] = 1.0
    mdp = {"succ": succ, "prob": prob, "reward": reward, "terminal": terminal, "start": start,
           "absorb": np.float64(absorb)}
    info = {"generator": "corridor", "length": length, "goal_reward": goal_reward,
            "step_reward": step_reward, "noise": noise, "absorb": absorb}
    return _stack([mdp] * n, dtype, info)


def exit_chain(
    n: int = 1,
    *,
    length: int = 10,
    step_reward: float = 1.0,
    absorb: float = 0.0,
    dtype: torch.dtype = torch.float32,
) -> TabularMDP:
    """A chain where episode length is the agent's choice: in cells 0..length-1,
    actions 0 and 1 both go on to the next cell and pay ``step_reward``,
    action 2 ends the episode at once and pays nothing; the last cell leads to
    the terminal state. Used to test whether a distillation objective favours
    shorter episodes.
    """
    n = _check_n(n)
    length = check_int("length", length, 2)
    step_reward = check_finite("step_reward", step_reward)
    absorb = _check_absorb(absorb)
    dtype = _check_dtype(dtype)
    end = length
    s = np.arange(length + 1)
    nxt = np.minimum(s + 1, end)
    succ = np.stack([nxt, nxt, np.full_like(s, end)], 1)[..., None]
    prob = np.ones_like(succ, dtype=float)
    reward = np.stack([np.full(length + 1, step_reward)] * 2 + [np.zeros(length + 1)], 1)[..., None]
    terminal = s == end
    start = np.zeros(length + 1)
    start[0] = 1.0
    mdp = {"succ": succ, "prob": prob, "reward": reward, "terminal": terminal, "start": start,
           "absorb": np.float64(absorb)}
    return _stack([mdp] * n, dtype, {"generator": "exit_chain", "length": length,
                                     "step_reward": step_reward, "absorb": absorb})


def bandit(n: int = 1, *, n_actions: int = 4, dtype: torch.dtype = torch.float32) -> TabularMDP:
    """One state whose every action ends the episode (reward 0): the per-state
    view of a distillation loss, with nothing downstream to trade against."""
    n = _check_n(n)
    n_actions = check_int("n_actions", n_actions, 2)
    dtype = _check_dtype(dtype)
    succ = np.ones((2, n_actions, 1), dtype=np.int64)
    mdp = {"succ": succ, "prob": np.ones((2, n_actions, 1)), "reward": np.zeros((2, n_actions, 1)),
           "terminal": np.array([False, True]), "start": np.array([1.0, 0.0]), "absorb": np.float64(0.0)}
    return _stack([mdp] * n, dtype, {"generator": "bandit", "n_actions": n_actions})


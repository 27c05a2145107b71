"""Compiled inner loops of the tabular tier (numba): the per-step work that batched tensor code pays
a dozen operator calls for.

The kernels read the same counter-based random numbers as :mod:`study.tabular.rng` (the ``lowbias32``
hash, bit for bit) and the same cumulative tables, so an episode drawn here is the episode the tensor
code draws.
"""

from __future__ import annotations

import numpy as np
from numba import njit

M32 = np.int64(0xFFFFFFFF)
GOLDEN = np.int64(0x9E3779B9)
SALT = np.int64(0x85EBCA6B)


@njit(cache=True, inline="always")
def _mul32(x: np.int64, c: np.int64) -> np.int64:
    lo = x & 0xFFFF
    hi = x >> 16
    return ((((hi * c) & M32) << 16) + lo * c) & M32


@njit(cache=True, inline="always")
def mix32(x: np.int64) -> np.int64:
    """:func:`study.tabular.rng.mix32` on one value."""
    x = x & M32
    x = x ^ (x >> 16)
    x = _mul32(x, np.int64(0x7FEB352D))
    x = x ^ (x >> 15)
    x = _mul32(x, np.int64(0x846CA68B))
    return x ^ (x >> 16)


@njit(cache=True, inline="always")
def uniform(key: np.int64, index: np.int64) -> float:
    """Draw ``index`` of stream ``key``: :func:`study.tabular.rng.draws` read one number at a time."""
    h = mix32(key ^ mix32(index * GOLDEN + SALT))
    return (np.float64(h) + 0.5) / 4294967296.0


@njit(cache=True, inline="always")
def inverse_cdf(cdf: np.ndarray, u: float) -> int:
    """:func:`study.tabular.rng.inverse_cdf` on one row: how many entries lie below ``u`` times the total."""
    target = u * np.float64(cdf[cdf.shape[0] - 1])
    k = 0
    for j in range(cdf.shape[0]):
        if np.float64(cdf[j]) < target:
            k += 1
    return min(k, cdf.shape[0] - 1)


@njit(cache=True, inline="always")
def inverse_cdf_running(probs: np.ndarray, u: float) -> int:
    """:func:`study.tabular.rng.categorical` on one row of probabilities, summed as it goes in float64."""
    total = 0.0
    for j in range(probs.shape[0]):
        total += np.float64(probs[j])
    target = u * total
    acc = 0.0
    for j in range(probs.shape[0]):
        acc += np.float64(probs[j])
        if not acc < target:
            return j
    return probs.shape[0] - 1


@njit(cache=True)
def episodes(keys: np.ndarray, rows: np.ndarray, start: np.ndarray, teacher: np.ndarray, logits: np.ndarray,
             weights: np.ndarray, table: np.ndarray, table_of: np.ndarray, absorb: np.ndarray, n_states: int,
             n_actions: int, max_steps: int, states: np.ndarray, actions: np.ndarray, rewards: np.ndarray,
             episode: np.ndarray,
             step: np.ndarray, lengths: np.ndarray, cut: np.ndarray, position: np.ndarray, visited: np.ndarray,
             visits: np.ndarray, step_row: np.ndarray) -> tuple[int, int]:
    """Step every episode to its end (terminal, absorbed, or ``max_steps``); return how many steps were
    taken and how many distinct (instance, state) rows they visited.

    Episode ``b`` belongs to instance ``rows[b]``, starts in a state drawn from ``start`` ``[N, S]`` with
    number ``-1`` of stream ``keys[b]``, and draws step ``t``'s action, successor and absorption from
    numbers ``3t``, ``3t + 1``, ``3t + 2``. The action
    comes from ``weights[b] = (teacher, student, uniform)`` on the teacher's acting probabilities
    ``teacher`` ``[N * S, A]``, the softmax of the student's ``logits`` (read only where the student's weight
    is non-zero) and the uniform policy, computed in float64 at the states visited only. ``table`` is
    :func:`study.tabular.rollout.step_table` of the distinct MDPs; instance ``i`` steps in its MDP
    ``table_of[i]`` (instances that share an MDP share its rows, which keeps them in cache). Steps are
    written packed, episode after episode.

    Each step's flat row ``instance * S + state`` is also numbered in order of first visit: ``visited``
    lists the rows, ``visits`` how often each was visited and ``step_row`` each step's number.
    ``position`` ``[N * S]`` is scratch, all ``-1`` on entry and on return.
    """
    q = np.empty(n_actions)
    total = 0
    distinct = 0
    for b in range(keys.shape[0]):
        key = keys[b]
        base = rows[b] * n_states
        mdp_base = table_of[rows[b]] * n_states
        w_teacher, w_student, w_uniform = weights[b, 0], weights[b, 1], weights[b, 2]
        s = inverse_cdf_running(start[rows[b]], uniform(key, np.int64(-1)))
        alive = True
        t = 0
        while t < max_steps:
            row = base + s
            acc = 0.0
            if w_student != 0.0:
                top = np.float64(logits[row, 0])
                for a in range(1, n_actions):
                    top = max(top, np.float64(logits[row, a]))
                norm = 0.0
                for a in range(n_actions):
                    q[a] = np.exp(np.float64(logits[row, a]) - top)
                    norm += q[a]
                for a in range(n_actions):
                    acc += w_uniform / n_actions + w_teacher * np.float64(teacher[row, a]) + w_student * q[a] / norm
                    q[a] = acc
            else:
                for a in range(n_actions):
                    acc += w_uniform / n_actions + w_teacher * np.float64(teacher[row, a])
                    q[a] = acc
            a = inverse_cdf(q, uniform(key, np.int64(3 * t)))
            out = table[(mdp_base + s) * n_actions + a]
            k = inverse_cdf(out[:, 0], uniform(key, np.int64(3 * t + 1)))
            ends = out[k, 3] != 0 or uniform(key, np.int64(3 * t + 2)) < absorb[b]
            states[total] = s
            here = position[row]
            if here < 0:
                here = distinct
                position[row] = here
                visited[here] = row
                visits[here] = 0
                distinct += 1
            visits[here] += 1
            step_row[total] = here
            actions[total] = a
            rewards[total] = out[k, 2]
            episode[total] = b
            step[total] = t
            total += 1
            t += 1
            if ends:
                alive = False
                break
            s = np.int64(out[k, 1])
        lengths[b] = t
        cut[b] = alive
    for i in range(distinct):
        position[visited[i]] = -1
    return total, distinct


@njit(cache=True, inline="always")
def combine(key: np.int64, value: np.int64) -> np.int64:
    """:func:`study.tabular.rng.combine` on one key."""
    return mix32(key ^ mix32(value * GOLDEN + SALT))


@njit(cache=True, inline="always")
def _greedy(row: np.ndarray, u: float, random_ties: bool) -> int:
    """The first maximal entry, or (``random_ties``) the ``floor(u * count)``-th of the maximal entries."""
    best = row[0]
    for a in range(1, row.shape[0]):
        if row[a] > best:
            best = row[a]
    if not random_ties:
        for a in range(row.shape[0]):
            if row[a] == best:
                return a
    count = 0
    for a in range(row.shape[0]):
        if row[a] == best:
            count += 1
    pick = min(int(u * count), count - 1)
    for a in range(row.shape[0]):
        if row[a] == best:
            if pick == 0:
                return a
            pick -= 1
    return row.shape[0] - 1


@njit(cache=True)
def q_learning(q: np.ndarray, start_keys: np.ndarray, step_keys: np.ndarray, start_cdf: np.ndarray,
               table: np.ndarray, absorb: np.ndarray, episodes: int, lr: np.float32, epsilon: float,
               discount: np.ndarray, max_steps: int, random_ties: bool, expected_fall: bool) -> None:
    """Epsilon-greedy Q-learning on each MDP in turn, ``q`` ``[N, S, A]`` updated in place.

    Episode ``e`` of MDP ``m`` starts from ``start_cdf[m]`` with number ``e`` of ``start_keys[m]``; its step
    ``t`` reads numbers ``5t..5t+4`` (``4t..4t+3`` without random ties) of stream
    ``combine(step_keys[m], e)``: explore?, random action, successor, absorption, tie. Updates are computed
    in ``q``'s precision, operation by operation, as the tensor code did; MDP ``m`` bootstraps with
    ``discount[m]``. Without ``expected_fall`` a fall into the absorbing state ends the target like a
    terminal state; with it, a step into a non-terminal state bootstraps whether or not the episode fell
    there (give ``discount = gamma (1 - absorb)``: the fall's expectation instead of its sample, so that the
    targets are those of the MDP's true values; the episode still ends where it fell).
    """
    n, s_count, a_count = q.shape
    per_step = 5 if random_ties else 4
    for m in range(n):
        for e in range(episodes):
            s = inverse_cdf(start_cdf[m], uniform(start_keys[m], np.int64(e)))
            key = combine(step_keys[m], np.int64(e))
            for t in range(max_steps):
                i = np.int64(t * per_step)
                row = q[m, s]
                tie = uniform(key, i + 4) if random_ties else 0.0
                greedy = _greedy(row, tie, random_ties)
                rand_a = min(int(uniform(key, i + 1) * a_count), a_count - 1)
                a = rand_a if uniform(key, i) < epsilon else greedy
                out = table[(m * s_count + s) * a_count + a]
                k = inverse_cdf(out[:, 0], uniform(key, i + 2))
                s2 = np.int64(out[k, 1])
                goes_on = out[k, 3] == 0 and uniform(key, i + 3) >= absorb[m]
                nxt = q[m, s2, 0]
                for b in range(1, a_count):
                    nxt = max(nxt, q[m, s2, b])
                if out[k, 3] != 0 or not (goes_on or expected_fall):
                    nxt = nxt - nxt  # nothing to bootstrap from (zero, in q's precision)
                target = out[k, 2] + discount[m] * nxt
                old = q[m, s, a]
                q[m, s, a] = old + lr * (target - old)
                if not goes_on:
                    break
                s = s2

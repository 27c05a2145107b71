"""The references' convergence claims, checked on toy MDPs.

Each check measures; the verdict follows from the numbers and a threshold
stated in the evidence. A claim that does not hold is reported as such.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

import variants as V
from study.tabular import exact, paper_toy
from study.tabular import generators as gen
from study.tabular import teachers as T
from study.tabular.engine import Curves, Plan, TrainConfig, distill
from study.tabular.students import Student
from variants.policy import softmax

CZ = "Czarnecki et al. 2019"
# "about 3x" (Fig. 3): 3 within a factor 1.5 either way
ABOUT_3X = (2.0, 4.5)
# "stays close" (Fig. 4): expected entropy regularised within this much normalised return (uniform 0, teacher
# 1) of on-policy distill at every action count
CLOSE = 0.1
FIG4_ACTIONS = (4, 40, 400, 4000)
F64 = torch.float64


@dataclass
class ClaimResult:
    """A verdict with the numbers behind it: ``yes`` (every part of the claim holds), ``partly`` (some part
    does not), ``no``, or ``not evaluated`` (the run did not cover what the claim is about, e.g. ``--quick``
    without the largest action counts)."""

    key: str
    claim: str
    reference: str
    verdict: str
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def holds(self) -> bool:
        """Every part of the claim holds."""
        return self.verdict == "yes"

    @property
    def failed(self) -> bool:
        """Some part of the claim was checked and does not hold ("no" or "partly")."""
        return self.verdict in ("no", "partly")

    def to_dict(self) -> dict[str, Any]:
        """The verdict as JSON values, for the claims report file."""
        return {"key": self.key, "claim": self.claim, "reference": self.reference, "verdict": self.verdict,
                "holds": self.holds, "summary": self.summary, "evidence": self.evidence,
                "seconds": round(self.seconds, 2)}


@dataclass(frozen=True)
class Claim:
    """One claim of the references: its key, statement and source, and the check that tests it
    (``quick``: a smaller, faster version)."""

    key: str
    claim: str
    reference: str
    check: Callable[[bool], tuple[str, str, dict[str, Any]]]


VERDICTS = ("yes", "partly", "no", "not evaluated")


def _yes_no(holds: bool) -> str:
    return "yes" if holds else "no"


def _parts(*held: bool) -> str:
    """``yes`` when every part of a claim holds, ``no`` when none does, ``partly`` between."""
    return "yes" if all(held) else "no" if not any(held) else "partly"


def _asymmetry(variant: V.Variant, mdp, teacher_out: torch.Tensor, theta: torch.Tensor) -> float:
    """||J - J^T|| / ||J|| of the expected update field's Jacobian at theta."""
    jac = torch.func.jacrev(lambda p: exact.update_field(variant, mdp, teacher_out, lambda x: x, p))(theta)
    size = theta.numel()
    jac = jac.reshape(size, size)
    return float((jac - jac.T).norm() / jac.norm())


def _random_points(quick: bool) -> list[tuple]:
    """Small Garnets with random teachers and random student parameters."""
    n = 3 if quick else 10
    mdp = gen.garnet(n, n_states=5, n_actions=3, branching=2, absorb=0.2, n_terminal=1, seed=7, dtype=F64)
    g = torch.Generator().manual_seed(7)
    points = []
    for i in range(n):
        one = mdp.select(torch.tensor([i]))
        teacher = torch.randn(1, 5, 3, generator=g, dtype=F64)
        theta = torch.randn(1, 5, 3, generator=g, dtype=F64)
        points.append((one, teacher, theta))
    return points


def check_theorem1(quick: bool) -> tuple[str, str, dict]:
    """On-policy distill's update field is not a gradient: its Jacobian is asymmetric at random points."""
    v = V.variant("on_policy_distill")
    ratios = [_asymmetry(v, m, t, th) for m, t, th in _random_points(quick)]
    threshold = 1e-3
    holds = min(ratios) > threshold
    ev = {"asymmetry_min": min(ratios), "asymmetry_median": float(np.median(ratios)),
          "points": len(ratios), "threshold": f"every ||J-J^T||/||J|| > {threshold}"}
    return _yes_no(holds), f"||J-J^T||/||J|| min {min(ratios):.3g} over {len(ratios)} random MDPs/points", ev


def check_theorem2(quick: bool) -> tuple[str, str, dict]:
    """N-distill's and expected entropy regularised's update fields are gradients: symmetric Jacobians."""
    points = _random_points(quick)
    ev: dict[str, Any] = {}
    for name in ("n_distill", "expected_entropy_regularised"):
        v = V.variant(name)
        ev[f"{name}_asymmetry_max"] = max(_asymmetry(v, m, t, th) for m, t, th in points)
    threshold = 1e-8
    holds = all(x < threshold for x in ev.values())
    ev["points"] = len(points)
    ev["threshold"] = f"every ||J-J^T||/||J|| < {threshold} (float64)"
    text = ", ".join(f"{k.replace('_asymmetry_max', '')} {x:.1e}" for k, x in ev.items() if "asym" in k)
    return _yes_no(holds), f"max ||J-J^T||/||J||: {text}", ev


def _final_probs(curves: Curves) -> torch.Tensor:
    return softmax(curves.final_logits)


def check_proposition1(quick: bool) -> tuple[str, str, dict]:
    """A tabular on-policy distill student converges to the teacher on every state the teacher reaches."""
    n, size, iters = (3, 5, 2000) if quick else (10, 8, 5000)
    mdp = gen.gridworld(n, size=size, seed=11, dtype=F64)
    teacher = T.value_iteration(mdp)
    v = V.variant("on_policy_distill", tau=1.0)
    pi_t = T.teacher_policy(teacher, 1.0)
    reach = mdp.occupancy(pi_t) > 1e-12
    per_state, mean_kl = [], None
    for budget in (iters // 2, iters):  # exact mode is deterministic: the longer run extends the shorter one
        curves = distill(mdp, teacher, [v], Plan.product(n, 1, [0]),
                         TrainConfig(mode="exact", iterations=budget, lr=1.0, eval_every=budget))
        per_state.append(V.kl(pi_t.log(), torch.log(_final_probs(curves))))
        mean_kl = curves.values["kl_teacher"]
    half, end = per_state
    converged = end < 1e-9
    still_falling = bool(((end < half) | converged)[reach].all())
    relative = float((mean_kl[-1] / mean_kl[0]).max())
    threshold = 1e-2
    holds = still_falling and relative < threshold
    ev = {"mdps": n, "grid": size, "iterations": iters, "reachable_states": int(reach.sum()),
          "states_converged": int((converged & reach).sum()), "falling_on_every_other_state": still_falling,
          "kl_teacher_start": float(mean_kl[0].mean()), "kl_teacher_end": float(mean_kl[-1].mean()),
          "worst_state_kl_end": float(end[reach].max()),
          "threshold": f"on every teacher-reachable state KL is below 1e-9 or still falling between {iters // 2} "
                       f"and {iters} iterations, and the teacher-weighted KL ends below {threshold} of its start "
                       "in every grid (a state learns in proportion to its visits, so rare states are slow)"}
    return _yes_no(holds), (f"KL(pi_T||pi_theta) under the teacher's states {float(mean_kl[0].mean()):.3f} -> "
                   f"{float(mean_kl[-1].mean()):.1e}; falling or converged on all {int(reach.sum())} reachable "
                   f"states: {still_falling}; slowest state still at {float(end[reach].max()):.1e}"), ev


def check_argmax(quick: bool) -> tuple[str, str, dict]:
    """On a bandit, (expected) entropy regularised head for the teacher's argmax; on-policy distill for pi_T."""
    iters = 400 if quick else 2000
    mdp = gen.bandit(1, n_actions=4, dtype=F64)
    teacher = torch.tensor([[[1.0, 0.5, 0.0, -0.5], [0.0] * 4]], dtype=F64)
    names = ["expected_entropy_regularised", "entropy_regularised", "on_policy_distill"]
    curves = distill(mdp, teacher, [V.variant(k, tau=1.0, name=k) for k in names], Plan.product(1, 3, [0]),
                     TrainConfig(mode="exact", iterations=iters, lr=1.0, eval_every=iters))
    best = int(teacher[0, 0].argmax())
    probs = _final_probs(curves)[:, 0, best]
    t_max = float(torch.softmax(teacher[0, 0], -1)[best])
    ev: dict[str, Any] = {"teacher_probs": [round(x, 3) for x in torch.softmax(teacher[0, 0], -1).tolist()]}
    for i, k in enumerate(names):
        ev[f"{k}_argmax_prob"] = float(probs[i])
        ev[f"{k}_kl_end"] = float(curves.final("kl_teacher")[i])
    holds = (ev["expected_entropy_regularised_argmax_prob"] > 0.95 and ev["entropy_regularised_argmax_prob"] > 0.95
             and abs(ev["on_policy_distill_argmax_prob"] - t_max) < 0.02)
    ev["threshold"] = "ER and expected ER put > 0.95 on the teacher's argmax; on-policy distill matches pi_T"
    return _yes_no(holds), (f"pi_theta(argmax): expected ER {ev['expected_entropy_regularised_argmax_prob']:.3f}, "
                   f"ER {ev['entropy_regularised_argmax_prob']:.3f}, on-policy distill "
                   f"{ev['on_policy_distill_argmax_prob']:.3f} vs pi_T {t_max:.3f}"), ev


def check_shorter_episodes(quick: bool) -> tuple[str, str, dict]:
    """On an exit chain without +R, (expected) entropy regularised students end episodes sooner than the teacher."""
    iters = 500 if quick else 3000
    length = 10
    mdp = gen.exit_chain(1, length=length, step_reward=1.0, dtype=F64)
    q = T.value_iteration(mdp)
    tau = 2.0
    names = ["entropy_regularised", "expected_entropy_regularised", "expected_entropy_regularised_r",
             "on_policy_distill"]
    curves = distill(mdp, q, [V.variant(k, tau=tau, name=k) for k in names], Plan.product(1, len(names), [0]),
                     TrainConfig(mode="exact", iterations=iters, lr=0.5, eval_every=iters))
    lengths = mdp.select(torch.zeros(len(names), dtype=torch.long)).occupancy(_final_probs(curves)).sum(-1)
    ev: dict[str, Any] = {"chain_length": length, "teacher_tau": tau,
                          "teacher_episode_length": float(mdp.occupancy(T.teacher_policy(q, tau)).sum())}
    for i, k in enumerate(names):
        ev[f"{k}_episode_length"] = float(lengths[i])
    teacher_len = ev["teacher_episode_length"]
    holds = all(ev[f"{k}_episode_length"] < teacher_len - 1.0 for k in names[:2])
    ev["threshold"] = "ER's and expected ER's episodes are at least one step shorter than the teacher's"
    return _yes_no(holds), (
        f"mean episode length: teacher {teacher_len:.2f}, ER {ev['entropy_regularised_episode_length']:.2f}, "
        f"expected ER {ev['expected_entropy_regularised_episode_length']:.2f}, with +R "
        f"{ev['expected_entropy_regularised_r_episode_length']:.2f}, on-policy distill "
        f"{ev['on_policy_distill_episode_length']:.2f}"), ev


TOY_TEACHER = [[0.0, 0.0], [3.0, 0.0], [0.0, 3.0], [0.0, 0.0]]


def toy_trajectory(name: str, teacher_out: torch.Tensor, iters: int, lr: float = 0.2,
                   start: tuple[float, float] = (0.0, 0.0)) -> torch.Tensor:
    """Parameters (theta_0, theta_1) of the Fig. 2 toy student along exact updates, ``[iters + 1, 2]``."""
    mdp = gen.two_step_toy(F64)
    student = Student("linear", pin_last=True)
    v = V.variant(name)
    theta = torch.tensor([[[start[0]], [start[1]]]], dtype=F64, requires_grad=True)
    path = [theta.detach().flatten().clone()]
    for it in range(iters):
        s = exact.expected_surrogate(v, mdp, teacher_out, student.logits(theta, mdp), iteration=it).sum()
        (grad,) = torch.autograd.grad(s, theta)
        with torch.no_grad():
            theta -= lr * grad
        path.append(theta.detach().flatten().clone())
    return torch.stack(path)


def _late_motion(path: torch.Tensor, window: int) -> tuple[float, int]:
    """Amplitude and direction reversals of theta_0 over the last ``window`` steps."""
    late = path[-window:]
    amp = float((late.max(0).values - late.min(0).values).max())
    d = torch.diff(late[:, 0])
    d = d[d.abs() > 1e-12]
    reversals = int((torch.sign(d[1:]) != torch.sign(d[:-1])).sum()) if len(d) > 1 else 0
    return amp, reversals


def _toy_jacobian_eigenvalues(name: str, teacher_out: torch.Tensor, theta: torch.Tensor) -> list[complex]:
    """Eigenvalues of the expected update's Jacobian at ``theta`` ([theta_0, theta_1]).

    The iteration theta <- theta - lr u(theta) settles at a fixed point whose
    eigenvalues all have positive real part (for small lr), and circles
    around it when they are complex.
    """
    mdp = gen.two_step_toy(F64)
    student = Student("linear", pin_last=True)
    v = V.variant(name)
    jac = torch.func.jacrev(
        lambda p: exact.update_field(v, mdp, teacher_out, lambda x: student.logits(x, mdp), p)
    )(theta.view(1, 2, 1)).reshape(2, 2)
    return [complex(z) for z in torch.linalg.eigvals(jac).tolist()]


def check_fig2_toy(quick: bool) -> tuple[str, str, dict]:
    """On the Fig. 2 toy, on-policy distill + R oscillates while N-distill + R converges."""
    iters = 1500 if quick else 6000
    window = iters // 3
    teacher = torch.tensor([TOY_TEACHER], dtype=F64)
    ev: dict[str, Any] = {"teacher_logits": TOY_TEACHER, "iterations": iters, "lr": 0.2}
    for name in ("on_policy_distill_r", "n_distill_r"):
        path = toy_trajectory(name, teacher, iters)
        amp, rev = _late_motion(path, window)
        eig = _toy_jacobian_eigenvalues(name, teacher, path[-1])
        ev[f"{name}_final_theta"] = [round(x, 4) for x in path[-1].tolist()]
        ev[f"{name}_late_amplitude"] = amp
        ev[f"{name}_late_reversals"] = rev
        ev[f"{name}_jacobian_eigenvalues"] = [[round(z.real, 6), round(z.imag, 6)] for z in eig]
    # how many teachers on a grid make on-policy distill + R oscillate at all
    grid = [-3.0, 3.0] if quick else [-3.0, 0.0, 3.0]
    oscillating = 0
    unstable = 0
    scan_iters = 400 if quick else 1000
    for a, b, c in itertools.product(grid, repeat=3):
        t = torch.tensor([[[a, 0.0], [b, 0.0], [c, 0.0], [0.0, 0.0]]], dtype=F64)
        path = toy_trajectory("on_policy_distill_r", t, scan_iters, lr=0.5)
        amp, rev = _late_motion(path, scan_iters // 3)
        oscillating += int(amp > 1e-2 and rev >= 2)
        unstable += int(min(z.real for z in _toy_jacobian_eigenvalues("on_policy_distill_r", t, path[-1])) <= 0)
    ev["teachers_scanned"] = len(grid) ** 3
    ev["teachers_with_oscillation"] = oscillating
    ev["teachers_with_unstable_end_point"] = unstable
    osc = ev["on_policy_distill_r_late_amplitude"] > 1e-2 and ev["on_policy_distill_r_late_reversals"] >= 2
    conv = ev["n_distill_r_late_amplitude"] < 1e-4
    holds = osc and conv
    ev["threshold"] = ("oscillates: late-window amplitude > 1e-2 with >= 2 reversals; "
                       "converges: late-window amplitude < 1e-4")
    re_min = min(z[0] for z in ev["on_policy_distill_r_jacobian_eigenvalues"])
    return _yes_no(holds), (f"on-policy distill + R {'oscillates' if osc else 'settles'} (late amplitude "
                   f"{ev['on_policy_distill_r_late_amplitude']:.1e}; update Jacobian eigenvalues there have real "
                   f"parts >= {re_min:.3f}, a stable point); N-distill + R "
                   f"{'converges' if conv else 'moves'}; oscillating teachers {oscillating}/{len(grid) ** 3}"), ev


def check_fig2_paper(quick: bool) -> tuple[str, str, dict]:
    """The paper's Fig. 2 toy (sigmoid student, theta_1 shared by sL and sR, l(theta|sR) = -4 pi(R|sR)):
    plain on-policy distill fails to converge while N-distill converges, under every choice of the details
    the description leaves open (the sL and s0 losses, the step size)."""
    iters = 5000 if quick else 20000
    choices = paper_toy.CHOICES[::3] if quick else paper_toy.CHOICES
    rows = []
    for choice in choices:
        ends = {name: paper_toy.behaviour(paper_toy.path(name, choice, iters)) for name in paper_toy.RECIPES}
        rows.append({"choice": choice.label(), **{f"{name}_{k}": getattr(b, k) for name, b in ends.items()
                                                  for k in ("kind", "theta", "policy")}})
    fails = [r["on_policy_distill_kind"] != "converges" for r in rows]
    settles = [r["n_distill_kind"] == "converges" for r in rows]
    both = sum(f and c for f, c in zip(fails, settles, strict=True))
    off_diagonal = max(paper_toy.triangular(c) for c in choices)
    ev: dict[str, Any] = {
        "iterations": iters, "choices": rows, "on_policy_fails": sum(fails), "n_distill_converges": sum(settles),
        "both": both, "on_policy_max_abs_du0_dtheta1": off_diagonal,
        "threshold": f"converges: the parameters move less than {paper_toy.STILL} over the last third of the "
                     "path; the claim holds under a choice when on-policy distill does not converge and N-distill "
                     "does; yes under every choice, partly under some, no under none"}
    verdict = "yes" if both == len(rows) else "partly" if both else "no"
    return verdict, (f"on-policy distill fails to converge under {sum(fails)} of {len(rows)} choices of the open "
                     f"details (its parameters run off: a loss with no minimiser), N-distill converges under "
                     f"{sum(settles)}, both at once under {both}; theta_0's on-policy update ignores theta_1 "
                     f"(max |du_0/dtheta_1| = {off_diagonal:.0e}), so on-policy distill cannot cycle here"), ev


def toy_field(name: str, teacher_out: torch.Tensor, xlim: tuple[float, float], ylim: tuple[float, float],
              n: int = 21) -> tuple[np.ndarray, ...]:
    """The direction exact updates move (theta_0, theta_1) of the Fig. 2 toy student, on an n x n grid:
    ``(X, Y, U, V)`` with ``(U, V) = -u(theta)``."""
    mdp = gen.two_step_toy(F64)
    student = Student("linear", pin_last=True)
    v = V.variant(name)
    xs, ys = np.linspace(*xlim, n), np.linspace(*ylim, n)
    grid_x, grid_y = np.meshgrid(xs, ys)
    u = np.zeros((2, n, n))
    for i, j in itertools.product(range(n), range(n)):
        theta = torch.tensor([grid_x[i, j], grid_y[i, j]], dtype=F64).view(1, 2, 1)
        field = exact.update_field(v, mdp, teacher_out, lambda x: student.logits(x, mdp), theta)
        u[:, i, j] = -field.flatten().numpy()
    return grid_x, grid_y, u[0], u[1]


def toy_portrait_data(quick: bool = False) -> tuple[dict[str, tuple[np.ndarray, ...]], dict[str, np.ndarray]]:
    """What a Fig. 2 style phase portrait shows, for the teacher the claim check uses: the update fields
    ``(X, Y, U, V)`` of on-policy distill + R and N-distill + R over the region their exact-update paths from
    (0, 0) cover, and those paths (``[iterations + 1, 2]``). Drawing is the command line's job."""
    teacher = torch.tensor([TOY_TEACHER], dtype=F64)
    iters = 1500 if quick else 6000
    names = ("on_policy_distill_r", "n_distill_r")
    paths = {name: toy_trajectory(name, teacher, iters).numpy() for name in names}
    every = np.concatenate(list(paths.values()))
    lo, hi = every.min(0) - 1.5, every.max(0) + 1.5
    fields = {name: toy_field(name, teacher, (lo[0], hi[0]), (lo[1], hi[1]), n=11 if quick else 21)
              for name in names}
    return fields, paths


def _iterations_to_reach(curves: Curves, frac: float) -> torch.Tensor:
    """First evaluation step where the normalised return reaches ``frac`` (inf if never)."""
    norm = curves.normalised_return()
    steps = torch.tensor(curves.steps, dtype=F64).unsqueeze(-1).expand_as(norm)
    reached = norm >= frac
    first = torch.where(reached, steps, torch.full_like(steps, math.inf)).min(0).values
    return first


def _bootstrap_ratio(num: np.ndarray, den: np.ndarray, seed: int = 0, reps: int = 2000) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(num), size=(reps, len(num)))
    ratios = num[idx].mean(1) / den[idx].mean(1)
    return float(np.percentile(ratios, 2.5)), float(np.percentile(ratios, 97.5))


def check_student_driven_faster(quick: bool) -> tuple[str, str, dict]:
    """On gridworlds, student-driven distillation reaches 90% of the teacher's return in fewer iterations
    than teacher-driven (the paper: about 3x fewer)."""
    n, size, iters, every = (6, 8, 300, 10) if quick else (20, 12, 1500, 25)
    mdp = gen.gridworld(n, size=size, seed=5)
    teacher = T.value_iteration(mdp)
    tau = 0.01
    variants = [V.variant("teacher_distill", tau=tau), V.variant("on_policy_distill", tau=tau)]
    plan = Plan.product(n, 2, [0])
    curves = distill(mdp, teacher, variants, plan,
                     TrainConfig(mode="sampled", iterations=iters, lr=0.1, eval_every=every, max_steps=400))
    frac = 0.9
    first = _iterations_to_reach(curves, frac)
    t_steps = first[plan.variant_index == 0].numpy()
    s_steps = first[plan.variant_index == 1].numpy()
    both = np.isfinite(t_steps) & np.isfinite(s_steps)
    ev: dict[str, Any] = {"mdps": n, "grid": size, "iterations": iters, "teacher_tau": tau, "target": frac,
                          "teacher_driven_reached": int(np.isfinite(t_steps).sum()),
                          "student_driven_reached": int(np.isfinite(s_steps).sum())}
    # the ratio uses MDPs where both got there; a student-driven run that never did counts against the claim
    t_c = t_steps[both]
    s_c = np.maximum(s_steps[both], every)  # reached at the first evaluation: at most one interval
    ratio = float(t_c.mean() / s_c.mean()) if both.any() else float("nan")
    lo, hi = _bootstrap_ratio(t_c, s_c) if both.sum() > 1 else (float("nan"), float("nan"))
    ev.update({"ratio_teacher_over_student": ratio, "ratio_ci95": [lo, hi], "paper_ratio": "about 3",
               "mdps_both_reached": int(both.sum())})
    faster = bool(lo > 1.0 and np.isfinite(s_steps).all() and both.sum() >= n / 2)
    about = bool(hi >= ABOUT_3X[0] and lo <= ABOUT_3X[1])  # the interval meets "about 3x"
    ev.update({"faster": faster, "about_3x": about, "about_3x_range": list(ABOUT_3X)})
    ev["threshold"] = ("faster: 95% bootstrap CI of (teacher-driven / student-driven iterations) above 1 over "
                       "the MDPs where both reached the target, and student-driven reaches it on every MDP; "
                       f"about 3x: that interval meets [{ABOUT_3X[0]:g}, {ABOUT_3X[1]:g}] (3 within a factor 1.5); "
                       "yes needs both, partly faster alone")
    return _parts(faster, faster and about), (
        f"iterations to {frac:.0%} of the teacher's return: teacher/student = {ratio:.2f} "
        f"[{lo:.2f}, {hi:.2f}] over {int(both.sum())} of {n} grids (paper: about 3)"), ev


def check_action_scaling(quick: bool) -> tuple[str, str, dict]:
    """As actions grow, entropy regularised loses return; expected entropy regularised stays near on-policy
    distill."""
    counts = [4, 40] if quick else list(FIG4_ACTIONS)
    n, size, iters = (4, 5, 150) if quick else (8, 6, 400)
    names = ["entropy_regularised", "expected_entropy_regularised", "on_policy_distill"]
    ev: dict[str, Any] = {"mdps": n, "grid": size, "iterations": iters, "actions": counts,
                          "optimiser": "adam, lr 0.05", "teacher_tau": 0.1}
    finals: dict[str, list[float]] = {k: [] for k in names}
    for a in counts:
        mdp = gen.gridworld(n, size=size, n_actions=a, seed=9)
        teacher = T.value_iteration(mdp)
        variants = [V.variant(k, tau=0.1) for k in names]
        curves = distill(mdp, teacher, variants, Plan.product(n, len(names), [0]),
                         TrainConfig(mode="sampled", iterations=iters, lr=0.05, optimizer="adam",
                                     eval_every=iters, max_steps=200))
        norm = curves.normalised_return()[-1]
        for vi, k in enumerate(names):
            finals[k].append(float(norm[curves.plan.variant_index == vi].mean()))
    for k in names:
        ev[f"{k}_normalised_return"] = [round(x, 3) for x in finals[k]]
    er, eer, opd = (finals[k] for k in names)
    degrades = er[-1] < er[0] - 0.5
    gaps = [abs(a - b) for a, b in zip(eer, opd, strict=True)]
    close = max(gaps) <= CLOSE
    ev.update({"entropy_regularised_degrades": degrades, "expected_stays_close": close,
               "expected_gap_to_on_policy": [round(g, 3) for g in gaps],
               "entropy_regularised_drop": er[0] - er[-1], "expected_entropy_regularised_drop": eer[0] - eer[-1]})
    ev["threshold"] = ("degrades: at the most actions entropy regularised has lost > 0.5 of normalised return "
                       f"(uniform 0, teacher 1); stays close: expected entropy regularised within {CLOSE:g} of "
                       "on-policy distill at every action count; yes needs both, partly one; with fewer action "
                       f"counts than {FIG4_ACTIONS} (--quick) the claim is not evaluated")
    verdict = _parts(degrades, close) if counts == list(FIG4_ACTIONS) else "not evaluated"
    return verdict, (f"normalised return at {counts} actions: ER {ev['entropy_regularised_normalised_return']}, "
                     f"expected ER {ev['expected_entropy_regularised_normalised_return']}, on-policy distill "
                     f"{ev['on_policy_distill_normalised_return']}"), ev


CLAIMS: list[Claim] = [
    Claim("theorem1_on_policy_not_gradient", "On-policy distill's update field has an asymmetric Jacobian",
          f"{CZ}, Theorem 1", check_theorem1),
    Claim("theorem2_symmetric", "N-distill and expected entropy regularised have symmetric Jacobians",
          f"{CZ}, Theorem 2", check_theorem2),
    Claim("proposition1_tabular_converges",
          "A tabular student under on-policy distill converges to the teacher on teacher-reachable states",
          f"{CZ}, Proposition 1", check_proposition1),
    Claim("entropy_regularised_argmax",
          "Entropy regularised and expected entropy regularised head for the teacher's argmax, not pi_T",
          CZ, check_argmax),
    Claim("entropy_regularised_shorter_episodes",
          "Without +R, (expected) entropy regularised favours shorter episodes", CZ,
          check_shorter_episodes),
    Claim("fig2_toy", "On our Fig. 2 toy (cross-entropy in every state, + R), on-policy distill + R oscillates "
          "and N-distill + R converges", f"{CZ}, Fig. 2", check_fig2_toy),
    Claim("fig2_paper_toy", "On the paper's Fig. 2 toy (sigmoid student, one parameter shared by sL and sR, "
          "l(sR) = -4 pi(R|sR)), on-policy distill fails to converge and N-distill converges",
          f"{CZ}, Fig. 2", check_fig2_paper),
    Claim("fig3_student_driven_faster",
          "Student-driven distillation reaches the teacher's return faster than teacher-driven (about 3x)",
          f"{CZ}, Fig. 3", check_student_driven_faster),
    Claim("fig4_action_scaling",
          "Entropy regularised degrades as actions grow; expected entropy regularised stays close to on-policy "
          "distill",
          f"{CZ}, Fig. 4", check_action_scaling),
]


def run_claims(quick: bool = False, only: list[str] | None = None,
               on_done: Callable[[ClaimResult], None] | None = None) -> list[ClaimResult]:
    """Run the checks (all, or those named in ``only``) and return their verdicts."""
    import time

    results = []
    for claim in CLAIMS:
        if only and claim.key not in only:
            continue
        start = time.perf_counter()
        verdict, summary, evidence = claim.check(quick)
        result = ClaimResult(claim.key, claim.claim, claim.reference, verdict, summary, evidence,
                             time.perf_counter() - start)
        results.append(result)
        if on_done is not None:
            on_done(result)
    return results

"""Periodic evaluation: whole episodes played by the student.

It records the student's unclipped score (the runner normalises it between a random policy and the
teacher under the same protocol), its argmax agreement with the teacher and KL(pi_T || pi_theta) on the
states the student itself visits, which is where its imitation matters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from study.network.envs import EnvSpec
from study.network.rl.common import act_greedy, evaluate
from study.network.teacher import Teacher
from study.spec import LoopParams
from variants import Variant
from variants.policy import kl, student_log_probs, teacher_log_probs


@dataclass
class Evaluation:
    """One evaluation of a student on one game."""

    score: float  # mean unclipped episode score
    agreement: float  # share of visited states where the student's argmax is one of the teacher's
    kl: float  # mean KL(pi_T || pi_theta) over visited states, pi_T at the variant's temperature


def evaluation_seed(seed: int, iteration: int, game: int) -> int:
    """The episodes' seed for game number ``game`` at ``iteration``: fresh episodes every evaluation."""
    return seed + 104_729 * (iteration + 1) + game


@torch.no_grad()
def evaluate_student(student: torch.nn.Module, teacher: Teacher, variant: Variant, spec: EnvSpec, cfg: LoopParams,
                     seed: int) -> Evaluation:
    """``cfg.eval_episodes`` whole episodes played by the student (argmax with ``cfg.eval_epsilon``) on up
    to ``cfg.num_envs`` envs: unclipped score, argmax agreement with the teacher and KL(pi_T || pi_theta)
    on the states it visits."""
    rng = np.random.default_rng(seed)
    totals = {"agree": 0.0, "kl": 0.0, "states": 0}

    def on_states(obs: Tensor, counted: Tensor) -> None:
        s_out, t_out = student(obs), teacher.outputs(obs)
        counted = counted.to(obs.device)
        best_t = t_out == t_out.max(-1, keepdim=True).values
        totals["agree"] += float(best_t.gather(1, s_out.argmax(-1, keepdim=True)).squeeze(1)[counted].sum())
        totals["kl"] += float(kl(teacher_log_probs(t_out, variant.tau), student_log_probs(s_out))[counted].sum())
        totals["states"] += int(counted.sum())

    def policy(obs: Tensor) -> np.ndarray:
        return act_greedy(student(obs), cfg.eval_epsilon, rng)

    device = next(student.parameters()).device
    scores = evaluate(policy, spec, cfg.eval_episodes, seed, device, cfg.num_envs, on_states)
    states = max(totals["states"], 1)
    return Evaluation(float(scores.mean()), totals["agree"] / states, totals["kl"] / states)

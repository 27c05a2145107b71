"""Exact evaluation metrics of tabular students against their teacher."""

from __future__ import annotations

import torch
from torch import Tensor

from study.tabular.mdp import TabularMDP
from variants.policy import kl, log_softmax

METRICS = ("kl_student", "kl_teacher", "kl_uniform", "return", "agreement")
# (instance, state, action, successor) entries evaluated at once: the exact solves' temporaries grow with
# them, which at thousands of actions would otherwise be several GiB per evaluation
CHUNK_ENTRIES = 1 << 24


def _weighted(per_state: Tensor, weights: Tensor) -> Tensor:
    return (weights * per_state).sum(-1) / weights.sum(-1).clamp_min(1e-300)


def evaluate_students(
    mdp: TabularMDP,
    teacher_logp: Tensor,
    teacher_out: Tensor,
    student_logits: Tensor,
    teacher_occupancy: Tensor,
) -> dict[str, Tensor]:
    """Per-instance metrics ``[N]``.

    kl_student / kl_teacher / kl_uniform: KL(pi_T || pi_theta) averaged over
    the student's, the teacher's and the uniform (non-terminal) state
    distribution; return: the student's exact expected return; agreement: the
    teacher-weighted share of states where the student's argmax is one of the
    teacher's best actions. Instances are evaluated a chunk at a time (each on its own, so the chunking
    does not change a number).
    """
    size = max(1, CHUNK_ENTRIES // mdp.succ[0].numel())
    if mdp.n_mdps > size:
        parts = [evaluate_students(mdp.rows(i, i + size), teacher_logp[i:i + size], teacher_out[i:i + size],
                                   student_logits[i:i + size], teacher_occupancy[i:i + size])
                 for i in range(0, mdp.n_mdps, size)]
        return {name: torch.cat([p[name] for p in parts]) for name in METRICS}
    student_logp = log_softmax(student_logits)
    policy = student_logp.exp()
    per_state = kl(teacher_logp, student_logp)
    d_student, ret = mdp.occupancy_and_return(policy)
    # the student's argmax agrees when it is one of the teacher's best actions (ties are common)
    best = teacher_out.max(-1, keepdim=True).values
    agree = (teacher_out.gather(-1, student_logits.argmax(-1, keepdim=True)) >= best).squeeze(-1).to(policy.dtype)
    return {
        "kl_student": _weighted(per_state, d_student),
        "kl_teacher": _weighted(per_state, teacher_occupancy),
        "kl_uniform": _weighted(per_state, mdp.uniform_states()),
        "return": ret,
        "agreement": _weighted(agree, teacher_occupancy),
    }

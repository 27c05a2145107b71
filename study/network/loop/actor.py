"""Acting: one game's environments played under the variant's control policy.

The control policy is a mixture of teacher, student and uniform on the variant's schedule
(``variants.acting.control_probs``); the teacher is queried in batches without gradients, and the
actions are drawn on the CPU from the loop's generator, so a run's numbers do not depend on the device.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

from study.network.envs import EnvSpec, VecEnv
from study.network.loop.rollout import Rollout
from study.network.teacher import Teacher
from variants import Variant
from variants.acting import control_probs

FIELDS = ("obs", "out", "act", "rew", "done", "v")  # what each step records, per env group (see ``Rollout``)


def env_groups(spec: EnvSpec, num_envs: int, seed: int) -> list[VecEnv]:
    """The ``num_envs`` environments (env ``i`` seeded ``seed + i``) as groups that step in turn: Atari in
    two, so that one group's emulators run (in ale-py's thread) while the networks act for the other;
    MinAtar, whose steps hold the interpreter, in one."""
    bounds = [0, num_envs // 2, num_envs] if spec.tier == "atari" and num_envs >= 2 else [0, num_envs]
    return [VecEnv(spec, hi - lo, seed + lo) for lo, hi in itertools.pairwise(bounds)]


class Actor:
    """Plays one game's ``num_envs`` environments (in ``env_groups``) under the variant's control policy
    and hands back each rollout. It keeps only what acting needs between rollouts: the envs and their
    current observations; the student it may act with is only read, never updated here."""

    def __init__(self, spec: EnvSpec, teacher: Teacher, student: torch.nn.Module, variant: Variant, *,
                 num_envs: int, seed: int, device: torch.device, generator: torch.Generator) -> None:
        self.spec, self.teacher, self.student, self.variant = spec, teacher, student, variant
        self.device, self.generator = device, generator
        self.envs = env_groups(spec, num_envs, seed)
        self.obs = [torch.as_tensor(env.reset(), device=device) for env in self.envs]

    @property
    def obs_shape(self) -> tuple[int, ...]:
        """One observation's shape."""
        return self.envs[0].obs_shape

    @property
    def n_actions(self) -> int:
        """The game's number of actions."""
        return self.envs[0].n_actions

    def collect(self, iteration: int, steps: int) -> Rollout:
        """``steps`` steps of every env under the control policy of ``iteration``. While one group's envs
        step, the actions of the others are being chosen."""
        needs_v = self.variant.reward == "teacher_v"
        student_acts = self.variant.control.weights(iteration)[1] > 0
        bufs: list[dict[str, list[Tensor]]] = [{k: [] for k in FIELDS} for _ in self.envs]
        for k in range(len(self.envs)):
            self._act(k, bufs[k], iteration, student_acts, needs_v)
        for t in range(steps):
            for k, env in enumerate(self.envs):
                nxt, reward, terminated, truncated = env.recv()
                bufs[k]["rew"].append(torch.as_tensor(reward, dtype=torch.float32, device=self.device))
                bufs[k]["done"].append(torch.as_tensor(terminated | truncated))
                self.obs[k] = torch.as_tensor(nxt, device=self.device)
                if t + 1 < steps:
                    self._act(k, bufs[k], iteration, student_acts, needs_v)
        # each step's groups side by side: [T] lists of [N] tensors, envs in their order
        joined = {key: [torch.cat([b[key][t] for b in bufs]) for t in range(len(bufs[0][key]))] for key in FIELDS}
        return Rollout(joined["obs"], joined["out"], joined["act"], joined["rew"], joined["done"],
                       joined["v"] if needs_v else None)

    @torch.no_grad()
    def _act(self, k: int, buf: dict[str, list[Tensor]], iteration: int, student_acts: bool, needs_v: bool) -> None:
        """Choose group ``k``'s actions on its current observations, start its step and record the step."""
        obs = self.obs[k]
        if needs_v:
            t_out, v_t = self.teacher.outputs_and_value(obs, self.variant.tau)
            buf["v"].append(v_t)
        else:
            t_out = self.teacher.outputs(obs)
        s_out = self.student(obs) if student_acts else t_out  # unused by a control the student has no share in
        q = control_probs(self.variant, t_out, s_out, iteration)
        action = torch.multinomial(q.cpu(), 1, generator=self.generator).squeeze(-1)  # CPU draws: same on any device
        self.envs[k].send(action.numpy())
        buf["obs"].append(obs)
        buf["out"].append(t_out)
        buf["act"].append(action.to(self.device))

    def close(self) -> None:
        """Close the environments."""
        for env in self.envs:
            env.close()

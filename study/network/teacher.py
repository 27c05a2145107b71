"""Teachers of the network tiers: the file that holds one, and the interface every variant queries.

A teacher file is a ``torch.save`` of plain tensors and strings (weights plus
JSON metadata: environment, observation shape, action count, algorithm,
architecture, training steps, evaluation score, project commit), so it loads
with ``weights_only=True``. Loading checks it against the environment a study
asks for and refuses a mismatch, naming both.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from study.network.envs import EnvSpec
from study.network.nets import Net
from study.store.format import write_torch
from variants.policy import teacher_log_probs

FORMAT = "distill-teacher/1"
ALGOS = {"dqn": "q", "ppo": "logits"}  # what the network's outputs are


class TeacherError(ValueError):
    """A teacher file that cannot be used here: the message names the file and the mismatch."""


@dataclass
class TeacherMeta:
    """What a teacher file says about its network: the game and settings it was trained on, its shape,
    algorithm and evaluation score."""

    env: dict[str, Any]
    obs_shape: list[int]
    n_actions: int
    algo: str
    arch: str
    width: float = 1.0
    steps: int = 0
    eval_mean: float | None = None
    eval_std: float | None = None
    eval_episodes: int = 0
    commit: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def outputs(self) -> str:
        """What the network's outputs are: ``q`` for DQN teachers, ``logits`` for PPO ones."""
        return ALGOS[self.algo]

    @property
    def env_spec(self) -> EnvSpec:
        """The game and settings the teacher was trained on."""
        return EnvSpec(**self.env)


def save_teacher(path: Path, net: Net, meta: TeacherMeta) -> Path:
    """Write atomically: a reader sees the old file or the new one, never half of one."""
    payload = {"format": FORMAT, "meta": json.dumps(asdict(meta)),
               "state": {k: v.detach().cpu() for k, v in net.state_dict().items()}}
    return write_torch(Path(path), payload)


def read_teacher(path: Path) -> tuple[TeacherMeta, dict[str, Tensor]]:
    """Metadata and weights, loaded with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise TeacherError(f"{path}: no such teacher file; make one with `distill teacher train`")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt file or one that needs pickled code
        raise TeacherError(f"{path}: not a loadable teacher file ({type(exc).__name__}: {exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise TeacherError(f"{path}: not a teacher file (format {FORMAT!r} expected)")
    try:
        meta = TeacherMeta(**json.loads(payload["meta"]))
    except (TypeError, ValueError, KeyError) as exc:
        raise TeacherError(f"{path}: unreadable teacher metadata ({exc})") from None
    if meta.algo not in ALGOS:
        raise TeacherError(f"{path}: algorithm {meta.algo!r}; allowed: {', '.join(ALGOS)}")
    return meta, payload["state"]


class Teacher:
    """The one teacher interface: outputs (Q-values or logits), a policy at a temperature, and V_T(s).

    V_T is the value head for PPO teachers; for DQN teachers it is the
    expected Q-value under the teacher's own policy at the given temperature.
    """

    def __init__(self, net: Net, meta: TeacherMeta) -> None:
        self.net = net.eval()
        self.meta = meta

    @classmethod
    def load(cls, path: Path, env: EnvSpec | None = None) -> Teacher:
        """A teacher from its file; with ``env``, refused unless it was trained on that game and settings."""
        meta, state = read_teacher(path)
        try:
            spec = meta.env_spec
            net = Net(meta.arch, meta.obs_shape, meta.n_actions, meta.width, value_head=meta.algo == "ppo")
        except (TypeError, ValueError) as exc:  # metadata written by hand or by another tool
            raise TeacherError(f"{path}: unusable teacher metadata ({exc})") from None
        if env is not None and spec != env:
            raise TeacherError(f"{path}: trained on {meta.env_spec.to_dict()}, but the study asks for "
                               f"{env.to_dict()}; allowed: a teacher of the same game and settings")
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise TeacherError(f"{path}: weights do not fit its own metadata ({exc})") from None
        return cls(net, meta)

    @torch.no_grad()
    def outputs(self, obs: Tensor) -> Tensor:
        """The network's raw outputs ``[B, A]`` (Q-values or logits), without gradients."""
        return self.net(obs)

    @torch.no_grad()
    def policy(self, obs: Tensor, tau: float) -> Tensor:
        """The teacher's action probabilities ``softmax(outputs / tau)``; ``tau = 0`` is the argmax policy."""
        return teacher_log_probs(self.net(obs), tau).exp()

    @torch.no_grad()
    def value(self, obs: Tensor, tau: float) -> Tensor:
        """V_T(s) ``[B]`` at temperature ``tau``."""
        return self.outputs_and_value(obs, tau)[1]

    @torch.no_grad()
    def outputs_and_value(self, obs: Tensor, tau: float) -> tuple[Tensor, Tensor]:
        """Outputs and V_T(s) from one forward pass."""
        if self.meta.algo == "ppo":
            return self.net.forward_value(obs)
        q = self.net(obs)
        return q, (teacher_log_probs(q, tau).exp() * q).sum(-1)

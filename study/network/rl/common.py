"""What DQN and PPO training share: devices, seeding, checkpoints that resume, the learning curve, and
evaluation of a network's unclipped score over whole episodes."""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from study.network.envs import EnvSpec, VecEnv


class DeviceError(ValueError):
    """A device that is not there: the message says which are."""


def pick_device(name: str = "auto") -> torch.device:
    """``auto``: the GPU when one is present, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise DeviceError(f"device {name!r}; allowed: auto, cpu, cuda, cuda:N")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(f"device {name!r}: no GPU is present; allowed here: auto, cpu")
    return torch.device(name)


def seed_everything(seed: int) -> np.random.Generator:
    """Seed torch's global generator; returns numpy's generator for the same seed."""
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def resumed_seed(seed: int, step: int) -> int:
    """Environment seed after a resume at ``step``: new episodes rather than a replay of the first ones."""
    return (seed + 1_000_003 * (step + 1)) % (2**31 - 1)


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """Generator and torch states as plain data (loadable with ``weights_only=True``)."""
    state = rng.bit_generator.state
    return {"numpy": {"state": int(state["state"]["state"]), "inc": int(state["state"]["inc"]),
                      "has_uint32": int(state["has_uint32"]), "uinteger": int(state["uinteger"])},
            "torch": torch.get_rng_state()}


def restore_rng(saved: dict[str, Any]) -> np.random.Generator:
    """The generators ``rng_state`` saved, put back: torch's global one set, numpy's returned."""
    rng = np.random.default_rng()
    n = saved["numpy"]
    rng.bit_generator.state = {"bit_generator": "PCG64", "state": {"state": n["state"], "inc": n["inc"]},
                               "has_uint32": n["has_uint32"], "uinteger": n["uinteger"]}
    torch.set_rng_state(saved["torch"])
    return rng


@dataclass
class Curve:
    """The learning curve: one row per finished training episode (agent steps so far, unclipped score)."""

    rows: list[tuple[int, float]]

    def add(self, step: int, finished: list[tuple[float, int]]) -> None:
        """Record the episodes the envs finished, at agent step ``step``, and empty their list."""
        self.rows.extend((step, score) for score, _ in finished)
        finished.clear()

    def recent(self, n: int = 100) -> float:
        """The mean score of the last ``n`` episodes (NaN before any finishes), for progress lines."""
        return float(np.mean([s for _, s in self.rows[-n:]])) if self.rows else float("nan")

    def write(self, path: Path) -> None:
        """Write the curve as CSV (step, score), atomically."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["step", "score"])
            writer.writerows(self.rows)
        os.replace(tmp, path)

    def as_tensor(self) -> Tensor:
        """The rows as a ``float64 [n, 2]`` tensor, the form a checkpoint saves."""
        return torch.tensor(self.rows, dtype=torch.float64).reshape(-1, 2)


def act_greedy(outputs: Tensor, epsilon: float, rng: np.random.Generator) -> np.ndarray:
    """Argmax actions with an epsilon of uniform ones."""
    best = outputs.argmax(-1).cpu().numpy()
    if epsilon > 0:
        random = rng.random(len(best)) < epsilon
        best = np.where(random, rng.integers(0, outputs.shape[-1], len(best)), best)
    return best


def act_sample(logits: Tensor, generator: torch.Generator | None = None) -> np.ndarray:
    """Actions drawn from the softmax of ``logits``."""
    probs = torch.softmax(logits.float(), -1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1).cpu().numpy()


def evaluate(policy: Callable[[Tensor], np.ndarray], spec: EnvSpec, episodes: int, seed: int,
             device: torch.device, num_envs: int = 8,
             on_states: Callable[[Tensor, Tensor], None] | None = None) -> np.ndarray:
    """Unclipped scores of ``episodes`` whole episodes. Each env plays a fixed quota, so short episodes
    are not favoured (taking the first episodes to finish would be). ``on_states(obs, counted)`` sees every
    step's observations and which envs' episodes still count."""
    n = min(num_envs, episodes)
    quota = [episodes // n + (i < episodes % n) for i in range(n)]
    env = VecEnv(spec, n, seed)
    obs = env.reset()
    returns = np.zeros(n)
    scores: list[list[float]] = [[] for _ in range(n)]
    while any(len(scores[i]) < quota[i] for i in range(n)):
        with torch.no_grad():
            batch = torch.as_tensor(obs, device=device)
            if on_states is not None:
                on_states(batch, torch.tensor([len(scores[i]) < quota[i] for i in range(n)]))
            actions = policy(batch)
        obs, reward, terminated, truncated = env.step(actions)
        returns += reward
        for i in np.flatnonzero(terminated | truncated):
            if len(scores[i]) < quota[i]:
                scores[i].append(float(returns[i]))
            returns[i] = 0.0
    env.close()
    return np.array([s for per_env in scores for s in per_env])

"""Double DQN (Mnih et al. 2015; van Hasselt et al. 2016) on vector envs: the Q-value teachers Rusu et
al. distil. Rewards are clipped to [-1, 1] for learning only; the curve records unclipped scores.

Truncated episodes (the frame cap) are treated as ends for the targets: a
small bias that keeps the replay memory free of the envs' final observations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from study.network.envs import EnvSpec, VecEnv
from study.network.nets import Net, check_precision, set_precision
from study.network.rl.common import Curve, act_greedy, restore_rng, resumed_seed, rng_state, seed_everything


@dataclass
class DQNConfig:
    """DQN's hyperparameters; ``for_tier`` gives a tier's defaults."""

    num_envs: int = 4
    buffer: int = 100_000
    batch: int = 32
    lr: float = 1e-4
    gamma: float = 0.99
    target_every: int = 2_000  # updates between target-network copies
    eps_start: float = 1.0
    eps_end: float = 0.05
    eps_fraction: float = 0.1  # of the training steps
    learn_start: int = 5_000  # transitions before the first update
    updates_per_step: int = 1  # per vector step (num_envs transitions)
    width: float = 1.0
    precision: str = "fp32"  # or "bf16" mixed precision (study.network.nets.PRECISIONS)

    def check(self) -> None:
        """Settings that cannot train (a memory smaller than the warm-up never starts learning)."""
        ints = ("num_envs", "buffer", "batch", "target_every", "learn_start", "updates_per_step")
        if any(not isinstance(getattr(self, k), int) or getattr(self, k) < 1 for k in ints):
            raise ValueError(f"dqn settings {', '.join(ints)}: allowed: whole numbers >= 1")
        if self.learn_start > self.buffer:
            raise ValueError(f"dqn: learn_start {self.learn_start} > buffer {self.buffer}: learning would never "
                             "start; allowed: learn_start <= buffer")
        if not 0 < self.eps_fraction <= 1 or not 0 <= self.eps_end <= self.eps_start <= 1:
            raise ValueError("dqn: allowed: 0 < eps_fraction <= 1 and 0 <= eps_end <= eps_start <= 1")
        check_precision(self.precision)

    @classmethod
    def for_tier(cls, tier: str) -> DQNConfig:
        """Atari observations are 56 KB a transition: a smaller memory fits a 24 GB machine."""
        return cls(num_envs=8, buffer=50_000, lr=6.25e-5, eps_end=0.01, learn_start=20_000) if tier == "atari" \
            else cls()


class Replay:
    """A circular memory of transitions; its arrays go into checkpoints whole."""

    def __init__(self, capacity: int, obs_shape: tuple[int, ...]) -> None:
        self.obs = np.zeros((capacity, *obs_shape), dtype=np.uint8)
        self.next_obs = np.zeros((capacity, *obs_shape), dtype=np.uint8)
        self.action = np.zeros(capacity, dtype=np.int64)
        self.reward = np.zeros(capacity, dtype=np.float32)
        self.done = np.zeros(capacity, dtype=np.float32)
        self.capacity, self.size, self.pos = capacity, 0, 0

    def add(self, obs: np.ndarray, action: np.ndarray, reward: np.ndarray, next_obs: np.ndarray,
            done: np.ndarray) -> None:
        """Store a vector step's transitions, overwriting the oldest once the memory is full."""
        idx = (self.pos + np.arange(len(obs))) % self.capacity
        self.obs[idx], self.action[idx], self.reward[idx] = obs, action, reward
        self.next_obs[idx], self.done[idx] = next_obs, done
        self.pos = int((self.pos + len(obs)) % self.capacity)
        self.size = int(min(self.size + len(obs), self.capacity))

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        """``n`` transitions drawn uniformly with replacement: obs, action, reward, next obs, done."""
        idx = rng.integers(0, self.size, n)
        return self.obs[idx], self.action[idx], self.reward[idx], self.next_obs[idx], self.done[idx]

    def state(self) -> dict[str, Any]:
        """The filled part of the memory as tensors, with its write position, for a checkpoint."""
        n = self.size
        return {"obs": torch.from_numpy(self.obs[:n].copy()), "next_obs": torch.from_numpy(self.next_obs[:n].copy()),
                "action": torch.from_numpy(self.action[:n].copy()), "reward": torch.from_numpy(self.reward[:n].copy()),
                "done": torch.from_numpy(self.done[:n].copy()), "pos": self.pos, "size": n}

    def load(self, state: dict[str, Any]) -> None:
        """Refill the memory from what ``state`` saved."""
        n = state["size"]
        for key in ("obs", "next_obs", "action", "reward", "done"):
            getattr(self, key)[:n] = state[key].numpy()
        self.size, self.pos = n, state["pos"]


class DQNLearner:
    """A DQN learner that advances step by step: what `distill teacher train` runs to the end, and what
    online distillation advances between the student's iterations (Rusu et al.'s teacher that is still
    learning)."""

    def __init__(self, spec: EnvSpec, cfg: DQNConfig, *, seed: int, device: torch.device, horizon: int,
                 resume: dict[str, Any] | None = None) -> None:
        cfg.check()
        self.cfg, self.device, self.horizon = cfg, device, horizon  # horizon: steps the exploration decays over
        self.rng = seed_everything(seed)
        env = VecEnv(spec, cfg.num_envs, seed)
        arch = "minatar" if spec.tier == "minatar" else "nature"
        self.net = set_precision(Net(arch, env.obs_shape, env.n_actions, cfg.width), cfg.precision).to(device)
        self.target = set_precision(Net(arch, env.obs_shape, env.n_actions, cfg.width), cfg.precision).to(device)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr, eps=1.5e-4)
        self.memory = Replay(cfg.buffer, env.obs_shape)
        self.curve, self.step, self.updates = Curve([]), 0, 0
        if resume is not None:
            self.net.load_state_dict(resume["net"])
            self.target.load_state_dict(resume["target"])
            self.opt.load_state_dict(resume["optimizer"])
            self.memory.load(resume["replay"])
            self.curve = Curve([(int(s), float(v)) for s, v in resume["curve"].tolist()])
            self.step, self.updates = int(resume["step"]), int(resume["updates"])
            self.rng = restore_rng(resume["rng"])
            env.close()
            env = VecEnv(spec, cfg.num_envs, resumed_seed(seed, self.step))  # fresh episodes, not the first again
        else:
            self.target.load_state_dict(self.net.state_dict())
        self.env = env
        self.obs = env.reset()

    def advance(self) -> None:
        """One vector step (``num_envs`` transitions) and its updates."""
        cfg = self.cfg
        eps = max(cfg.eps_end, cfg.eps_start - (cfg.eps_start - cfg.eps_end) * self.step
                  / (cfg.eps_fraction * self.horizon))
        with torch.no_grad():
            q = self.net(torch.as_tensor(self.obs, device=self.device))
        actions = act_greedy(q, eps, self.rng)
        next_obs, reward, terminated, truncated = self.env.step(actions)
        done = terminated | truncated
        self.memory.add(self.obs, actions, np.clip(reward, -1, 1), next_obs, done.astype(np.float32))
        self.obs = next_obs
        self.step += cfg.num_envs
        self.curve.add(self.step, self.env.finished)
        if self.memory.size >= cfg.learn_start:
            for _ in range(cfg.updates_per_step):
                _update(self.net, self.target, self.opt, self.memory.sample(cfg.batch, self.rng), cfg.gamma,
                        self.device)
                self.updates += 1
                if self.updates % cfg.target_every == 0:
                    self.target.load_state_dict(self.net.state_dict())

    def state(self) -> dict[str, Any]:
        """Everything a resume needs: networks, optimiser, replay memory, curve, counters and generators."""
        return {"net": self.net.state_dict(), "target": self.target.state_dict(), "optimizer": self.opt.state_dict(),
                "replay": self.memory.state(), "curve": self.curve.as_tensor(), "step": self.step,
                "updates": self.updates, "rng": rng_state(self.rng), "config": asdict(self.cfg)}

    def close(self) -> None:
        """Close the learner's environments."""
        self.env.close()


def train_dqn(spec: EnvSpec, steps: int, cfg: DQNConfig, *, seed: int, device: torch.device,
              resume: dict[str, Any] | None, checkpoint: Callable[[dict[str, Any]], None], checkpoint_every: int,
              progress: Callable[[int, float], None]) -> tuple[Net, Curve, int]:
    """Train for ``steps`` agent steps (all envs together); returns the online network and the curve."""
    learner = DQNLearner(spec, cfg, seed=seed, device=device, horizon=steps, resume=resume)
    next_save = (learner.step // checkpoint_every + 1) * checkpoint_every
    while learner.step < steps:
        learner.advance()
        if learner.step >= next_save or learner.step >= steps:
            checkpoint(learner.state())
            next_save += checkpoint_every
        progress(learner.step, learner.curve.recent())
    learner.close()
    return learner.net, learner.curve, learner.step


def _update(net: Net, target: Net, opt: torch.optim.Optimizer, batch: tuple[np.ndarray, ...], gamma: float,
            device: torch.device) -> None:
    obs, action, reward, next_obs, done = (torch.as_tensor(x, device=device) for x in batch)
    with torch.no_grad():
        best = net(next_obs).argmax(-1, keepdim=True)  # double DQN: the online net picks, the target rates
        y = reward + gamma * (1 - done) * target(next_obs).gather(1, best).squeeze(1)
    q = net(obs).gather(1, action.unsqueeze(1)).squeeze(1)
    loss = F.smooth_l1_loss(q, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), 10.0)
    opt.step()

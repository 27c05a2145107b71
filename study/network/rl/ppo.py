"""PPO with clipped objective and GAE (Schulman et al. 2017) on vector envs: teachers with logits and a
value. Rewards are clipped to [-1, 1] for learning only; the curve records unclipped scores.

Truncated episodes (the frame cap) are treated as ends for the advantages.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from study.network.envs import EnvSpec, VecEnv
from study.network.nets import Net, check_precision, set_precision
from study.network.rl.common import Curve, restore_rng, resumed_seed, rng_state, seed_everything


@dataclass
class PPOConfig:
    """PPO's hyperparameters: one set of defaults serves every tier."""

    num_envs: int = 8
    rollout: int = 128  # steps per env between updates
    epochs: int = 4
    minibatches: int = 4
    lr: float = 2.5e-4  # annealed linearly to 0
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip: float = 0.1
    entropy: float = 0.01
    value_coef: float = 0.5
    max_grad_norm: float = 0.5
    width: float = 1.0
    precision: str = "fp32"  # or "bf16" mixed precision (study.network.nets.PRECISIONS)

    @classmethod
    def for_tier(cls, tier: str) -> PPOConfig:
        """The defaults, whatever the tier: the call ``train_teacher`` makes of either algorithm's config."""
        return cls()

    def check(self) -> None:
        """Settings that cannot train: each minibatch needs at least two samples."""
        ints = ("num_envs", "rollout", "epochs", "minibatches")
        if any(not isinstance(getattr(self, k), int) or getattr(self, k) < 1 for k in ints):
            raise ValueError(f"ppo settings {', '.join(ints)}: allowed: whole numbers >= 1")
        if self.num_envs * self.rollout < 2 * self.minibatches:
            raise ValueError(f"ppo: num_envs x rollout = {self.num_envs * self.rollout} samples cannot fill "
                             f"{self.minibatches} minibatches of at least 2; allowed: num_envs x rollout >= "
                             "2 x minibatches")
        check_precision(self.precision)


def init_ppo(net: Net) -> Net:
    """The initialisation of the reference PPO implementations (OpenAI baselines, stable-baselines3,
    CleanRL): orthogonal weights with gain sqrt(2) in the trunk, 0.01 on the policy head (a near-uniform
    first policy, so early rollouts explore) and 1 on the value head; zero biases."""
    gains = [(m, math.sqrt(2)) for m in net.trunk.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    gains += [(net.head, 0.01)] + ([(net.value, 1.0)] if net.value is not None else [])
    with torch.no_grad():
        for module, gain in gains:
            weight = torch.empty(module.weight.shape)  # contiguous: the trunk keeps its own memory layout
            module.weight.copy_(nn.init.orthogonal_(weight, gain))
            module.bias.zero_()
    return net


def train_ppo(spec: EnvSpec, steps: int, cfg: PPOConfig, *, seed: int, device: torch.device,
              resume: dict[str, Any] | None, checkpoint: Callable[[dict[str, Any]], None], checkpoint_every: int,
              progress: Callable[[int, float], None]) -> tuple[Net, Curve, int]:
    """Train for ``steps`` agent steps (all envs together); returns the network and the curve."""
    cfg.check()
    rng = seed_everything(seed)
    env = VecEnv(spec, cfg.num_envs, seed)
    arch = "minatar" if spec.tier == "minatar" else "nature"
    net = set_precision(init_ppo(Net(arch, env.obs_shape, env.n_actions, cfg.width, value_head=True)),
                        cfg.precision).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, eps=1e-5)
    curve, step = Curve([]), 0
    if resume is not None:
        net.load_state_dict(resume["net"])
        opt.load_state_dict(resume["optimizer"])
        curve = Curve([(int(s), float(v)) for s, v in resume["curve"].tolist()])
        step = int(resume["step"])
        rng = restore_rng(resume["rng"])
        env.close()
        env = VecEnv(spec, cfg.num_envs, resumed_seed(seed, step))
    generator = torch.Generator(device=device).manual_seed(int(rng.integers(2**31)))
    if resume is not None and resume.get("generator_device") == generator.device.type:
        generator.set_state(resume["generator"])  # actions and minibatches go on with their stream
    obs = torch.as_tensor(env.reset(), device=device)
    n, t_len = cfg.num_envs, cfg.rollout
    batch = n * t_len
    next_save = (step // checkpoint_every + 1) * checkpoint_every
    while step < steps:
        for group in opt.param_groups:
            group["lr"] = cfg.lr * max(0.0, 1.0 - step / steps)
        buf_obs = torch.zeros((t_len, n, *env.obs_shape), dtype=torch.uint8, device=device)
        buf_act = torch.zeros((t_len, n), dtype=torch.long, device=device)
        buf_logp, buf_val, buf_rew, buf_done = (torch.zeros((t_len, n), device=device) for _ in range(4))
        for t in range(t_len):
            with torch.no_grad():
                logits, value = net.forward_value(obs)
                action = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator).squeeze(-1)
            buf_obs[t], buf_act[t], buf_val[t] = obs, action, value
            buf_logp[t] = torch.log_softmax(logits, -1).gather(1, action[:, None]).squeeze(1)
            next_obs, reward, terminated, truncated = env.step(action.cpu().numpy())
            buf_rew[t] = torch.as_tensor(np.clip(reward, -1, 1), device=device)
            buf_done[t] = torch.as_tensor(terminated | truncated, device=device, dtype=torch.float32)
            obs = torch.as_tensor(next_obs, device=device)
            step += n
            curve.add(step, env.finished)
        with torch.no_grad():
            last = net.forward_value(obs)[1]
        adv = torch.zeros_like(buf_rew)
        gae = torch.zeros(n, device=device)
        for t in reversed(range(t_len)):
            nxt = last if t == t_len - 1 else buf_val[t + 1]
            delta = buf_rew[t] + cfg.gamma * nxt * (1 - buf_done[t]) - buf_val[t]
            gae = delta + cfg.gamma * cfg.gae_lambda * (1 - buf_done[t]) * gae
            adv[t] = gae
        ret = adv + buf_val
        flat = (buf_obs.reshape(batch, *env.obs_shape), buf_act.reshape(-1), buf_logp.reshape(-1),
                adv.reshape(-1), ret.reshape(-1))
        _update(net, opt, flat, cfg, generator)
        if step >= next_save or step >= steps:
            checkpoint({"net": net.state_dict(), "optimizer": opt.state_dict(), "curve": curve.as_tensor(),
                        "step": step, "rng": rng_state(rng), "generator": generator.get_state(),
                        "generator_device": generator.device.type,
                        "config": asdict(cfg)})
            next_save += checkpoint_every
        progress(step, curve.recent())
    env.close()
    return net, curve, step


def _update(net: Net, opt: torch.optim.Optimizer, data: tuple[torch.Tensor, ...], cfg: PPOConfig,
            generator: torch.Generator) -> None:
    obs, act, old_logp, adv, ret = data
    size = len(act)
    for _ in range(cfg.epochs):
        order = torch.randperm(size, generator=generator, device=obs.device)
        for idx in torch.tensor_split(order, cfg.minibatches):  # sizes differ by at most one
            logits, value = net.forward_value(obs[idx])
            logp_all = torch.log_softmax(logits, -1)
            logp = logp_all.gather(1, act[idx, None]).squeeze(1)
            a = adv[idx]
            a = (a - a.mean()) / (a.std(unbiased=False) + 1e-8)
            ratio = (logp - old_logp[idx]).exp()
            policy_loss = -torch.min(ratio * a, ratio.clamp(1 - cfg.clip, 1 + cfg.clip) * a).mean()
            value_loss = 0.5 * (value - ret[idx]).pow(2).mean()
            entropy = -(logp_all.exp() * logp_all).sum(-1).mean()
            loss = policy_loss + cfg.value_coef * value_loss - cfg.entropy * entropy
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.max_grad_norm)
            opt.step()

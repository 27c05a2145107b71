"""Environments of the network tiers: MinAtar games and Atari (ale-py) games as seeded vector envs.

Both tiers return observations as ``uint8 [N, C, H, W]`` (MinAtar's boolean
channels as 0/1; Atari's 4 stacked 84x84 grey frames), rewards unclipped
(training loops clip their own copy, so every reported score is the game's),
and reset finished episodes in the same step, so a loop never sees a stale
observation. Atari follows Machado et al. 2018: no-op starts, frame skip 4
with max-pooling, sticky actions set explicitly and recorded, whole games
(no loss-of-life episodes), and a frame cap per episode.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from study.spec.schema import STICKY

MINATAR_GAMES = {"breakout": "Breakout", "space_invaders": "SpaceInvaders", "asterix": "Asterix",
                 "freeway": "Freeway", "seaquest": "Seaquest"}
TIERS = ("minatar", "atari")


class EnvError(ValueError):
    """An environment that cannot be made: the message names the value and what is allowed."""


@dataclass(frozen=True)
class EnvSpec:
    """One game and how it is played: the part of a study cell, teacher file and evaluation protocol that
    fixes what a score means."""

    tier: str
    game: str
    sticky: float | None = None  # repeat-action probability; None: the tier's convention (STICKY)
    noop_max: int = 30  # Atari: up to this many no-ops at the start of every episode
    frame_cap: int = 108_000  # frames per episode (Atari: 30 minutes at 60 Hz; MinAtar: its steps)

    def __post_init__(self) -> None:
        if self.tier not in TIERS:
            raise EnvError(f"tier {self.tier!r}; allowed: {', '.join(TIERS)}")
        if self.sticky is None:
            object.__setattr__(self, "sticky", STICKY[self.tier])
        if self.tier == "minatar" and self.game not in MINATAR_GAMES:
            raise EnvError(f"MinAtar game {self.game!r}; allowed: {', '.join(MINATAR_GAMES)}")
        if self.tier == "atari" and self.game not in atari_games():
            raise EnvError(f"Atari game {self.game!r}; allowed: ale-py's ROM names, e.g. pong, breakout, "
                           "space_invaders, seaquest")
        if not 0.0 <= self.sticky < 1.0:
            raise EnvError(f"sticky {self.sticky!r}; allowed: a probability in [0, 1)")
        if self.noop_max < 0 or self.frame_cap < 1:
            raise EnvError(f"noop_max {self.noop_max} / frame_cap {self.frame_cap}; allowed: noop_max >= 0, "
                           "frame_cap >= 1")

    @property
    def id(self) -> str:
        """The gymnasium id of the game."""
        if self.tier == "minatar":
            return f"MinAtar/{MINATAR_GAMES[self.game]}-v1"
        return f"ALE/{''.join(p.capitalize() for p in self.game.split('_'))}-v5"

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain values, as a teacher file and a training checkpoint record it."""
        return asdict(self)


#: what each tier needs beyond the base install (the ``[atari]`` extra installs all of them)
TIER_PACKAGES = {"minatar": ("gymnasium", "minatar"), "atari": ("gymnasium", "ale_py")}


def require_tier(tier: str) -> None:
    """Refuse, naming the fix, a network tier whose packages the base install left out."""
    import importlib.util

    missing = [m for m in TIER_PACKAGES.get(tier, ()) if importlib.util.find_spec(m) is None]
    if missing:
        raise EnvError(f"the {tier} tier needs {', '.join(missing)}, which this installation lacks; allowed: "
                       "install the [atari] extra (pip install -c constraints.txt -e \".[atari]\")")


def atari_games() -> list[str]:
    """Games whose ROMs ship with ale-py."""
    require_tier("atari")
    from ale_py import roms

    return sorted(roms.get_all_rom_ids())


class VecEnv:
    """``num_envs`` copies of a game, seeded ``seed, seed + 1, ...``; tracks whole-episode scores."""

    def __init__(self, spec: EnvSpec, num_envs: int, seed: int) -> None:
        if num_envs < 1:
            raise EnvError(f"num_envs {num_envs}; allowed: >= 1")
        self.spec = spec
        self.num_envs = num_envs
        self.seed = seed
        self._env = _make(spec, num_envs)
        self.n_actions = int(self._env.single_action_space.n)
        self._returns = np.zeros(num_envs)
        self._lengths = np.zeros(num_envs, dtype=np.int64)
        self.finished: list[tuple[float, int]] = []  # (score, agent steps) of every completed episode
        self._pending: np.ndarray | None = None  # actions sent and not yet received

    @property
    def obs_shape(self) -> tuple[int, int, int]:
        """One observation's shape, channels first: ``(C, H, W)``."""
        shape = self._env.single_observation_space.shape
        return (shape[2], shape[0], shape[1]) if self.spec.tier == "minatar" else tuple(shape)

    def reset(self) -> np.ndarray:
        """Start every copy afresh from its seed; returns the first observations, in-progress scores cleared."""
        self._returns[:] = 0
        self._lengths[:] = 0
        if self.spec.tier == "minatar":
            obs, _ = self._env.reset(seed=[self.seed + i for i in range(self.num_envs)])
        else:
            obs, _ = self._env.reset(seed=self.seed)
        return self._obs(obs)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Observations (the next episode's first one where an episode ended), unclipped rewards,
        terminated and truncated flags."""
        self.send(actions)
        return self.recv()

    def send(self, actions: np.ndarray) -> None:
        """Start a step. ale-py steps in its own thread until ``recv``, so a loop can compute meanwhile
        (MinAtar steps in ``recv``)."""
        if self._pending is not None:
            raise RuntimeError("send twice without recv")
        actions = np.asarray(actions)
        if self.spec.tier == "atari":
            self._env.send(actions)
        self._pending = actions

    def recv(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The step that ``send`` started: as ``step`` returns it."""
        if self._pending is None:
            raise RuntimeError("recv without send")
        if self.spec.tier == "atari":
            obs, reward, terminated, truncated, _ = self._env.recv()
        else:
            obs, reward, terminated, truncated, _ = self._env.step(self._pending)
        self._pending = None
        reward = np.asarray(reward, dtype=np.float64)
        self._returns += reward
        self._lengths += 1
        for i in np.flatnonzero(terminated | truncated):
            self.finished.append((float(self._returns[i]), int(self._lengths[i])))
            self._returns[i] = 0
            self._lengths[i] = 0
        return self._obs(obs), reward, np.asarray(terminated), np.asarray(truncated)

    def _obs(self, obs: np.ndarray) -> np.ndarray:
        if self.spec.tier == "minatar":
            return np.ascontiguousarray(np.moveaxis(obs, -1, 1)).astype(np.uint8)
        return obs

    def close(self) -> None:
        """Release the games and ale-py's stepping threads."""
        self._env.close()


def _make(spec: EnvSpec, num_envs: int) -> Any:
    """The tier's vector env, preprocessed and with its sticky actions set explicitly."""
    require_tier(spec.tier)
    if spec.tier == "minatar":
        import gymnasium as gym
        import minatar.gym
        from gymnasium.vector import AutoresetMode

        if spec.id not in gym.registry:
            minatar.gym.register_envs()
        return gym.make_vec(spec.id, num_envs=num_envs, vectorization_mode="sync",
                            vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
                            sticky_action_prob=spec.sticky, max_episode_steps=spec.frame_cap)
    from ale_py.vector_env import AtariVectorEnv

    return AtariVectorEnv(game=spec.game, num_envs=num_envs, num_threads=1, autoreset_mode="SameStep",
                          repeat_action_probability=spec.sticky, noop_max=spec.noop_max,
                          max_num_frames_per_episode=spec.frame_cap, frameskip=4, maxpool=True, stack_num=4,
                          img_height=84, img_width=84, grayscale=True, reward_clipping=False,
                          episodic_life=False)

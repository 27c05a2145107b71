"""Networks of the network tiers: the Nature CNN (Atari) and a small MinAtar network, both scaled by a
width multiplier, and a multi-task student with one input layer and one output head per game.

Every network maps ``uint8 [B, C, H, W]`` observations to ``[B, A]`` outputs
(Q-values or logits, as the teacher's algorithm defines them) and, with
``value_head``, a state value ``[B]`` for PPO.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from study.spec.schema import PRECISIONS

ARCHS = ("nature", "minatar")
# PRECISIONS: fp32, or bf16 mixed precision: the trunk's convolutions and matrix products in bfloat16 (AMX on
# recent x86 CPUs, tensor cores on GPUs) with fp32 weights, optimiser state and outputs


def check_precision(precision: str) -> None:
    """Refuse a precision that is not one of PRECISIONS, naming the allowed ones."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}; allowed: {', '.join(PRECISIONS)}")


def _scaled(channels: int, width: float) -> int:
    return max(1, round(channels * width))


class Trunk(nn.Module):
    """Convolutions and the hidden layer, the part a multi-task student shares across games."""

    def __init__(self, arch: str, in_channels: int, obs_hw: tuple[int, int], width: float = 1.0) -> None:
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"architecture {arch!r}; allowed: {', '.join(ARCHS)}")
        if arch == "nature":  # Mnih et al. 2015
            c1, c2, c3, hidden = (_scaled(c, width) for c in (32, 64, 64, 512))
            self.first = nn.Conv2d(in_channels, c1, 8, stride=4)
            self.rest = nn.Sequential(nn.ReLU(), nn.Conv2d(c1, c2, 4, stride=2), nn.ReLU(),
                                      nn.Conv2d(c2, c3, 3, stride=1), nn.ReLU(), nn.Flatten())
            self.scale = 1.0 / 255.0
        else:  # Young & Tian 2019's MinAtar DQN
            c1, hidden = _scaled(16, width), _scaled(128, width)
            self.first = nn.Conv2d(in_channels, c1, 3, stride=1)
            self.rest = nn.Sequential(nn.ReLU(), nn.Flatten())
            self.scale = 1.0
        with torch.no_grad():
            flat = self.rest(self.first(torch.zeros(1, in_channels, *obs_hw))).shape[1]
        self.hidden = nn.Sequential(nn.Linear(flat, hidden), nn.ReLU())
        self.arch, self.width, self.out_features = arch, width, hidden
        self.precision = "fp32"  # how it computes, not what it holds: not saved with the weights
        self.to(memory_format=torch.channels_last)  # faster convolutions on the CPU

    def forward(self, obs: Tensor, first: nn.Module | None = None) -> Tensor:
        """Hidden features ``[B, hidden]`` in fp32; ``first`` replaces the first layer (a multi-task
        student's per-game input layer)."""
        x = (obs.float() * self.scale).contiguous(memory_format=torch.channels_last)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            z = self.hidden(self.rest((first or self.first)(x)))
        return z.float()


class Net(nn.Module):
    """One game: trunk, an output head of ``n_actions`` and optionally a value head."""

    def __init__(self, arch: str, obs_shape: Sequence[int], n_actions: int, width: float = 1.0,
                 value_head: bool = False) -> None:
        super().__init__()
        c, h, w = obs_shape
        self.obs_shape = (c, h, w)
        self.trunk = Trunk(arch, c, (h, w), width)
        self.head = nn.Linear(self.trunk.out_features, n_actions)
        self.value = nn.Linear(self.trunk.out_features, 1) if value_head else None

    def forward(self, obs: Tensor) -> Tensor:
        """The head's outputs ``[B, A]``: Q-values or logits, as the algorithm defines them."""
        return self.head(self.trunk(obs))

    def forward_value(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """Outputs and state values from one pass (PPO)."""
        if self.value is None:
            raise ValueError("this network has no value head")
        z = self.trunk(obs)
        return self.head(z), self.value(z).squeeze(-1)


class MultiTaskNet(nn.Module):
    """Rusu et al.'s multi-task student: a shared trunk, one output head per game, and a per-game first
    layer where the games' observations differ (MinAtar games have different channel counts)."""

    def __init__(self, arch: str, obs_shapes: dict[str, Sequence[int]], n_actions: dict[str, int],
                 width: float = 1.0) -> None:
        super().__init__()
        games = list(obs_shapes)
        shapes = {tuple(obs_shapes[g]) for g in games}
        hw = {tuple(s[1:]) for s in shapes}
        if len(hw) != 1:
            raise ValueError(f"games need one observation height and width; got {sorted(hw)}")
        c = max(s[0] for s in shapes)
        self.trunk = Trunk(arch, c, next(iter(hw)), width)
        self.firsts = nn.ModuleDict()
        if len(shapes) > 1:
            for g in games:
                self.firsts[g] = nn.Conv2d(obs_shapes[g][0], self.trunk.first.out_channels,
                                           self.trunk.first.kernel_size, stride=self.trunk.first.stride)
            self.trunk.first = nn.Identity()  # unused: every game has its own
        self.heads = nn.ModuleDict({g: nn.Linear(self.trunk.out_features, n_actions[g]) for g in games})

    def forward(self, obs: Tensor, game: str) -> Tensor:
        """Outputs ``[B, A]`` of ``game``'s head, through that game's first layer when games have their own."""
        first = self.firsts[game] if len(self.firsts) else None
        return self.heads[game](self.trunk(obs, first))


def set_precision(net: nn.Module, precision: str) -> nn.Module:
    """Make every trunk of ``net`` compute in ``precision`` (PRECISIONS); its heads stay fp32."""
    check_precision(precision)
    for module in net.modules():
        if isinstance(module, Trunk):
            module.precision = precision
    return net


def parameters(net: nn.Module) -> int:
    """How many weights the network holds, the measure of a compressed student's size."""
    return sum(p.numel() for p in net.parameters())


def width_for_fraction(arch: str, obs_shape: Sequence[int], n_actions: int, fraction: float) -> float:
    """The width multiplier whose network has closest to ``fraction`` of the full-width one's parameters
    (Rusu et al.'s compressed students: about 25%, 7% and 4%); the whole size is width 1 exactly."""
    if fraction >= 1.0:
        return 1.0
    full = parameters(Net(arch, obs_shape, n_actions))
    lo, hi = 0.01, 1.0
    for _ in range(40):
        mid = (lo + hi) / 2
        if parameters(Net(arch, obs_shape, n_actions, mid)) < fraction * full:
            lo = mid
        else:
            hi = mid
    cands = [lo, hi]
    return min(cands, key=lambda w: abs(parameters(Net(arch, obs_shape, n_actions, w)) / full - fraction))

"""The distillation landscape behind one interface: control x loss x pseudo-reward.

Pure torch: nothing here knows of environments or files.
"""

from variants.catalogue import CATALOGUE, Entry, get, variant
from variants.control import Control
from variants.errors import VariantError
from variants.losses import LOSSES, state_loss
from variants.policy import kl, student_log_probs, teacher_log_probs
from variants.rewards import REWARDS, RewardParts, RewardSpec, reward_parts
from variants.spec import Variant
from variants.surrogate import (
    has_returns,
    masked_state_loss,
    regrouped_surrogate,
    returns_to_go,
    step_returns,
    surrogate,
)

__all__ = [
    "CATALOGUE",
    "LOSSES",
    "REWARDS",
    "Control",
    "Entry",
    "RewardParts",
    "RewardSpec",
    "Variant",
    "VariantError",
    "get",
    "has_returns",
    "kl",
    "masked_state_loss",
    "regrouped_surrogate",
    "returns_to_go",
    "reward_parts",
    "state_loss",
    "step_returns",
    "student_log_probs",
    "surrogate",
    "teacher_log_probs",
    "variant",
]

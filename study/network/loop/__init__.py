"""The distillation loop of the network tiers: one loop for every variant, in the manner of Acme's
environment loop.

- ``actor``: plays a game's envs under the variant's control policy and hands back a ``Rollout``;
- ``rollout``: that rollout and its cutting into episode pieces (``segments``);
- ``memory``: the replay ``Memory`` of observations with their teacher outputs;
- ``learner``: the student's optimiser and updates (replayed minibatches, in a background ``Updates``
  worker, or the surrogate on the fresh rollout);
- ``evaluation``: whole episodes played by the student (score, agreement, KL on its states);
- ``coordinator``: ``distill_network`` and ``distill_multitask``, which wire them together.

The loop takes the study's ``LoopParams`` as it is; the student's width and the device are arguments.
"""

from study.network.loop.actor import Actor, env_groups
from study.network.loop.coordinator import LoopResult, check_variant, distill_multitask, distill_network, uses_replay
from study.network.loop.evaluation import Evaluation, evaluate_student
from study.network.loop.learner import MAX_GRAD_NORM, Learner, Updates, rollout_loss
from study.network.loop.memory import Memory
from study.network.loop.rollout import Rollout, segments

__all__ = ["MAX_GRAD_NORM", "Actor", "Evaluation", "Learner", "LoopResult", "Memory", "Rollout", "Updates",
           "check_variant", "distill_multitask", "distill_network", "env_groups", "evaluate_student", "rollout_loss",
           "segments", "uses_replay"]

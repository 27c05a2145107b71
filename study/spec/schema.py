"""The study file's schema: the top level and, per tier, the typed sections every key belongs to.

A study names parameters by flat keys (``tau``, ``size``, ``lr``...). Each key
belongs to one part of a cell: the variant, the environment, the teacher, the
student or the training budget. Pure: pydantic models and the variant catalogue only.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# ---- the parameters a study may set -------------------------------------------------------------

class StudyError(ValueError):
    """A study file that cannot run: the message names file, key, value and what is allowed."""


#: sticky-action conventions of the network tiers: MinAtar (Young & Tian 2019) 0.1, Atari (Machado et al.
#: 2018) 0.25; a cell that leaves ``sticky`` unset is played, and recorded, with its tier's
STICKY = {"minatar": 0.1, "atari": 0.25}

#: the arithmetic a network student may train in (study.network.nets)
Precision = Literal["fp32", "bf16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)

VARIANT_KEYS = ("variant", "control", "beta", "schedule", "beta_final", "horizon", "decay", "epsilon",
                "teacher_tau", "loss", "reward", "env_reward", "v_cond", "tau", "jsd_beta", "gamma", "n_step",
                "critic", "critic_lr", "critic_init")
CONTROL_KEYS = {"control": "kind", "beta": "beta", "schedule": "schedule", "beta_final": "beta_final",
                "horizon": "horizon", "decay": "decay", "epsilon": "epsilon", "teacher_tau": "teacher_tau"}


#: the placement probabilities of ``paper_gridworld`` (study.tabular.generators holds the same, for Python
#: callers; a test keeps the two equal)
PAPER_WALL_PROB, PAPER_TERMINAL_PROB, PAPER_PENALTY_PROB = 0.1, 0.005, 0.1


class EnvParams(BaseModel):
    """The MDPs of a tabular cell: ``mdps`` MDPs from ``generator`` seeded by ``mdp_seed``; a grid world's
    actions beyond the fourth repeat the moves (``extra_actions = "repeat"``), stay in place (``"stay"``) or
    move at random (``"random"``) or move like ``a mod 4`` at a cost of their own, drawn from
    ``[extra_cost, 2 extra_cost]`` (``"costly"``); ``gridworld`` places fixed counts of walls, terminals and -1 cells
    (``wall_frac``, ``penalty_frac``), ``paper_gridworld`` draws each cell's kind with the probabilities
    ``wall_prob``, ``terminal_prob`` (each of +10, +5, -5, -10) and ``penalty_prob``, as Czarnecki et al.'s
    appendix; a corridor pays ``step_reward`` per step and ``goal_reward`` at its goal."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    # see TrainParams.LATER_KEYS
    LATER_KEYS: ClassVar[dict[str, Any]] = {"extra_actions": "repeat", "goal_reward": 10.0, "step_reward": -1.0,
                                            "wall_prob": PAPER_WALL_PROB, "terminal_prob": PAPER_TERMINAL_PROB,
                                            "penalty_prob": PAPER_PENALTY_PROB, "extra_cost": 2.0}
    generator: Literal["gridworld", "paper_gridworld", "garnet", "corridor", "exit_chain", "bandit"] = "gridworld"
    extra_actions: Literal["repeat", "stay", "random", "costly"] = "repeat"
    extra_cost: float = Field(2.0, ge=0.0, le=1000.0)
    mdps: int = Field(20, ge=1)
    mdp_seed: int = Field(0, ge=0)
    size: int = Field(10, ge=3)
    n_actions: int = Field(4, ge=2)
    wall_frac: float = Field(0.1, ge=0.0, le=0.5)
    penalty_frac: float = Field(0.1, ge=0.0, le=1.0)
    wall_prob: float = Field(PAPER_WALL_PROB, ge=0.0, le=0.5)
    terminal_prob: float = Field(PAPER_TERMINAL_PROB, ge=0.0, le=0.25)
    penalty_prob: float = Field(PAPER_PENALTY_PROB, ge=0.0, le=1.0)
    noise: float = Field(0.0, ge=0.0, le=1.0)
    absorb: float = Field(0.01, ge=0.0, lt=1.0)
    n_states: int = Field(10, ge=2)
    branching: int = Field(2, ge=1)
    n_terminal: int = Field(0, ge=0)
    length: int = Field(10, ge=2)
    goal_reward: float = 10.0
    step_reward: float = -1.0


class TeacherParams(BaseModel):
    """How each MDP's teacher is made: exact optimal Q, Q-learning (``q_learning``: the paper's plain recipe,
    weak on large grid worlds; ``q_learning_explored``: episodes that cover the MDP, near-optimal), or
    adversarial (-Q*); an optional fraction of states with random action distributions."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    teacher: Literal["optimal", "q_learning", "q_learning_explored", "adversarial"] = "optimal"
    teacher_noise: float = Field(0.0, ge=0.0, le=1.0)
    q_episodes: int = Field(2000, ge=1)
    teacher_gamma: float = Field(1.0, gt=0.0, le=1.0)


class StudentParams(BaseModel):
    """The tabular student: a table of logits or a linear map of state features, and the scale of its
    random initial parameters (0: the uniform policy)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    student: Literal["table", "linear"] = "table"
    init_scale: float = Field(0.0, ge=0.0)


class TrainParams(BaseModel):
    """The budget of a tabular cell: exact or sampled updates, the optimiser, iterations, evaluation
    interval (``eval_every``, plus ``eval_log`` log-spaced evaluations before the first interval ends, so
    that a long run's curves keep their early part) and, when sampled, the episodes per iteration and their
    length."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    #: keys added after studies were run with the section's defaults: a cell's id hashes one only when it is
    #: set to something else, so that adding it changed no existing id
    LATER_KEYS: ClassVar[dict[str, Any]] = {"eval_log": 0}
    mode: Literal["exact", "sampled"] = "sampled"
    iterations: int = Field(300, ge=1)
    eval_every: int = Field(20, ge=1)
    eval_log: int = Field(0, ge=0)
    lr: float = Field(0.05, gt=0.0)
    optimizer: Literal["sgd", "adam"] = "adam"
    episodes: int = Field(1, ge=1)
    max_steps: int = Field(300, ge=1)


class GameParams(BaseModel):
    """The game of a network cell and how it is played (the evaluation protocol's environment side)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    game: str = ""
    sticky: float | None = Field(None, ge=0.0, lt=1.0)
    noop_max: int = Field(30, ge=0)
    frame_cap: int = Field(108_000, ge=1)


class TeacherFileParams(BaseModel):
    """A trained teacher (``distill teacher train``); default ``results/teachers/<tier>-<game>.pt``,
    relative to the folder the study runs from."""

    model_config = ConfigDict(extra="forbid", strict=True)
    teacher_file: str = ""
    # online distillation: a DQN teacher learning from scratch takes this many vector steps after every
    # iteration of the student (0: the trained teacher file, fixed)
    online_steps: int = Field(0, ge=0)


class NetStudentParams(BaseModel):
    """The student network: the teacher's architecture at ``width``, or at the width whose parameter count is
    closest to ``student_fraction`` of the teacher's (Rusu et al.'s compression: about 0.25, 0.07, 0.04)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    width: float = Field(1.0, gt=0.0, le=4.0)
    student_fraction: float | None = Field(None, gt=0.0, le=1.0)
    games: str = ""  # a multi-task student: "breakout+asterix" (each game's teacher at its default path)


class LoopParams(BaseModel):
    """The budget of a network cell: how long and how the student trains, and how it is evaluated. The
    network loop takes this type as it is (one loop configuration)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)
    iterations: int = Field(1_000, ge=1)
    num_envs: int = Field(8, ge=1)
    rollout: int = Field(32, ge=1)  # steps per env per iteration
    replay: int = Field(50_000, ge=1)  # teacher-driven memory: observations with their teacher outputs
    batch: int = Field(128, ge=1)
    updates: int = Field(2, ge=1)  # replay minibatches per iteration
    lr: float = Field(1e-3, gt=0.0)
    optimizer: Literal["adam", "rmsprop"] = "adam"  # rmsprop: Rusu et al.
    eval_every: int = Field(100, ge=1)
    eval_episodes: int = Field(10, ge=1)
    eval_epsilon: float = Field(0.05, ge=0.0, le=1.0)
    # the student's arithmetic: bf16 mixed precision is faster on CPUs with AMX and on GPUs; the teacher
    # always computes in fp32, since at a temperature of 0.01 bf16's rounding of its outputs would move the
    # targets
    precision: Precision = "fp32"

    @model_validator(mode="after")
    def _one_rollout_fits(self) -> LoopParams:
        if self.replay < self.num_envs * self.rollout:
            raise ValueError(f"replay {self.replay} is smaller than one rollout ({self.num_envs} envs x "
                             f"{self.rollout} steps); allowed: replay >= num_envs x rollout")
        return self


SECTIONS: dict[str, type[BaseModel]] = {"env": EnvParams, "teacher": TeacherParams, "student": StudentParams,
                                        "train": TrainParams}
NETWORK_SECTIONS: dict[str, type[BaseModel]] = {"env": GameParams, "teacher": TeacherFileParams,
                                                "student": NetStudentParams, "train": LoopParams}
TIERS: dict[str, dict[str, type[BaseModel]]] = {"tabular": SECTIONS, "minatar": NETWORK_SECTIONS,
                                                "atari": NETWORK_SECTIONS}
KEY_SECTION: dict[str, str] = {key: "variant" for key in VARIANT_KEYS}
for _sections in TIERS.values():
    for _section, _model in _sections.items():
        KEY_SECTION.update({key: _section for key in _model.model_fields})
ALLOWED_KEYS = tuple(KEY_SECTION)


def tier_keys(tier: str) -> tuple[str, ...]:
    """The keys a study of ``tier`` may set."""
    return VARIANT_KEYS + tuple(k for model in TIERS[tier].values() for k in model.model_fields)


MAX_SEED = 2**31 - 1  # seeds feed 32-bit random streams


class StudyFile(BaseModel):
    """The top level of a study TOML file."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    tier: Literal["tabular", "minatar", "atari"] = "tabular"
    description: str = ""
    seeds: int | list[int] = 3
    fixed: dict[str, Any] = Field(default_factory=dict)
    factors: dict[str, list[Any]] = Field(default_factory=dict)
    exclude: list[dict[str, Any]] = Field(default_factory=list)
    include: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds(cls, value: Any) -> int | list[int]:
        def is_int(x: Any) -> bool:
            return isinstance(x, int) and not isinstance(x, bool)

        if isinstance(value, int) and not isinstance(value, bool):
            if not 1 <= value <= MAX_SEED:
                raise ValueError(f"a seed count must be between 1 and {MAX_SEED}")
            return value
        if isinstance(value, list) and value and all(is_int(x) for x in value):
            seeds = [int(x) for x in value]
            if len(set(seeds)) != len(seeds) or min(seeds) < 0 or max(seeds) > MAX_SEED:
                raise ValueError(f"a seed list must be distinct whole numbers from 0 to {MAX_SEED}")
            return seeds
        raise ValueError("allowed: a whole-number count (seeds = 3) or a list of whole numbers (seeds = [0, 1])")

    @property
    def seed_list(self) -> list[int]:
        """The seeds every grid point runs: ``0..seeds-1`` for a count, else the list as given."""
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)



"""Cells: one grid point and one seed, with typed sections, its variant and a stable id.

A cell's id hashes what it computes: the resolved variant (not how the study
spelled it) and every other resolved parameter, plus the seed. Network cells
also hash the content of their teacher files, so retraining a teacher makes
new cells; reading those files is engine work, so a network cell gets its
digests from ``study.run.checks`` and has no id before.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

import variants as V
from study.spec.schema import (
    CONTROL_KEYS,
    KEY_SECTION,
    EnvParams,
    GameParams,
    LoopParams,
    NetStudentParams,
    StudentParams,
    TeacherFileParams,
    TeacherParams,
    TrainParams,
)

SECTION_NAMES = ("env", "teacher", "student", "train")


def canonical_json(data: Any) -> str:
    """JSON with sorted keys and no spaces: the text ids and fingerprints hash."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def cell_id(identity: dict[str, Any], seed: int) -> str:
    """A hash of the cell's identity and seed: the same on every run and machine."""
    return hashlib.sha256(canonical_json({"identity": identity, "seed": seed}).encode()).hexdigest()[:16]


def default_teacher_file(tier: str, game: str) -> str:
    """Where a network tier's trained teacher for ``game`` lives unless a study names another file."""
    return f"results/teachers/{tier}-{game}.pt"


def build_variant(params: dict[str, Any]) -> V.Variant:
    """The cell's variant: a preset (``variant``) with any parts changed, or parts alone."""
    parts = {k: v for k, v in params.items() if KEY_SECTION.get(k) == "variant" and k != "variant"}
    control = {CONTROL_KEYS[k]: parts.pop(k) for k in list(parts) if k in CONTROL_KEYS}
    preset = params.get("variant")
    if preset is not None:
        base = V.get(preset).variant
        if control:
            parts["control"] = V.Control(**{**_control_dict(base.control), **control})
        return V.variant(preset, **parts, name=_label(preset, parts, control)) if parts else base
    if control:
        parts["control"] = V.Control(**control)
    return V.Variant(**parts, name=_label(None, parts, control))


def _control_dict(control: V.Control) -> dict[str, Any]:
    return {k: getattr(control, k) for k in control.__dataclass_fields__}


def _label(preset: str | None, parts: dict[str, Any], control: dict[str, Any]) -> str:
    changes = {**{k: v for k, v in parts.items() if k != "control"}, **control}
    text = ",".join(f"{k}={v}" for k, v in sorted(changes.items()))
    if preset is None:
        return text or "variant"
    return f"{preset}[{text}]" if text else preset


@dataclass(frozen=True)
class Cell:
    """What every cell has: its tier, seed and variant, and ``params``, the flat resolved keys (the study's
    keys with their defaults filled in) that records and the analysis's labels use. ``given`` is the grid
    point as the study wrote it, for messages."""

    tier: str
    seed: int
    variant: V.Variant
    params: dict[str, Any]
    given: dict[str, Any]

    @property
    def sections(self) -> dict[str, BaseModel]:
        """The typed sections by name (env, teacher, student, train)."""
        return {name: getattr(self, name) for name in SECTION_NAMES}

    def identity(self) -> dict[str, Any]:
        """What the cell computes: the resolved variant and every key of its typed sections (what runs, so
        the id cannot drift from it). Two spellings of one recipe (a preset, or its parts; 1 or 1.0) are one
        cell."""
        parts = self.variant.to_dict()
        parts.pop("name")
        identity: dict[str, Any] = {"variant": parts}
        for section in self.sections.values():
            dump = section.model_dump()
            for key, default in getattr(type(section), "LATER_KEYS", {}).items():
                if dump.get(key) == default:
                    dump.pop(key)
            identity.update(dump)
        if identity.get("student_fraction") == 1.0:  # the whole teacher's size is width 1 (width_for_fraction)
            identity.update(student_fraction=None, width=1.0)
        return identity

    def key(self) -> str:
        """What tells two cells of one study apart before any file is read (dedup of spellings)."""
        return canonical_json({"identity": self.identity(), "seed": self.seed})

    @functools.cached_property
    def id(self) -> str:
        """The stable id: a hash of the identity and the seed."""
        return cell_id(self.identity(), self.seed)

    def config(self) -> dict[str, Any]:
        """The study's parameters, the identity the id hashes, and the seed (the cell's config.json)."""
        return {"params": self.params, "identity": self.identity(), "seed": self.seed}


@dataclass(frozen=True)
class TabularCell(Cell):
    """A cell of the tabular tier: ``env.mdps`` generated MDPs, their teachers, a student and a budget."""

    env: EnvParams
    teacher: TeacherParams
    student: StudentParams
    train: TrainParams


@dataclass(frozen=True)
class NetworkCell(Cell):
    """A cell of a network tier (MinAtar, Atari): one game (or several, for a multi-task student), trained
    teacher files, a student network and a loop budget. ``teacher_digests`` are the teacher files' content
    hashes, bound by ``study.run.checks``; the id needs them."""

    env: GameParams
    teacher: TeacherFileParams
    student: NetStudentParams
    train: LoopParams
    teacher_digests: tuple[str, ...] = field(default=())

    @property
    def games(self) -> list[str]:
        """The cell's game, or each game of a multi-task student."""
        return [g for g in self.student.games.split("+") if g] or [self.env.game]

    def teacher_files(self) -> list[str]:
        """The teacher file of each game: the study's ``teacher_file`` or the default path."""
        if self.student.games:
            return [default_teacher_file(self.tier, g) for g in self.games]
        return [self.teacher.teacher_file or default_teacher_file(self.tier, self.env.game)]

    def identity(self) -> dict[str, Any]:
        """As for every cell, plus the tier and what the teacher files hold, not only their names."""
        if not self.teacher_digests:
            raise RuntimeError("a network cell's id hashes its teacher files: bind them with "
                               "study.run.checks.check_study first")
        return {**self._plain_identity(), "tier": self.tier, "teacher_sha256": list(self.teacher_digests)}

    def _plain_identity(self) -> dict[str, Any]:
        return super().identity()

    def key(self) -> str:
        """Without the teacher digests: cells of one study that differ only there do not exist."""
        return canonical_json({"identity": self._plain_identity(), "tier": self.tier, "seed": self.seed})

"""The checks of a study that need the engines or files, run by `distill grid plan` and `grid run` before
anything is written: a tabular grid point must build its MDPs (cross-key limits the generators know), an
exact-mode variant must be one the exact engine computes, a network cell's games must exist, its variant
must run on networks, and its teacher files must be there and fit the game. Network cells come back bound
to their teacher files' content, which their ids hash."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from study.spec import Cell, Study, StudyError, canonical_json
from study.spec.cells import NetworkCell, TabularCell

if TYPE_CHECKING:
    from study.network.envs import EnvSpec


@functools.cache
def _digest(path: str, inode: int, ctime_ns: int, mtime_ns: int, size: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def file_digest(path: str) -> str:
    """A file's content hash, cached while the file is unchanged (its inode and change time, which copying
    with preserved times does not restore, are part of the key)."""
    st = Path(path).stat()
    return _digest(str(Path(path).resolve()), st.st_ino, st.st_ctime_ns, st.st_mtime_ns, st.st_size)


def check_study(study: Study) -> Study:
    """The study with every cell checked and network cells bound; a failing cell raises StudyError naming
    the study, the grid point as written and what is allowed. Idempotent."""
    if study.checked:
        return study
    cells: list[Cell] = []
    for cell in study.cells:
        where = f"{study.path}: cell {canonical_json(cell.given)}"
        if isinstance(cell, TabularCell):
            _check_tabular(cell, where)
            cells.append(cell)
        elif isinstance(cell, NetworkCell):
            cells.append(_check_network(cell, where))
        else:
            raise TypeError(f"unknown cell type {type(cell).__name__}")
    return dataclasses.replace(study, cells=cells, checked=True)


def _check_tabular(cell: TabularCell, where: str) -> None:
    from study.tabular.exact import check_exact
    from study.tabular.mdp import MDPError
    from variants import VariantError

    try:
        if cell.train.mode == "exact":
            check_exact(cell.variant)
        _builds(cell.env.model_copy(update={"mdps": 1}).model_dump_json())
    except (MDPError, VariantError) as exc:
        raise StudyError(f"{where}: {exc}") from None


@functools.cache
def _builds(env_json: str) -> bool:
    """Let the generator build one MDP of an environment section (its cross-key limits); many cells share a
    section, so each is built once."""
    from study.run.tabular import build_mdp
    from study.spec.schema import EnvParams

    build_mdp(EnvParams.model_validate_json(env_json))
    return True


def _check_network(cell: NetworkCell, where: str) -> NetworkCell:
    from study.network.envs import EnvError, EnvSpec, require_tier
    from study.network.loop import check_variant
    from study.network.teacher import TeacherError
    from variants import VariantError

    try:
        require_tier(cell.tier)
        specs = [EnvSpec(cell.tier, g, cell.env.sticky, cell.env.noop_max, cell.env.frame_cap) for g in cell.games]
        check_variant(cell.variant)
    except (EnvError, VariantError, ValueError) as exc:
        raise StudyError(f"{where}: {exc}") from None
    for spec, path in zip(specs, cell.teacher_files(), strict=True):
        try:
            algo = _teacher_algo(path, file_digest(path) if Path(path).is_file() else "", spec)
        except TeacherError as exc:
            raise StudyError(f"{where}: key 'teacher_file': {exc}") from None
        if cell.teacher.online_steps and algo != "dqn":
            raise StudyError(f"{where}: key 'online_steps': online teachers learn with DQN, so the teacher file "
                             f"(which sets their settings and the score scale) must be a DQN teacher; {path} is "
                             f"{algo}")
    return dataclasses.replace(cell, teacher_digests=tuple(file_digest(f) for f in cell.teacher_files()))


@functools.cache
def _teacher_algo(path: str, digest: str, spec: EnvSpec) -> str:
    """Load the teacher file as the cell will (refused when missing or made for another game or protocol;
    once per file content and game); its algorithm."""
    from study.network.teacher import Teacher

    return Teacher.load(Path(path), spec).meta.algo

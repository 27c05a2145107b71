"""Study files: validate a TOML study, expand its factorial grid into cells with stable ids.

Keys and their sections are in ``study.spec.schema``. ``[fixed] sets a key for every cell,
``[factors]`` gives a list per key (the grid is their full product),
``exclude`` drops the combinations that match, ``include`` adds combinations.
Everything is checked before anything runs; a bad value raises
:class:`StudyError` naming the file, the key, the value and what is allowed.
"""

from __future__ import annotations

import itertools
import json
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from study.spec.cells import (
    SECTION_NAMES,
    Cell,
    NetworkCell,
    TabularCell,
    build_variant,
    canonical_json,
    default_teacher_file,
)
from study.spec.schema import KEY_SECTION, STICKY, TIERS, StudyError, StudyFile, tier_keys
from variants import Variant, VariantError

# ---- loading and expansion -----------------------------------------------------------------------


@dataclass
class Study:
    """A validated study: its file, source text and expanded cells. ``checked``: the engine-backed checks of
    ``study.run.checks`` passed and network cells are bound to their teacher files (they have ids)."""

    spec: StudyFile
    source: str
    path: str
    cells: list[Cell]
    checked: bool = False

    @property
    def name(self) -> str:
        """The study's name, from its file."""
        return self.spec.name

    @property
    def points(self) -> int:
        """Grid points (cells without the seed)."""
        return len(self.cells) // len(self.spec.seed_list)


def to_toml(spec: StudyFile) -> str:
    """A study file's TOML text (for studies built in code, such as the demo with overrides)."""
    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return repr(v)

    lines = [f"{k} = {value(getattr(spec, k))}" for k in ("name", "tier", "description", "seeds")]
    for table in ("fixed", "factors"):
        lines += ["", f"[{table}]"] + [f"{k} = {value(v)}" for k, v in getattr(spec, table).items()]
    for table in ("exclude", "include"):
        for rule in getattr(spec, table):
            lines += ["", f"[[{table}]]"] + [f"{k} = {value(v)}" for k, v in rule.items()]
    return "\n".join(lines) + "\n"


def builtin_studies() -> list[str]:
    """Names of the studies shipped inside the package."""
    folder = resources.files("study") / "studies"
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_study(ref: str | Path) -> Study:
    """A study by built-in name or by path, validated and expanded."""
    path = Path(ref)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise StudyError(f"{ref}: no such study file; built-in studies: {', '.join(builtin_studies())}")
        source, where = path.read_text(), str(path)
    elif str(ref) in builtin_studies():
        source = (resources.files("study") / "studies" / f"{ref}.toml").read_text()
        where = f"built-in study {ref!r}"
    else:
        raise StudyError(f"{ref}: not a study file or a built-in study; built-in studies: "
                         f"{', '.join(builtin_studies())}")
    return parse_study(source, where)


def parse_study(source: str, where: str = "<study>") -> Study:
    """Validate a study's TOML text and expand it into cells."""
    try:
        raw = tomllib.loads(source)
    except tomllib.TOMLDecodeError as exc:
        raise StudyError(f"{where}: malformed TOML: {exc}") from None
    try:
        spec = StudyFile.model_validate(raw)
    except ValidationError as exc:
        raise StudyError(f"{where}: {_pydantic_message(exc)}") from None
    _check_keys(spec, where)
    cells = _expand(spec, where)
    return Study(spec, source, where, cells)


def _pydantic_message(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(x) for x in err["loc"]) or "study"
    if err["type"] == "extra_forbidden":
        allowed = ", ".join(StudyFile.model_fields)
        return f"unknown key {loc!r}; allowed top-level keys: {allowed}"
    return f"key {loc!r}: {err['msg']} (got {err.get('input')!r})"


def _check_keys(spec: StudyFile, where: str) -> None:
    sources = [("fixed", spec.fixed), ("factors", spec.factors)]
    sources += [(f"exclude[{i}]", rule) for i, rule in enumerate(spec.exclude)]
    sources += [(f"include[{i}]", rule) for i, rule in enumerate(spec.include)]
    allowed = tier_keys(spec.tier)
    for table, entries in sources:
        for key in entries:
            if key not in allowed:
                raise StudyError(f"{where}: [{table}] unknown key {key!r} for tier {spec.tier!r}; allowed: "
                                 f"{', '.join(allowed)}")
    for key, values in spec.factors.items():
        if not values:
            raise StudyError(f"{where}: [factors] {key!r} is an empty list; a factor needs at least one value")
        if key in spec.fixed:
            raise StudyError(f"{where}: {key!r} is both fixed and a factor; keep one")


def _matches(params: dict[str, Any], rule: dict[str, Any]) -> bool:
    """A rule matches when every key has its value (a list in a rule means any of its values)."""
    for key, want in rule.items():
        options = want if isinstance(want, list) else [want]
        if params.get(key) not in options:
            return False
    return True


def _expand(spec: StudyFile, where: str) -> list[Cell]:
    for key, value in spec.fixed.items():
        if isinstance(value, list | dict):
            raise StudyError(f"{where}: [fixed] {key!r} = {value!r}: a fixed value is a single value; "
                             "for several values use [factors]")
    for i, rule in enumerate(spec.include):
        for key, value in rule.items():
            if value == []:
                raise StudyError(f"{where}: include[{i}] {key!r} is an empty list; allowed: a value or a "
                                 "non-empty list")
    keys = list(spec.factors)
    points = [dict(spec.fixed, **dict(zip(keys, combo, strict=True)))
              for combo in itertools.product(*(spec.factors[k] for k in keys))]
    for rule in spec.include:
        lists = {k: v if isinstance(v, list) else [v] for k, v in rule.items()}
        for combo in itertools.product(*lists.values()):
            points.append(dict(spec.fixed, **dict(zip(lists, combo, strict=True))))
    resolved = [(p, *_resolve(p, where, spec.tier)) for p in points]
    used = [False] * len(spec.exclude)
    kept = []
    for given, params, sections, variant in resolved:
        hits = [i for i, rule in enumerate(spec.exclude) if _matches(params, rule)]
        for i in hits:
            used[i] = True
        if not hits:
            kept.append((given, params, sections, variant))
    for i, rule in enumerate(spec.exclude):
        if not used[i]:
            raise StudyError(f"{where}: exclude[{i}] {rule!r} matches no cell; check its keys and values")
    if not kept:
        raise StudyError(f"{where}: the grid is empty (every combination is excluded)")
    cells: dict[str, Cell] = {}
    for given, params, sections, variant in kept:
        for seed in spec.seed_list:
            cell = _cell(spec.tier, seed, variant, params, given, sections)
            cells.setdefault(cell.key(), cell)  # two spellings of one cell run once
    return list(cells.values())


def _cell(tier: str, seed: int, variant: Variant, params: dict[str, Any], given: dict[str, Any],
          sections: dict[str, Any]) -> Cell:
    """A typed cell: the tier's section models (validated per ``TIERS``) become its fields."""
    kind = TabularCell if tier == "tabular" else NetworkCell
    return kind(tier=tier, seed=seed, variant=variant, params=params, given=given, **sections)


def _resolve(point: dict[str, Any], where: str,
             tier: str = "tabular") -> tuple[dict[str, Any], dict[str, BaseModel], Variant]:
    """Fill in defaults and validate every section of one grid point: its flat parameters, typed sections
    and variant (built once, shared by its seeds). Only what needs no engine and no file is checked here
    (``study.run.checks`` does the rest)."""
    where_point = f"{where}: cell {canonical_json(point)}"
    resolved: dict[str, Any] = {k: v for k, v in point.items() if KEY_SECTION[k] == "variant"}
    try:
        variant = build_variant(resolved)
    except VariantError as exc:
        raise StudyError(f"{where_point}: {exc}") from None
    sections: dict[str, BaseModel] = {}
    for section in SECTION_NAMES:
        model = TIERS[tier][section]
        given = {k: v for k, v in point.items() if KEY_SECTION[k] == section}
        try:
            sections[section] = model.model_validate(given)
        except ValidationError as exc:
            err = exc.errors()[0]
            key = ".".join(str(x) for x in err["loc"])
            if not key:  # a check across keys (model validator): its message says which
                raise StudyError(f"{where_point}: {err['msg'].removeprefix('Value error, ')}") from None
            raise StudyError(f"{where_point}: key {key!r}: {err['msg']} (got {err.get('input')!r})") from None
        resolved.update(sections[section].model_dump())
    if tier != "tabular":
        _check_network(resolved, where_point, tier)
        # the tier's convention made explicit: a cell records the protocol it is played by
        resolved["sticky"] = STICKY[tier] if resolved["sticky"] is None else resolved["sticky"]
        sections["env"] = sections["env"].model_copy(update={"sticky": resolved["sticky"]})
    elif resolved["student"] == "linear":
        raise StudyError(f"{where_point}: key 'student': 'linear' needs state features, which only the "
                         "two-step toy has; allowed for grid studies: table")
    return resolved, sections, variant


def _check_network(resolved: dict[str, Any], where: str, tier: str) -> None:
    """One game or a multi-task set of games, and settings that fit together."""
    games = [g for g in resolved["games"].split("+") if g]
    if bool(games) == bool(resolved["game"]):
        raise StudyError(f"{where}: set either 'game' (one game) or 'games' (a multi-task student, e.g. "
                         "\"breakout+asterix\"), not both and not neither")
    if games and resolved["online_steps"]:
        raise StudyError(f"{where}: key 'online_steps': online distillation is for single-game cells; allowed "
                         "with 'games': 0")
    if games and resolved["teacher_file"]:
        raise StudyError(f"{where}: key 'teacher_file': a multi-task cell uses each game's teacher at "
                         f"{default_teacher_file(tier, '<game>')}; leave teacher_file unset")
    if len(set(games)) != len(games) or len(games) == 1:
        raise StudyError(f"{where}: key 'games': {resolved['games']!r}; allowed: two or more different games "
                         "joined by '+'")

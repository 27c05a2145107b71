"""Study files: validate a TOML study, expand its factorial grid into cells with stable ids.

Keys and their sections are in ``study.spec.schema``. ``[fixed] sets a key for every cell,
``[factors]`` gives a list per key (the grid is their full product),
``exclude`` drops the combinations that match, ``include`` adds combinations.
Everything is checked before anything runs; a bad value raises
:class:`StudyError` naming the file, the key, the value and what is allowed.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

import variants as V
from study.spec.schema import (
    CONTROL_KEYS,
    KEY_SECTION,
    TIERS,
    StudyError,
    StudyFile,
    tier_keys,
)
from variants import VariantError

# ---- cells ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One point of the grid and one seed: everything needed to run it, and its stable id."""

    params: dict[str, Any]
    seed: int
    tier: str = "tabular"
    id: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", cell_id(self.identity(), self.seed))

    def variant(self) -> V.Variant:
        return build_variant(self.params)

    def identity(self) -> dict[str, Any]:
        """What the cell computes: the resolved variant (not how the study spelled it) and every other
        resolved parameter. Two spellings of one recipe (a preset, or its parts; 1 or 1.0) are one cell."""
        parts = self.variant().to_dict()
        parts.pop("name")
        identity = {"variant": parts, **{k: v for k, v in self.params.items() if KEY_SECTION[k] != "variant"}}
        if identity.get("student_fraction") == 1.0:  # the whole teacher's size is width 1 (width_for_fraction)
            identity.update(student_fraction=None, width=1.0)
        if self.tier != "tabular":  # what the teacher files hold, not only their names
            identity.update(tier=self.tier, teacher_sha256=[file_digest(f) for f in self.teacher_files()])
        return identity

    def teacher_files(self) -> list[str]:
        """A network cell's teacher files, one per game."""
        games = [g for g in self.params.get("games", "").split("+") if g]
        if not games:
            return [self.params["teacher_file"] or f"results/teachers/{self.tier}-{self.params['game']}.pt"]
        return [f"results/teachers/{self.tier}-{g}.pt" for g in games]

    def config(self) -> dict[str, Any]:
        """The study's parameters, the identity the id hashes, and the seed."""
        return {"params": self.params, "identity": self.identity(), "seed": self.seed}


@functools.cache
def _digest(path: str, inode: int, ctime_ns: int, mtime_ns: int, size: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def file_digest(path: str) -> str:
    """A file's content hash, cached while the file is unchanged (its inode and change time, which copying
    with preserved times does not restore, are part of the key)."""
    st = Path(path).stat()
    return _digest(str(Path(path).resolve()), st.st_ino, st.st_ctime_ns, st.st_mtime_ns, st.st_size)


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def cell_id(identity: dict[str, Any], seed: int) -> str:
    """A hash of the cell's identity and seed: the same on every run and machine."""
    return hashlib.sha256(canonical_json({"identity": identity, "seed": seed}).encode()).hexdigest()[:16]


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


# ---- loading and expansion -----------------------------------------------------------------------


@dataclass
class Study:
    """A validated study: its file, source text and expanded cells."""

    spec: StudyFile
    source: str
    path: str
    cells: list[Cell]

    @property
    def name(self) -> str:
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
    resolved = [_resolve(p, where, spec.tier) for p in points]
    used = [False] * len(spec.exclude)
    kept = []
    for params in resolved:
        hits = [i for i, rule in enumerate(spec.exclude) if _matches(params, rule)]
        for i in hits:
            used[i] = True
        if not hits:
            kept.append(params)
    for i, rule in enumerate(spec.exclude):
        if not used[i]:
            raise StudyError(f"{where}: exclude[{i}] {rule!r} matches no cell; check its keys and values")
    if not kept:
        raise StudyError(f"{where}: the grid is empty (every combination is excluded)")
    cells: dict[str, Cell] = {}
    for params in kept:
        for seed in spec.seed_list:
            cell = Cell(params, seed, spec.tier)
            cells.setdefault(cell.id, cell)  # two spellings of one cell run once
    return list(cells.values())


def _resolve(point: dict[str, Any], where: str, tier: str = "tabular") -> dict[str, Any]:
    """Fill in defaults and validate every section of one grid point."""
    where_point = f"{where}: cell {canonical_json(point)}"
    resolved: dict[str, Any] = {k: v for k, v in point.items() if KEY_SECTION[k] == "variant"}
    try:
        variant = build_variant(resolved)
    except VariantError as exc:
        raise StudyError(f"{where_point}: {exc}") from None
    for section, model in TIERS[tier].items():
        given = {k: v for k, v in point.items() if KEY_SECTION[k] == section}
        try:
            resolved.update(model.model_validate(given).model_dump())
        except ValidationError as exc:
            err = exc.errors()[0]
            key = ".".join(str(x) for x in err["loc"])
            raise StudyError(f"{where_point}: key {key!r}: {err['msg']} (got {err.get('input')!r})") from None
    if tier != "tabular":
        return _check_network(resolved, where_point, tier)
    if resolved["student"] == "linear":
        raise StudyError(f"{where_point}: key 'student': 'linear' needs state features, which only the "
                         "two-step toy has; allowed for grid studies: table")
    from study.run.tabular import build_mdp  # cross-field limits: let the generator check one MDP
    from study.tabular.exact import check_exact
    from study.tabular.mdp import MDPError

    try:
        if resolved["mode"] == "exact":
            check_exact(variant)
        build_mdp({**resolved, "mdps": 1})
    except (MDPError, VariantError) as exc:
        raise StudyError(f"{where_point}: {exc}") from None
    return resolved


def _check_network(resolved: dict[str, Any], where: str, tier: str) -> dict[str, Any]:
    """The games exist, their teacher files are there and fit them, and the variant runs on networks."""
    from study.network.envs import EnvError, EnvSpec
    from study.network.loop import check_variant
    from study.network.teacher import Teacher, TeacherError

    games = [g for g in resolved["games"].split("+") if g]
    if bool(games) == bool(resolved["game"]):
        raise StudyError(f"{where}: set either 'game' (one game) or 'games' (a multi-task student, e.g. "
                         "\"breakout+asterix\"), not both and not neither")
    if games and resolved["online_steps"]:
        raise StudyError(f"{where}: key 'online_steps': online distillation is for single-game cells; allowed "
                         "with 'games': 0")
    if games and resolved["teacher_file"]:
        raise StudyError(f"{where}: key 'teacher_file': a multi-task cell uses each game's teacher at "
                         f"results/teachers/{tier}-<game>.pt; leave teacher_file unset")
    if len(set(games)) != len(games) or len(games) == 1:
        raise StudyError(f"{where}: key 'games': {resolved['games']!r}; allowed: two or more different games "
                         "joined by '+'")
    try:
        specs = [EnvSpec(tier, g, resolved["sticky"], resolved["noop_max"], resolved["frame_cap"])
                 for g in games or [resolved["game"]]]
        check_variant(build_variant(resolved))
    except (EnvError, VariantError, ValueError) as exc:
        raise StudyError(f"{where}: {exc}") from None
    for spec in specs:  # an unset teacher_file stays "" (the default path), so it is no factor of its own
        path = resolved["teacher_file"] or f"results/teachers/{tier}-{spec.game}.pt"
        try:
            teacher = Teacher.load(Path(path), spec)
        except TeacherError as exc:
            raise StudyError(f"{where}: key 'teacher_file': {exc}") from None
        if resolved["online_steps"] and teacher.meta.algo != "dqn":
            raise StudyError(f"{where}: key 'online_steps': online teachers learn with DQN, so the teacher file "
                             f"(which sets their settings and the score scale) must be a DQN teacher; {path} is "
                             f"{teacher.meta.algo}")
    resolved["sticky"] = specs[0].sticky
    return resolved

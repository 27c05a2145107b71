"""The import rules of the README's architecture section, checked on the source: every import, at module
level or inside a function, between the project's parts follows an allowed arrow, and no modules import
each other in a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("variants", "study", "analysis")

#: each part and the parts it may import (itself always)
ALLOWED: dict[str, set[str]] = {
    "study": set(),  # the bare package: its __init__ imports nothing
    "variants": set(),
    "study.spec": {"variants"},
    "study.store.format": set(),
    "study.store": {"study.store.format", "study.spec", "variants"},
    "study.tabular": {"variants"},
    "study.network": {"variants", "study.spec", "study.store.format"},
    "study.run": {"variants", "study.spec", "study.store", "study.store.format", "study.tabular", "study.network"},
    "study.bench": {"variants", "study.spec", "study.store", "study.store.format", "study.tabular", "study.network",
                    "study.run"},
    "study.cli": {"variants", "study.spec", "study.store", "study.store.format", "study.tabular", "study.network",
                  "study.run", "study.bench", "analysis"},
    "analysis": {"study.store.format"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def part_of(module: str) -> str:
    """The most specific part a module belongs to (``study.store.format`` before ``study.store``)."""
    for part in sorted(ALLOWED, key=len, reverse=True):
        if module == part or module.startswith(part + "."):
            return part
    return module  # e.g. the bare ``study`` package


def project_imports(path: Path) -> set[str]:
    """Every project name a file imports, wherever the import statement stands: ``import a.b`` gives
    ``a.b``; ``from a.b import c`` gives ``a.b.c`` (a module, or a name of ``a.b``, resolved by ``graph``)."""
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            found.add(f"<relative import in {path.name}: write it absolute, so the rules can see it>")
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "__import__"):
            found.add(f"<dynamic import in {path.name}: write an import statement, so the rules can see it>")
    return {name for name in found if name.split(".")[0] in PACKAGES or name.startswith("<")}


def resolve(name: str, modules: set[str]) -> set[str]:
    """The modules an imported name executes: the longest module prefix of the name and every package
    above it (their ``__init__``)."""
    parts = name.split(".")
    prefixes = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return {p for p in prefixes if p in modules}


def graph() -> dict[str, set[str]]:
    """Module -> the project modules importing it executes."""
    files = {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    modules = set(files)
    edges = {}
    for name, path in files.items():
        names = project_imports(path)
        targets = {m for m in names if m.startswith("<")}  # unresolvable imports stay visible as such
        targets |= set().union(*(resolve(m, modules) for m in names if not m.startswith("<")))
        edges[name] = {t for t in targets if t != name and not name.startswith(t + ".")}  # own packages
    return edges


def inert(edges: dict[str, set[str]]) -> set[str]:
    """Packages whose ``__init__`` imports nothing of the project: passing through them reaches nothing."""
    packages = {module_name(p) for pkg in PACKAGES for p in (ROOT / pkg).rglob("__init__.py")}
    return {m for m in packages if not edges.get(m)}


def violations(edges: dict[str, set[str]], passive: frozenset[str] = frozenset()) -> list[str]:
    """Imports that cross from one part into another the rules do not allow (``passive``: packages whose
    ``__init__`` runs nothing, which any part may pass through)."""
    bad = []
    for module, imports in edges.items():
        source = part_of(module)
        if source not in ALLOWED:
            bad.append(f"{module}: belongs to no part of the rules; add it to a part")
            continue
        for target in imports - passive:
            dest = part_of(target)
            if target.startswith("<"):
                bad.append(f"{module}: {target}")
            elif dest != source and dest not in ALLOWED[source]:
                bad.append(f"{module} -> {target} ({source} may not import {dest})")
    return sorted(bad)


def test_every_import_follows_an_allowed_arrow():
    edges = graph()
    bad = violations(edges, frozenset(inert(edges)))
    assert not bad, "\n".join(bad)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_modules_import_each_other_in_a_cycle():
    found = cycles(graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_parts_form_no_cycle_either():
    parts: dict[str, set[str]] = {}
    for module, imports in graph().items():
        parts.setdefault(part_of(module), set()).update(part_of(t) for t in imports if part_of(t) != part_of(module))
    assert not cycles(parts)


@pytest.mark.parametrize(("edges", "expect"),
                         [({"a": {"b"}, "b": {"a"}}, [["a", "b"]]), ({"a": {"b"}, "b": set()}, [])])
def test_the_cycle_finder_finds_cycles(edges, expect):
    assert cycles(edges) == expect


def test_a_lazy_forbidden_import_would_be_caught(tmp_path):
    """The checker itself: an import inside a function counts, and analysis reaching for the parser is an
    arrow the rules forbid."""
    source = tmp_path / "load.py"
    source.write_text("def f():\n    from study.spec.grid import parse_study\n    return parse_study\n")
    imports = project_imports(source)
    assert imports == {"study.spec.grid.parse_study"}
    assert resolve("study.spec.grid.parse_study", {"study", "study.spec", "study.spec.grid"}) == {
        "study", "study.spec", "study.spec.grid"}
    assert violations({"analysis.load": {"study.spec.grid"}}) == [
        "analysis.load -> study.spec.grid (analysis may not import study.spec)"]
    assert violations({"study.run.runner": {"study.store.format"}}) == []
    # a module in no listed sub-part is the bare package's: it may import nothing of the project
    assert violations({"study.foo": {"analysis.load"}}) == [
        "study.foo -> analysis.load (study may not import analysis)"]
    source.write_text("from ..spec import grid\nimport importlib\nimportlib.import_module('study.spec')\n")
    assert len([name for name in project_imports(source) if name.startswith("<")]) == 2


def test_a_tier_without_its_extra_is_refused_with_the_install_to_do(monkeypatch):
    import importlib.util

    from study.run.checks import check_study
    from study.spec import StudyError, parse_study

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "minatar" else real(name, *a))
    study = parse_study('name = "x"\ntier = "minatar"\n[fixed]\ngame = "breakout"\n', "x.toml")
    with pytest.raises(StudyError, match=r"needs minatar.*\[atari\] extra"):
        check_study(study)


@pytest.mark.slow
def test_the_tabular_tier_and_the_analysis_run_without_the_network_extras(tmp_path):
    """What the [atari] and [ray] extras install is never imported by a tabular study, its checks, its run
    or its analysis, so the base install serves them (checked in a fresh interpreter)."""
    import subprocess
    import sys

    script = f"""
import sys
from pathlib import Path
from study.cli import app
from study.run.checks import check_study
from study.run.runner import run_study
from study.spec import parse_study
from analysis.analyze import Options, analyze
text = 'name = "t"\\nseeds = 1\\n[fixed]\\nmdps = 2\\nsize = 5\\niterations = 4\\neval_every = 2\\n'
study = check_study(parse_study(text))
assert not run_study(study, Path({str(tmp_path / "r")!r}), workers=1).failed
analyze(Path({str(tmp_path / "r")!r}), None, Options(reps=200, permutations=199))
print(sorted(m for m in ("gymnasium", "ale_py", "minatar", "ray", "cv2") if m in sys.modules))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"

"""Same study, two revisions, same numbers? Runs a study with the code of a git revision and with the working
tree, in this environment and on this machine, and compares every cell both ran: the same cell ids and,
bit for bit, the same final metrics and reference scores. Numbers can differ between CPU types (rounding
in torch's kernels), so a refactoring is checked against the code before it on one machine.

    python tests/compare_revisions.py 32e02c1 --study demo --study czarnecki_fig5
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(tree: Path, study: str, out: Path, workers: int) -> dict[str, dict]:
    """Run ``study`` with the code in ``tree`` (from that folder, so its teacher files are the ones used);
    each finished cell's summary by cell id."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [sys.executable, "-m", "study.cli", "grid", "run", study, "--out", str(out), "--workers", str(workers)]
    subprocess.run(cmd, cwd=tree, env=env, check=True, stdout=subprocess.DEVNULL)
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(out.glob("*/summary.json"))}


def compare(old: dict[str, dict], new: dict[str, dict]) -> list[str]:
    """Differences: cells only one side has, and cells whose final metrics or references differ."""
    problems = [f"cell {c} only in the old run" for c in sorted(old.keys() - new.keys())]
    problems += [f"cell {c} only in the new run" for c in sorted(new.keys() - old.keys())]
    for cell in sorted(old.keys() & new.keys()):
        for key in ("final", "references", "teacher_return", "uniform_return", "step"):
            if json.dumps(old[cell].get(key)) != json.dumps(new[cell].get(key)):
                problems.append(f"cell {cell}: {key} differs: {old[cell].get(key)} != {new[cell].get(key)}")
    return problems


def main() -> int:
    """Compare each study; exit status 1 when anything differs."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("revision", help="the git revision to compare the working tree with")
    parser.add_argument("--study", action="append", default=None, help="a built-in study (repeatable)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    studies = args.study or ["demo"]
    failed = False
    with tempfile.TemporaryDirectory(prefix="compare-") as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", str(base), args.revision], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            for path in (ROOT / "results" / "teachers").glob("*.pt"):  # the same teachers on both sides
                shutil.copy(path, base / "results" / "teachers" / path.name)
            for study in studies:
                old = run(base, study, Path(tmp) / f"old-{study}", args.workers)
                new = run(ROOT, study, Path(tmp) / f"new-{study}", args.workers)
                problems = compare(old, new)
                print(f"{study}: {len(old)} cells at {args.revision}, {len(new)} now: "
                      + ("the same ids and numbers" if not problems else f"{len(problems)} difference(s)"))
                for line in problems[:20]:
                    print("  " + line)
                failed |= bool(problems)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, capture_output=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""`distill variants`: the catalogue of named variants as a table or as JSON."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.table import Table

from study.cli.common import cli_errors, out


@cli_errors
def variants_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print the catalogue as JSON.")] = False,
) -> None:
    """List the named variants: control, loss, pseudo-reward, gradient field, reference."""
    from variants import CATALOGUE

    rows = [entry.to_dict() for entry in CATALOGUE.values()]
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = Table(title="distillation variants")
    for col in ("name", "control", "loss", "reward", "gradient field", "reference"):
        table.add_column(col, overflow="fold")
    for r in rows:
        reward = r["reward"] + (" +R" if r["env_reward"] else "") + (" +V cond" if r["v_cond"] else "")
        table.add_row(r["name"], r["control"], r["loss"], reward, "yes" if r["gradient_field"] else "no",
                      r["reference"])
    out.print(table)

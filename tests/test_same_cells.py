"""Refactoring changes nothing a result depends on: every built-in study whose teachers are committed
expands to exactly the cell ids it had before (tests/data/cell_ids.json; an id hashes a cell's resolved
variant, parameters, seed and teacher bytes). A study whose definition changes on purpose gets its new ids
recorded with the change (czarnecki_fig3 on the paper's noisy grid worlds and czarnecki_fig3_weak at the paper's
scale, czarnecki_fig4 with costly extra actions, czarnecki_fig5 on the paper's noisy grid worlds, czarnecki_fig6
with the arms and scale of the paper, rusu_pong with the trained Pong teacher, its protocol and a learning rate
at which the students leave the early plateau, and rusu_breakout, new with its teacher); a study renamed keeps
its ids (czarnecki_fig3_noiseless, czarnecki_fig4_designs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from study.run.checks import check_study
from study.spec import load_study

BEFORE = json.loads((Path(__file__).parent / "data" / "cell_ids.json").read_text())


@pytest.mark.parametrize("name", sorted(BEFORE))
def test_a_builtin_study_has_the_cell_ids_it_had(name):
    assert [c.id for c in check_study(load_study(name)).cells] == BEFORE[name]

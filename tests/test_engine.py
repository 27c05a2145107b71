"""The batched engine: a cell's numbers do not depend on its batch, its neighbours or their order."""

from __future__ import annotations

import pytest
import torch

import variants as V
from study.tabular import generators as gen
from study.tabular import teachers as T
from study.tabular.engine import Plan, TrainConfig, distill
from study.tabular.mdp import MDPError


@pytest.fixture(scope="module")
def setup():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    mdp = gen.gridworld(4, size=6, seed=1)  # float32, as the demo runs
    teacher = T.value_iteration(mdp)
    variants = [V.variant("teacher_v_reward", tau=0.1, name="a"), V.variant("on_policy_distill_r_vcond",
                                                                            tau=0.1, name="b")]
    config = TrainConfig(mode="sampled", iterations=12, lr=0.05, optimizer="adam", eval_every=4, max_steps=100)
    yield mdp, teacher, variants, config
    torch.set_num_threads(threads)


def _column(curves, mdp: int, variant: int, seed: int) -> dict[str, torch.Tensor]:
    plan = curves.plan
    i = ((plan.mdp_index == mdp) & (plan.variant_index == variant) & (plan.seed == seed)).nonzero().item()
    return {k: v[:, i] for k, v in curves.values.items()}


def test_float32_cell_is_bitwise_the_same_alone_in_a_batch_and_in_any_variant_order(setup):
    mdp, teacher, variants, config = setup
    full = distill(mdp, teacher, variants, Plan.product(4, 2, [0, 1]), config)
    alone = distill(mdp, teacher, variants[1:], Plan(torch.tensor([2]), torch.tensor([0]), torch.tensor([1])),
                    config)
    swapped = distill(mdp, teacher, variants[::-1], Plan.product(4, 2, [0, 1]), config)
    ref = _column(full, 2, 1, 1)
    for other in (_column(alone, 2, 0, 1), _column(swapped, 2, 0, 1)):
        for name, values in ref.items():
            assert torch.equal(values, other[name]), name
    # and the cell is not a copy of its neighbour
    assert not torch.equal(ref["kl_teacher"], _column(full, 2, 1, 0)["kl_teacher"])


def test_plan_that_names_a_missing_variant_or_mdp_is_refused(setup):
    mdp, teacher, variants, config = setup
    with pytest.raises(MDPError, match="variant_index"):
        distill(mdp, teacher, variants[:1], Plan.product(4, 2, [0]), config)
    with pytest.raises(MDPError, match="mdp_index"):
        distill(mdp, teacher, variants, Plan(torch.tensor([4]), torch.tensor([0]), torch.tensor([0])), config)
    with pytest.raises(MDPError, match="teacher_out"):
        distill(mdp, teacher[:2], variants, Plan.product(4, 2, [0]), config)
    with pytest.raises(MDPError, match="seed"):
        Plan.product(4, 2, [])


def test_normalised_return_is_zero_for_uniform_and_one_for_the_teacher(setup):
    mdp, teacher, _, _ = setup
    v = V.variant("on_policy_distill", tau=0.1)
    curves = distill(mdp.to(torch.float64), teacher.double(), [v], Plan.product(4, 1, [0]),
                     TrainConfig(mode="exact", iterations=1, lr=1e-9, eval_every=1))
    torch.testing.assert_close(curves.normalised_return()[0], torch.zeros(4, dtype=torch.float64), atol=1e-9,
                               rtol=0)

"""The batched engine: a cell's numbers do not depend on its batch, its neighbours or their order."""

from __future__ import annotations

import pytest
import torch

import variants as V
from study.tabular import generators as gen
from study.tabular import metrics
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


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_compiled_engine_takes_the_previous_code_paths_steps(optimizer):
    """The compiled rollout, the regrouped surrogate, sparse SGD and banded solves against the previous code
    path (tensor rollouts, the per-step surrogate, dense steps and solves) on the same keys: the same
    students after a few iterations for variants with and without returns, critics, +V cond and control
    by teacher, student and uniform, and the same metrics."""
    mdp = gen.gridworld(3, size=7, noise=0.1, seed=2)
    teacher = T.value_iteration(mdp)
    variants = [
        V.variant("teacher_distill", tau=0.1),
        V.variant("on_policy_distill", tau=0.1),
        V.variant("n_distill", tau=0.1),
        V.variant("expected_entropy_regularised", tau=0.1),
        V.variant("entropy_regularised", tau=0.1, n_step=2, critic="learned"),
        V.variant("on_policy_distill", tau=0.1, env_reward=True, v_cond=True),
        V.variant("teacher_distill", tau=0.1, control=V.Control(kind="uniform")),
    ]
    plan = Plan.product(3, len(variants), [0, 1])
    config = TrainConfig(mode="sampled", iterations=4, lr=0.05, optimizer=optimizer, eval_every=2, max_steps=40,
                         episodes=2)
    ours = distill(mdp, teacher, variants, plan, config)
    before = distill(mdp, teacher, variants, plan, config, reference=True)
    torch.testing.assert_close(ours.final_logits, before.final_logits, rtol=1e-4, atol=1e-5)
    for name, values in before.values.items():
        if name != "agreement":  # an argmax: Adam's first steps leave exact ties that rounding breaks either way
            torch.testing.assert_close(ours.values[name], values, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ours.teacher_return, before.teacher_return, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ours.extras["critic"], before.extras["critic"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("device", ["cpu", *(["cuda"] if torch.cuda.is_available() else [])])
def test_the_previous_code_path_runs_wherever_its_inputs_are(setup, device):
    """`bench tabular --study --device` moves the MDPs, teachers and plan to a device and runs the previous
    code path there under that default device: the same students and metrics as on the CPU."""
    mdp, teacher, variants, config = setup
    plan = Plan.product(mdp.n_mdps, len(variants), [0, 1])
    on_cpu = distill(mdp, teacher, variants, plan, config, reference=True)
    moved = mdp.on(device)
    assert moved is not mdp and moved.succ.device.type == device and plan.on(device).seed.device.type == device
    with torch.device(device):
        there = distill(moved, teacher.to(device), variants, plan.on(device), config, reference=True)
    torch.testing.assert_close(there.final_logits.cpu(), on_cpu.final_logits, rtol=1e-4, atol=1e-5)
    for name, values in on_cpu.values.items():
        torch.testing.assert_close(there.values[name].cpu(), values, rtol=1e-4, atol=1e-5)


def test_log_spaced_evaluations_keep_the_start_of_a_long_curve(setup):
    """eval_log adds log-spaced evaluations within the first interval; the regular ones and the end stay."""
    config = TrainConfig(mode="sampled", iterations=1000, eval_every=500, eval_log=6, max_steps=30)
    assert sorted(config.eval_at()) == [0, 1, 3, 8, 22, 63, 177, 500]
    plain = TrainConfig(mode="sampled", iterations=1000, eval_every=500, max_steps=30)
    assert sorted(plain.eval_at()) == [0, 500]
    with pytest.raises(MDPError, match="eval_log"):
        TrainConfig(eval_log=-1)
    mdp, teacher = setup[0], setup[1]
    curves = distill(mdp, teacher, [V.variant("on_policy_distill", tau=0.1)], Plan.product(mdp.n_mdps, 1, [0]),
                     TrainConfig(mode="sampled", iterations=40, eval_every=20, eval_log=3, max_steps=30))
    assert curves.steps == [0, 1, 3, 7, 20, 40]


def test_a_key_added_later_changes_no_id_until_it_is_set():
    from study.spec import parse_study

    base = 'name = "x"\ntier = "tabular"\nseeds = 1\n[fixed]\ngenerator = "bandit"\nmdps = 1\nn_actions = 2\n'
    plain = parse_study(base).cells[0]
    zero = parse_study(base + "eval_log = 0\n").cells[0]
    set_ = parse_study(base + "eval_log = 5\n").cells[0]
    assert plain.id == zero.id != set_.id
    assert parse_study(base + 'extra_actions = "repeat"\n').cells[0].id == plain.id
    assert parse_study(base + 'extra_actions = "stay"\n').cells[0].id != plain.id


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_resumed_run_gives_the_uninterrupted_runs_numbers(optimizer):
    """Stopped after its checkpoint and resumed from it, a run ends with the same students, critics and
    curves, bit for bit (every draw is keyed by its iteration)."""
    mdp = gen.gridworld(3, size=6, seed=4)
    teacher = T.value_iteration(mdp)
    variants = [V.variant("on_policy_distill", tau=0.1),
                V.variant("entropy_regularised", tau=0.1, n_step=2, critic="learned")]
    plan = Plan.product(3, 2, [0])
    config = TrainConfig(mode="sampled", iterations=12, lr=0.05, optimizer=optimizer, eval_every=3, max_steps=40)
    whole = distill(mdp, teacher, variants, plan, config)

    saved: list[dict] = []

    def stop_at_7(done: int) -> None:
        if done == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        distill(mdp, teacher, variants, plan, config, progress=stop_at_7, checkpoint=saved.append,
                checkpoint_seconds=0.0)
    state = saved[-1]
    assert state["iteration"] == 6
    resumed = distill(mdp, teacher, variants, plan, config, resume=state)
    assert resumed.steps == whole.steps
    assert torch.equal(resumed.final_logits, whole.final_logits)
    assert torch.equal(resumed.extras["critic"], whole.extras["critic"])
    for name, values in whole.values.items():
        assert torch.equal(resumed.values[name], values), name
    torch.testing.assert_close(resumed.extras["episode_length"], whole.extras["episode_length"], rtol=0, atol=0,
                               equal_nan=True)


def test_evaluation_a_chunk_of_instances_at_a_time_gives_the_same_metrics(setup, monkeypatch):
    mdp, teacher, variants, config = setup
    whole = distill(mdp, teacher, variants, Plan.product(4, 2, [0]), config)
    monkeypatch.setattr(metrics, "CHUNK_ENTRIES", 3 * mdp.succ[0].numel())  # chunks of 3, the last one short
    chunked = distill(mdp, teacher, variants, Plan.product(4, 2, [0]), config)
    for name, values in whole.values.items():
        assert torch.equal(chunked.values[name], values), name

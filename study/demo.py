"""The built-in tabular comparison behind `distill demo`."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pandas as pd
import torch

import variants as V
from analysis.plots import learning_curves
from analysis.stats import bootstrap_mean_ci
from study.grid import load_study
from study.output import check_replaceable, replace_dir, staging_dir
from study.tabular import generators as gen
from study.tabular import teachers as T
from study.tabular.engine import Plan, TrainConfig, distill
from study.tabular.frames import curves_frame

SUMMARY_METRICS = ("return_norm", "kl_student", "kl_teacher", "kl_uniform", "agreement")


@dataclass(frozen=True)
class DemoConfig:
    """Grid worlds x seeds x variants, sampled episodes, one batched program (see :func:`demo_config`)."""

    mdps: int
    seeds: tuple[int, ...]
    size: int
    tau: float
    iterations: int
    eval_every: int
    lr: float
    optimizer: str
    max_steps: int
    mdp_seed: int
    variants: tuple[str, ...]


def demo_config(**overrides: object) -> DemoConfig:
    """The demo as the built-in ``demo`` study defines it, with optional overrides."""
    study = load_study("demo")
    p = study.cells[0].params
    config = DemoConfig(mdps=p["mdps"], seeds=tuple(study.spec.seed_list), size=p["size"], tau=p["tau"],
                        iterations=p["iterations"], eval_every=p["eval_every"], lr=p["lr"],
                        optimizer=p["optimizer"], max_steps=p["max_steps"], mdp_seed=p["mdp_seed"],
                        variants=tuple(study.spec.factors["variant"]))
    return replace(config, **overrides)


def summarise(frame: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """Final metrics per variant: mean over MDPs (seeds averaged first) with a 95% bootstrap CI."""
    last = frame[frame["step"] == frame["step"].max()]
    rows = []
    for name in names:
        row: dict[str, object] = {"variant": name}
        sub = last[last["variant"] == name]
        for metric in SUMMARY_METRICS:
            per_mdp = sub[sub["metric"] == metric].groupby("mdp")["value"].mean().to_numpy()
            lo, hi = bootstrap_mean_ci(per_mdp)
            row[metric] = per_mdp.mean()
            row[f"{metric}_lo"] = lo
            row[f"{metric}_hi"] = hi
        rows.append(row)
    return pd.DataFrame(rows)


def markdown_table(summary: pd.DataFrame) -> str:
    """The summary as a Markdown table, mean [95% CI]."""
    head = "| variant | " + " | ".join(SUMMARY_METRICS) + " |"
    sep = "|---|" + "---|" * len(SUMMARY_METRICS)
    lines = [head, sep]
    for _, r in summary.iterrows():
        cells = [f"{r[m]:.3g} [{r[m + '_lo']:.3g}, {r[m + '_hi']:.3g}]" for m in SUMMARY_METRICS]
        lines.append(f"| {r['variant']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_demo(out: Path, config: DemoConfig | None = None,
             progress: Callable[[int], None] | None = None) -> dict[str, Path]:
    """Run the comparison and write its table and figure into ``out`` atomically.

    ``out`` must be new or an earlier demo output; anything else is refused
    before any work starts.
    """
    config = config or demo_config()
    out = Path(out)
    check_replaceable(out, "demo")
    tmp = staging_dir(out)
    try:
        torch.set_num_threads(1)
        variants = [V.variant(name, tau=config.tau, name=name) for name in config.variants]
        mdp = gen.gridworld(config.mdps, size=config.size, seed=config.mdp_seed)
        teacher = T.value_iteration(mdp)
        plan = Plan.product(config.mdps, len(variants), config.seeds)
        train = TrainConfig(mode="sampled", iterations=config.iterations, lr=config.lr,
                            optimizer=config.optimizer, eval_every=config.eval_every, max_steps=config.max_steps)
        curves = distill(mdp, teacher, variants, plan, train, progress=progress)
        frame = curves_frame(curves, variants)
        summary = summarise(frame, list(config.variants))
        frame.to_parquet(tmp / "curves.parquet", index=False)
        summary.to_csv(tmp / "summary.csv", index=False)
        (tmp / "summary.md").write_text(markdown_table(summary))
        (tmp / "config.json").write_text(json.dumps(
            {"demo": asdict(config), "train": asdict(train), "mdp": mdp.info,
             "variants": [v.to_dict() for v in variants], "torch": torch.__version__}, indent=2))
        learning_curves(frame, ["return_norm", "kl_student", "kl_teacher", "kl_uniform"], tmp / "curves",
                        variants=list(config.variants),
                        title=f"{config.mdps} grid worlds ({config.size}x{config.size}) x "
                              f"{len(config.seeds)} seeds, teacher tau {config.tau:g}")
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {name: out / name for name in
            ("summary.md", "summary.csv", "curves.png", "curves.pdf", "curves.parquet", "config.json")}

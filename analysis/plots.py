"""Paper-ready figures with one colour per variant in every figure."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

METRIC_LABELS = {
    "kl_student": "KL(pi_T || pi_theta)\nstudent's states",
    "kl_teacher": "KL(pi_T || pi_theta)\nteacher's states",
    "kl_uniform": "KL(pi_T || pi_theta)\nuniform states",
    "return": "return",
    "return_norm": "normalised return\n(uniform 0, teacher 1)",
    "agreement": "argmax agreement",
}


def variant_palette(names: Sequence[str]) -> dict[str, tuple]:
    """A colour-blind-safe colour per variant, fixed by the variants' order."""
    colours = sns.color_palette("colorblind", max(len(names), 1))
    return {name: colours[i % len(colours)] for i, name in enumerate(names)}


def learning_curves(
    frame: pd.DataFrame,
    metrics: Sequence[str],
    path: Path,
    *,
    variants: Sequence[str] | None = None,
    log_metrics: Sequence[str] = ("kl_student", "kl_teacher", "kl_uniform"),
    title: str | None = None,
) -> list[Path]:
    """One panel per metric; mean with a 95% bootstrap band over MDPs and seeds.

    ``frame`` is tidy: columns variant, step, metric, value (one row per
    instance, step and metric). Writes ``path`` as PNG and PDF.
    """
    names = list(variants) if variants is not None else list(dict.fromkeys(frame["variant"]))
    palette = variant_palette(names)
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.6), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        data = frame[frame["metric"] == metric]
        sns.lineplot(data=data, x="step", y="value", hue="variant", hue_order=names, palette=palette,
                     errorbar=("ci", 95), n_boot=500, seed=0, ax=ax, legend=ax is axes[0][-1])
        ax.set_title(METRIC_LABELS.get(metric, metric), fontsize=10)
        ax.set_xlabel("iteration")
        ax.set_ylabel("")
        if metric in log_metrics:
            ax.set_yscale("log")
    legend = axes[0][-1].get_legend()
    if legend is not None:
        sns.move_legend(axes[0][-1], "upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, title=None)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    written = []
    for suffix in (".png", ".pdf"):
        out = path.with_suffix(suffix)
        fig.savefig(out, dpi=150, bbox_inches="tight")
        written.append(out)
    plt.close(fig)
    return written

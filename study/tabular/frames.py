"""Curves of the tabular engine as tidy pandas frames."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from study.tabular.engine import Curves
from variants import Variant


def curves_frame(curves: Curves, variants: Sequence[Variant]) -> pd.DataFrame:
    """One row per (instance, step, metric); adds ``return_norm`` (uniform 0, teacher 1)."""
    plan = curves.plan
    names = [v.name or v.describe() for v in variants]
    if len(set(names)) != len(names):
        raise ValueError(f"variant labels must be distinct to tell the rows apart; got {names}")
    values = dict(curves.values)
    values["return_norm"] = curves.normalised_return()
    n_steps, n_inst = values["return"].shape
    base = pd.DataFrame({
        "mdp": np.tile(plan.mdp_index.numpy(), n_steps),
        "variant": np.tile(np.array(names, dtype=object)[plan.variant_index.numpy()], n_steps),
        "seed": np.tile(plan.seed.numpy(), n_steps),
        "step": np.repeat(np.array(curves.steps), n_inst),
    })
    parts = []
    for metric, tensor in values.items():
        part = base.copy()
        part["metric"] = metric
        part["value"] = tensor.detach().double().numpy().reshape(-1)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)

"""The tabular tier: batched finite MDPs, exact and sampled distillation."""

"""Production calibration: the probability the model gave against the conversions that followed."""

from __future__ import annotations

import numpy as np
import pandas as pd


def calibration_table(outcomes: pd.DataFrame, bins: int = 10) -> pd.DataFrame:
    """Predicted against observed conversion per probability decile (1 = lowest), mature outcomes only.

    `outcomes` has probability, is_converted and is_mature (see `cohorts.snapshot_outcomes`). Columns:
    decile, accounts, conversions, mean_probability, observed_rate, min_probability, max_probability.
    """
    mature = outcomes[outcomes["is_mature"].astype(bool) & outcomes["probability"].notna()]
    columns = [
        "decile",
        "accounts",
        "conversions",
        "mean_probability",
        "observed_rate",
        "min_probability",
        "max_probability",
    ]
    if mature.empty:
        return pd.DataFrame(columns=columns)
    # Ranking first gives equal-sized deciles even when many accounts share one probability.
    ranks = mature["probability"].rank(method="first")
    decile = pd.qcut(ranks, q=min(bins, len(mature)), labels=False) + 1
    table = (
        mature.assign(decile=decile.astype(int), is_converted=mature["is_converted"].astype(int))
        .groupby("decile")
        .agg(
            accounts=("probability", "size"),
            conversions=("is_converted", "sum"),
            mean_probability=("probability", "mean"),
            observed_rate=("is_converted", "mean"),
            min_probability=("probability", "min"),
            max_probability=("probability", "max"),
        )
        .reset_index()
    )
    return table[columns]


def calibration_error(table: pd.DataFrame) -> float:
    """The account-weighted mean absolute gap between predicted and observed rates (ECE)."""
    if table.empty:
        return float("nan")
    gap = (table["mean_probability"] - table["observed_rate"]).abs()
    return float(np.average(gap, weights=table["accounts"]))

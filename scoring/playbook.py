"""What a rep should offer a PQL: the playbook follows the plan the account is on."""

from __future__ import annotations

import numpy as np
import pandas as pd

TRIAL_CONVERSION = "trial_conversion"
FREEMIUM_UPGRADE = "freemium_upgrade"


def playbooks(plan: pd.Series, is_pql: pd.Series) -> pd.Series:
    """`trial_conversion` for PQLs in a trial, `freemium_upgrade` for PQLs on the free plan, else null."""
    chosen = np.select([plan.eq("trial"), plan.eq("free")], [TRIAL_CONVERSION, FREEMIUM_UPGRADE], "")
    return pd.Series(chosen, index=plan.index, dtype=object).where(is_pql.to_numpy() & (chosen != ""), None)


def trial_days_left(plan: pd.Series, days_left_in_trial: pd.Series | None) -> pd.Series:
    """Days left in the trial (one decimal) for accounts in a trial with an end date; null otherwise."""
    if days_left_in_trial is None:
        return pd.Series(np.nan, index=plan.index, dtype=float)
    days = pd.to_numeric(days_left_in_trial, errors="coerce").astype(float).round(1)
    return days.where(plan.eq("trial").to_numpy(), np.nan)

"""Outcome tracking: did PQLs convert, and more often than the eligible accounts that were not PQLs?

An *outcome* row is one account observed from one moment (`start_at`): a PQL from the moment it first
qualified, a non-PQL from the first run of a week in which it was eligible and had never qualified.
It converted when it changed into a paid plan in `[start_at, start_at + horizon)`, the label's window.
Outcomes still inside their horizon at `observed_until` are marked `is_mature = False`: their
conversions so far are counted, but the rate can still rise.

Weeks start on Monday in the configured time zone.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from pql.config import PlansConfig

SEGMENTS = ("pql", "control", "non_pql")
TRIAL_PLAYBOOK, FREE_PLAYBOOK = "trial_conversion", "freemium_upgrade"
OUTCOME_COLUMNS = [
    "account_id",
    "segment",
    "cohort_week",
    "start_at",
    "tier",
    "playbook",
    "probability",
    "score",
    "converted_at",
    "is_converted",
    "days_to_conversion",
    "mrr",
    "is_mature",
]


def _instants(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values).astype("datetime64[ns]")


def week_of(moments: pd.Series, zone: ZoneInfo) -> pd.Series:
    """The Monday (a local date, as a naive timestamp) of the week holding each naive-UTC instant."""
    local = _instants(moments).dt.tz_localize("UTC").dt.tz_convert(zone).dt.tz_localize(None)
    day = local.dt.normalize()
    return (day - pd.to_timedelta(day.dt.day_of_week, unit="D")).astype("datetime64[ns]")


def conversions(plan_changes: pd.DataFrame, plans: PlansConfig) -> pd.DataFrame:
    """Changes into a paid plan: account_id, converted_at, mrr (the amount, where one is recorded)."""
    paid = plan_changes[plan_changes["to_plan"].isin(plans.paid)]
    return pd.DataFrame(
        {
            "account_id": paid["account_id"].astype(str),
            "converted_at": _instants(paid["changed_at"]),
            "mrr": pd.to_numeric(paid["mrr"], errors="coerce").astype(float),
        }
    ).reset_index(drop=True)


def plan_at(points: pd.DataFrame, plan_changes: pd.DataFrame, plans: PlansConfig) -> pd.Series:
    """Each point's plan ('free', 'trial' or 'paid') from the latest plan change strictly before `at`.

    `points` has account_id and at. No change yet means free; a trial past its end means free.
    Same index as `points`.
    """
    left = pd.DataFrame(
        {
            "account_id": points["account_id"].astype(str),
            "at": _instants(points["at"]),
            "order": range(len(points)),
        }
    )
    right = pd.DataFrame(
        {
            "account_id": plan_changes["account_id"].astype(str),
            "changed_at": _instants(plan_changes["changed_at"]),
            "to_plan": plan_changes["to_plan"],
            "trial_ends_at": _instants(plan_changes["trial_ends_at"]),
        }
    ).sort_values("changed_at")
    merged = pd.merge_asof(
        left.sort_values("at"),
        right,
        left_on="at",
        right_on="changed_at",
        by="account_id",
        direction="backward",
        allow_exact_matches=False,
    ).sort_values("order")
    plan = np.select(
        [merged["to_plan"].isin(plans.paid), merged["to_plan"].isin(plans.trial)], ["paid", "trial"], "free"
    )
    expired = (plan == "trial") & (merged["trial_ends_at"] <= merged["at"]).to_numpy()
    return pd.Series(np.where(expired, "free", plan), index=points.index, name="plan")


def with_conversion(
    starts: pd.DataFrame, conversions: pd.DataFrame, *, horizon_days: int, observed_until: datetime
) -> pd.DataFrame:
    """`starts` (account_id, start_at, ...) with the first conversion in its window.

    Adds converted_at, is_converted, days_to_conversion, mrr and is_mature. Same index as `starts`.
    """
    left = starts.assign(start_at=_instants(starts["start_at"]), _order=range(len(starts)))
    left["account_id"] = left["account_id"].astype(str)
    right = conversions[["account_id", "converted_at", "mrr"]].sort_values("converted_at")
    merged = pd.merge_asof(
        left.sort_values("start_at"),
        right,
        left_on="start_at",
        right_on="converted_at",
        by="account_id",
        direction="forward",
    ).sort_values("_order")
    merged.index = starts.index
    horizon_end = merged["start_at"] + pd.Timedelta(days=horizon_days)
    observed = pd.Timestamp(observed_until)
    converted = merged["converted_at"].notna() & (merged["converted_at"] < horizon_end.clip(upper=observed))
    merged["converted_at"] = merged["converted_at"].where(converted)
    merged["mrr"] = merged["mrr"].where(converted)
    merged["is_converted"] = converted
    merged["days_to_conversion"] = (merged["converted_at"] - merged["start_at"]) / pd.Timedelta(days=1)
    merged["is_mature"] = horizon_end <= observed
    return merged.drop(columns="_order")


def pql_outcomes(
    entries: pd.DataFrame,
    conversions: pd.DataFrame,
    *,
    horizon_days: int,
    observed_until: datetime,
    zone: ZoneInfo,
) -> pd.DataFrame:
    """One outcome per PQL entry (see `io.pql_entries`), segment 'pql' or 'control'."""
    starts = entries.rename(columns={"entered_at": "start_at"})
    outcomes = with_conversion(starts, conversions, horizon_days=horizon_days, observed_until=observed_until)
    outcomes["segment"] = np.where(outcomes["is_control"].astype(bool), "control", "pql")
    outcomes["cohort_week"] = week_of(outcomes["start_at"], zone)
    return outcomes[OUTCOME_COLUMNS].reset_index(drop=True)


def weekly_run_ids(runs: pd.DataFrame, zone: ZoneInfo) -> list[str]:
    """The run that stands for each week: the latest run of the week's first scored date."""
    if runs.empty:
        return []
    latest = runs.sort_values(["as_of", "scored_at"]).drop_duplicates("as_of", keep="last")
    latest = latest.assign(week=week_of(latest["as_of"], zone))
    return latest.drop_duplicates("week", keep="first")["run_id"].astype(str).tolist()


def snapshot_outcomes(
    snapshots: pd.DataFrame,
    plan_changes: pd.DataFrame,
    plans: PlansConfig,
    *,
    horizon_days: int,
    observed_until: datetime,
    zone: ZoneInfo,
) -> pd.DataFrame:
    """Outcomes of every account eligible (not on a paid plan) at a weekly snapshot.

    `snapshots` are history rows (see `io.history_rows`). Keeps is_pql and is_control; `playbook` is
    the one the account's plan calls for (trial or free), whether or not it was a PQL.
    """
    plan = plan_at(snapshots.rename(columns={"as_of": "at"}), plan_changes, plans)
    eligible = snapshots[plan != "paid"].assign(
        start_at=lambda frame: frame["as_of"],
        playbook=np.where(plan[plan != "paid"] == "trial", TRIAL_PLAYBOOK, FREE_PLAYBOOK),
    )
    outcomes = with_conversion(
        eligible, conversions(plan_changes, plans), horizon_days=horizon_days, observed_until=observed_until
    )
    outcomes["cohort_week"] = week_of(outcomes["start_at"], zone)
    outcomes["segment"] = np.select(
        [outcomes["is_control"].astype(bool), outcomes["is_pql"].astype(bool)], ["control", "pql"], "non_pql"
    )
    return outcomes[[*OUTCOME_COLUMNS, "is_pql", "is_control"]].reset_index(drop=True)


def non_pql_outcomes(snapshot_outcomes: pd.DataFrame, entries: pd.DataFrame, zone: ZoneInfo) -> pd.DataFrame:
    """The comparison group of each week: eligible accounts that had not qualified by the week's end."""
    entered = pd.DataFrame(
        {
            "account_id": entries["account_id"].astype(str),
            "entered_week": week_of(entries["entered_at"], zone),
        }
    )
    candidates = snapshot_outcomes[snapshot_outcomes["segment"] == "non_pql"]
    candidates = candidates.assign(account_id=candidates["account_id"].astype(str)).merge(
        entered, on="account_id", how="left"
    )
    not_yet = candidates["entered_week"].isna() | (candidates["entered_week"] > candidates["cohort_week"])
    return candidates.loc[not_yet, OUTCOME_COLUMNS].reset_index(drop=True)


def conversion_table(outcomes: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Per group: accounts, conversions, conversion_rate, median_days_to_conversion, mrr (summed over
    conversions that carry an amount, else missing) and is_complete (every outcome mature)."""
    grouped = outcomes.groupby(list(by), dropna=False, sort=True, observed=True)
    table = grouped.agg(
        accounts=("account_id", "size"),
        conversions=("is_converted", "sum"),
        median_days_to_conversion=("days_to_conversion", "median"),
        mrr=("mrr", "sum"),
        mrr_known=("mrr", "count"),
        is_complete=("is_mature", "all"),
    ).reset_index()
    table["conversions"] = table["conversions"].astype(int)
    table["conversion_rate"] = table["conversions"] / table["accounts"]
    table["mrr"] = table["mrr"].where(table["mrr_known"] > 0)
    columns = [*by, "accounts", "conversions", "conversion_rate", "median_days_to_conversion", "mrr"]
    return table[[*columns, "is_complete"]]


def lift_table(outcomes: pd.DataFrame) -> pd.DataFrame:
    """Per cohort week: PQL and non-PQL conversion rates and their ratio (the lift of being a PQL)."""
    table = conversion_table(
        outcomes[outcomes["segment"].isin(["pql", "non_pql"])], ["cohort_week", "segment"]
    )
    wide = table.pivot(index="cohort_week", columns="segment", values=["accounts", "conversion_rate"])
    wide = wide.reindex(
        columns=pd.MultiIndex.from_product([["accounts", "conversion_rate"], ["pql", "non_pql"]])
    )
    complete = table.groupby("cohort_week")["is_complete"].all()
    lift = pd.DataFrame(
        {
            "cohort_week": wide.index,
            "pqls": wide[("accounts", "pql")].fillna(0).astype(int).to_numpy(),
            "non_pqls": wide[("accounts", "non_pql")].fillna(0).astype(int).to_numpy(),
            "pql_rate": wide[("conversion_rate", "pql")].to_numpy(),
            "non_pql_rate": wide[("conversion_rate", "non_pql")].to_numpy(),
            "is_complete": complete.reindex(wide.index).to_numpy(),
        }
    )
    lift["lift"] = lift["pql_rate"] / lift["non_pql_rate"].where(lift["non_pql_rate"] > 0)
    return lift.reset_index(drop=True)

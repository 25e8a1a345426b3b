"""A plain pandas re-statement of every feature, one account and snapshot at a time.

It is written from the definitions in the feature reference, independently of the SQL builder (day
numbers come from integer arithmetic on time differences, not from bound boundaries), so agreement
between the two is evidence that both say what the reference says.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import datetime

import pandas as pd

from pql.config import SALES_LABELS, KeyEvent, Settings
from pql.features.builder import OPPORTUNITY_COLUMNS
from pql.features.catalog import feature_specs, key_event_columns

DAY = pd.Timedelta(days=1)


def expected_dtypes(settings: Settings) -> dict[str, str]:
    """The dtype of every builder column, whatever the database."""
    dtypes = {"account_id": "str", "as_of": "datetime64[us]", "is_eligible": "bool"}
    dtypes |= dict.fromkeys(OPPORTUNITY_COLUMNS, "datetime64[us]")
    for spec in feature_specs(settings):
        if spec.kind == "categorical":
            dtypes[spec.name] = "str"
        else:
            dtypes[spec.name] = "int64" if spec.name.startswith("count_") else "float64"
    return dtypes


def is_key_event(events: pd.DataFrame, event: KeyEvent) -> pd.Series:
    """Rows that are `event`: its name, and each property condition compared as JSON text."""
    matched = events["event_name"] == event.name
    if not event.where:
        return matched
    parsed = events["properties"].map(lambda text: json.loads(text) if isinstance(text, str) else {})
    for key, value in event.where_text().items():
        shown = parsed.map(
            lambda props, key=key: _json_text(props.get(key)) if isinstance(props, dict) else None
        )
        matched &= shown == value
    return matched


def _json_text(value: object) -> str | None:
    if value is None:
        return None
    return json.dumps(value) if isinstance(value, bool) else str(value)


def _day_number(as_of: pd.Timestamp, moment: pd.Timestamp) -> int:
    """k such that as_of - k days <= moment < as_of - (k-1) days (for moment < as_of)."""
    return math.ceil((as_of - moment) / DAY)


def _plan_kind(to_plan: str, settings: Settings) -> str:
    for kind in ("paid", "trial", "free"):
        if to_plan in getattr(settings.plans, kind):
            return kind
    raise ValueError(f"unmapped plan {to_plan!r}")


def _plan_row(changes: pd.DataFrame, as_of: pd.Timestamp, settings: Settings) -> dict:
    before = changes[changes["changed_at"] < as_of].copy()
    if before.empty:
        return {"plan": "free", "days_in_trial": math.nan, "days_left_in_trial": math.nan}
    before["priority"] = before["to_plan"].map(
        lambda p: ("paid", "trial", "free").index(_plan_kind(p, settings))
    )
    latest = before.sort_values(["changed_at", "priority"], ascending=[False, True]).iloc[0]
    kind = _plan_kind(latest["to_plan"], settings)
    ends = latest["trial_ends_at"]
    if kind == "trial" and not pd.isna(ends) and ends <= as_of:
        kind = "free"
    if kind != "trial":
        return {"plan": kind, "days_in_trial": math.nan, "days_left_in_trial": math.nan}
    return {
        "plan": "trial",
        "days_in_trial": (as_of - latest["changed_at"]) / DAY,
        "days_left_in_trial": math.nan if pd.isna(ends) else (ends - as_of) / DAY,
    }


def _account_row(
    account: pd.Series,
    as_of: pd.Timestamp,
    events: pd.DataFrame,
    users: pd.DataFrame,
    changes: pd.DataFrame,
    opportunities: pd.DataFrame,
    settings: Settings,
) -> dict:
    past = events[events["occurred_at"] < as_of]
    window = past[past["occurred_at"] >= as_of - 28 * DAY].copy()
    window["day"] = [_day_number(as_of, moment) for moment in window["occurred_at"]]

    def within(days: int) -> pd.DataFrame:
        return window[window["day"] <= days]

    users_before = users[users["created_at"] < as_of]
    row: dict = {"account_id": account["account_id"], "as_of": as_of}
    for days in (1, 7, 28):
        row[f"count_events_{days}d"] = len(within(days))
    for days in (7, 28):
        row[f"count_active_days_{days}d"] = within(days)["day"].nunique()
    row["count_users"] = len(users_before)
    for days in (7, 28):
        row[f"count_active_users_{days}d"] = within(days)["user_id"].dropna().nunique()
    row["share_users_active_28d"] = (
        row["count_active_users_28d"] / row["count_users"] if row["count_users"] else math.nan
    )
    for days in (14, 28):
        row[f"count_new_users_{days}d"] = int((users_before["created_at"] >= as_of - days * DAY).sum())
    row["count_distinct_event_types_28d"] = window["event_name"].nunique()
    for key in key_event_columns(settings):
        for days in (7, 28):
            row[key.column(days)] = int(is_key_event(within(days), key.event).sum())
    last = past["occurred_at"].max()
    is_key = pd.Series(False, index=past.index)
    for event in settings.key_events:
        is_key |= is_key_event(past, event)
    last_key = past.loc[is_key, "occurred_at"].max()
    row["days_since_last_event"] = math.nan if pd.isna(last) else (as_of - last) / DAY
    row["days_since_last_key_event"] = math.nan if pd.isna(last_key) else (as_of - last_key) / DAY
    prior = row["count_events_28d"] - row["count_events_7d"]
    young = account["created_at"] > as_of - 28 * DAY
    row["ratio_momentum_7d_vs_prior_21d"] = (
        math.nan if young or not prior else row["count_events_7d"] / (prior / 3)
    )
    row["days_tenure"] = (as_of - account["created_at"]) / DAY
    row |= _plan_row(changes, as_of, settings)
    row["employees"] = math.nan if pd.isna(account["employees"]) else float(account["employees"])
    row["industry"] = account["industry"]
    row["country"] = account["country"]
    row |= _opportunity_row(opportunities, as_of)
    row["is_eligible"] = (
        row["plan"] != "paid"
        and pd.isna(row["open_opportunity_created_at"])
        and (settings.features.label not in SALES_LABELS or pd.isna(row["won_opportunity_closed_at"]))
    )
    return row


def _opportunity_row(opportunities: pd.DataFrame, as_of: pd.Timestamp) -> dict:
    """The earliest creation of an opportunity open at as_of, the latest close of one won before it."""
    before = opportunities[opportunities["created_at"] < as_of]
    still_open = before[before["closed_at"].isna() | (before["closed_at"] >= as_of)]
    won = before[before["is_won"].fillna(False).astype(bool) & (before["closed_at"] < as_of)]
    return {
        "open_opportunity_created_at": still_open["created_at"].min(),
        "won_opportunity_closed_at": won["closed_at"].max(),
    }


def reference_features(
    frames: dict[str, pd.DataFrame], settings: Settings, as_of: Sequence[datetime]
) -> pd.DataFrame:
    """Every feature for every account created before each `as_of`, from the raw source frames."""
    accounts, users, events, changes = (
        frames["accounts"],
        frames["users"],
        frames["events"],
        frames["plan_changes"],
    )
    none = pd.DataFrame({"account_id": [], "created_at": [], "closed_at": [], "is_won": []})
    opportunities = frames.get("opportunities", none)
    rows = []
    for moment in sorted(set(as_of)):
        stamp = pd.Timestamp(moment)
        for _, account in accounts.sort_values("account_id").iterrows():
            if not account["created_at"] < stamp:
                continue
            account_id = account["account_id"]
            rows.append(
                _account_row(
                    account,
                    stamp,
                    events[events["account_id"] == account_id],
                    users[users["account_id"] == account_id],
                    changes[changes["account_id"] == account_id],
                    opportunities[opportunities["account_id"] == account_id],
                    settings,
                )
            )
    columns = [
        "account_id",
        "as_of",
        *(spec.name for spec in feature_specs(settings)),
        "is_eligible",
        *OPPORTUNITY_COLUMNS,
    ]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.astype(expected_dtypes(settings))

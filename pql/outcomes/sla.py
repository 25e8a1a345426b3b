"""Follow-up SLA: was each PQL first touched by sales within the agreed hours?

A PQL's deadline is `entered_at + sla_hours`. Its first touch is the earliest touch at or after
`entered_at` and no later than `as_of`; touches before it became a PQL do not count. Status:

- `met`: first touched at or before the deadline;
- `late`: first touched after the deadline;
- `overdue`: not touched, and the deadline has passed;
- `pending`: not touched, and the deadline has not passed yet (not counted in compliance).

With only `crm_accounts.last_touch_at`, the last touch is the only one visible, so an account touched
on time and again later looks late; a `crm_activities` table makes the first touch exact. Compliance is
reported per owner (the rep or queue the PQL was routed to) and per playbook.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

STATUSES = ("met", "late", "overdue", "pending")


def pql_owners(entries: pd.DataFrame, crm: pd.DataFrame, unowned_queue: str) -> pd.Series:
    """Who answers for each PQL: the rep or queue it was routed to, else its CRM owner, else the queue.

    Same index as `entries` (account_id, routed_to); `crm` has account_id, owner.
    """
    crm_owner = entries["account_id"].astype(str).map(crm.set_index(crm["account_id"].astype(str))["owner"])
    owner = entries["routed_to"].where(entries["routed_to"].notna(), crm_owner)
    return owner.where(owner.notna(), unowned_queue).astype(str).rename("owner")


def sla_status(pqls: pd.DataFrame, touches: pd.DataFrame, *, sla_hours: int, as_of: datetime) -> pd.DataFrame:
    """`pqls` (account_id, owner, entered_at, ...) with deadline, first_touch_at, hours_to_first_touch,
    status and hours_overdue, as known at `as_of`. PQLs that entered at or after `as_of` are left out.

    `touches` has account_id and touched_at; its other columns (who touched, how) come along with the
    first touch."""
    now = pd.Timestamp(as_of)
    due = pqls[pd.to_datetime(pqls["entered_at"]) < now].copy()
    due["entered_at"] = pd.to_datetime(due["entered_at"]).astype("datetime64[ns]")
    due["account_id"] = due["account_id"].astype(str)
    due["_order"] = range(len(due))
    seen = touches.drop(columns="touched_at").assign(
        account_id=touches["account_id"].astype(str),
        first_touch_at=pd.to_datetime(touches["touched_at"]).astype("datetime64[ns]"),
    )
    seen = seen[seen["first_touch_at"].notna() & (seen["first_touch_at"] <= now)].sort_values(
        "first_touch_at"
    )
    merged = pd.merge_asof(
        due.sort_values("entered_at"),
        seen,
        left_on="entered_at",
        right_on="first_touch_at",
        by="account_id",
        direction="forward",
    ).sort_values("_order")
    merged["deadline"] = merged["entered_at"] + pd.Timedelta(hours=sla_hours)
    touched = merged["first_touch_at"].notna()
    merged["hours_to_first_touch"] = (merged["first_touch_at"] - merged["entered_at"]) / pd.Timedelta(hours=1)
    merged["status"] = np.select(
        [touched & (merged["first_touch_at"] <= merged["deadline"]), touched, merged["deadline"] < now],
        ["met", "late", "overdue"],
        "pending",
    )
    overdue = merged["status"] == "overdue"
    merged["hours_overdue"] = ((now - merged["deadline"]) / pd.Timedelta(hours=1)).where(overdue)
    return merged.drop(columns="_order").reset_index(drop=True)


COMPLIANCE_COLUMNS = ["owner", "pqls", "due", *STATUSES, "compliance", "median_hours_to_first_touch"]
FIGURES = COMPLIANCE_COLUMNS[1:]
NO_PLAYBOOK = "(none)"


def _compliance(key: str, label: str, status: pd.DataFrame) -> dict[str, object]:
    counts = status["status"].value_counts()
    row: dict[str, object] = {name: int(counts.get(name, 0)) for name in STATUSES}
    due = len(status) - int(row["pending"])
    return {
        **row,
        key: label,
        "pqls": len(status),
        "due": due,
        "compliance": row["met"] / due if due else float("nan"),
        "median_hours_to_first_touch": status["hours_to_first_touch"].median(),
    }


def _compliance_by(status: pd.DataFrame, keys: pd.Series, key: str, total: str) -> pd.DataFrame:
    columns = [key, *FIGURES]
    groups = pd.DataFrame(
        [_compliance(key, str(name), group) for name, group in status.groupby(keys, sort=True)],
        columns=columns,
    ).sort_values(["compliance", key], na_position="last")
    overall = pd.DataFrame([_compliance(key, total, status)], columns=columns)
    return pd.concat([groups, overall], ignore_index=True)[columns]


def compliance_by_owner(status: pd.DataFrame) -> pd.DataFrame:
    """Per owner: pqls, due (all but pending), met, late, overdue, pending, compliance (met / due) and
    median_hours_to_first_touch. Worst compliance first; an 'all owners' row last."""
    return _compliance_by(status, status["owner"], "owner", "all owners")


def compliance_by_playbook(status: pd.DataFrame) -> pd.DataFrame:
    """The same figures per playbook (a PQL without one counts under '(none)'). Worst compliance first;
    an 'all playbooks' row last."""
    playbooks = status["playbook"] if "playbook" in status else pd.Series(None, index=status.index)
    keys = playbooks.where(playbooks.notna(), NO_PLAYBOOK).astype(str)
    return _compliance_by(status, keys, "playbook", "all playbooks")


def overdue_pqls(status: pd.DataFrame, current: pd.DataFrame) -> pd.DataFrame:
    """Overdue PQLs that are still PQLs now (`current`: account_id, score, tier, playbook), longest
    overdue first: what a manager should act on today."""
    overdue = status[status["status"] == "overdue"]
    still = current[["account_id", "score", "tier", "playbook"]].assign(
        account_id=current["account_id"].astype(str)
    )
    columns = ["account_id", "owner", "entered_at", "deadline", "hours_overdue", "score", "tier", "playbook"]
    listed = overdue.drop(columns=["score", "tier", "playbook"], errors="ignore").merge(
        still, on="account_id"
    )
    return listed.sort_values(["hours_overdue", "account_id"], ascending=[False, True])[columns].reset_index(
        drop=True
    )

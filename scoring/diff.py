"""What a run would change in the sales list, for `pql score --dry-run`: nothing is written."""

from __future__ import annotations

import numpy as np
import pandas as pd
from rich.console import Group
from rich.markup import escape
from rich.table import Table

from pql.config import TIERS, Settings
from pql.scoring.rules import ACCEPTED, DISQUALIFIED, DONE, LEFT_DISQUALIFIED, LEFT_DONE, NEW

NEW_PQL = "new_pql"
DROPPED_PQL = "dropped_pql"
TIER_UP = "tier_up"
TIER_DOWN = "tier_down"
CHANGES = (NEW_PQL, DROPPED_PQL, TIER_UP, TIER_DOWN)
# The moves a rep's decision makes (`pql_feedback`): listed and counted only when a run has any.
LEFT_BY_SALES = "left_by_sales"
BACK_AFTER_COOLDOWN = "back_after_cooldown"
SALES_ACCEPTED = "sales_accepted"
FEEDBACK_CHANGES = (LEFT_BY_SALES, BACK_AFTER_COOLDOWN, SALES_ACCEPTED)
# The kinds that add an account to the list and those that take one off it.
ENTERED = (NEW_PQL, BACK_AFTER_COOLDOWN)
LEFT = (DROPPED_PQL, LEFT_BY_SALES)
NOT_SCORED = "not scored this run"
_TITLES = {
    NEW_PQL: "New PQLs",
    DROPPED_PQL: "Dropped PQLs",
    TIER_UP: "Tier up",
    TIER_DOWN: "Tier down",
    LEFT_BY_SALES: "Left: disqualified or done by sales",
    BACK_AFTER_COOLDOWN: "Back after cooldown",
    SALES_ACCEPTED: "Accepted by sales",
}
_WITH_WHY = (DROPPED_PQL, *FEEDBACK_CHANGES)
COLUMNS = [
    "account_id",
    "change",
    "score_before",
    "score_after",
    "tier_before",
    "tier_after",
    "routed_to",
    "why",
]


def _flags(values: pd.Series) -> pd.Series:
    return values.astype(object).where(values.notna(), False).astype(bool)


def _feedback_why(both: pd.DataFrame) -> pd.Series:
    """Why a rep's decision moved each row: its `left_reason`, else the decision and its day."""
    day = pd.to_datetime(both["sales_decided_at"]).dt.strftime("%Y-%m-%d")
    decision = both["sales_decision"].astype(object)
    cooled = "cooldown over after " + decision.fillna("") + " on " + day.fillna("?")
    said = pd.Series(
        np.where(decision.eq(ACCEPTED), "accepted on " + day.fillna("?"), cooled), index=both.index
    )
    return both["left_reason"].astype(object).where(both["left_reason"].notna(), said)


def changes_frame(current: pd.DataFrame, proposed: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """One row per change: new PQLs, dropped PQLs and tier moves of `proposed` against `current`,
    and the moves a rep's decision makes: a PQL that left disqualified or done (`left_by_sales`), an
    account back on the list after its cooldown (`back_after_cooldown`, not also a `new_pql`), a PQL
    newly accepted by sales (`sales_accepted`; it may also move tier).

    `current` is `writeback.current_scores`; `proposed` the rows a run would write (with pql_status
    from the rules, used to say why a PQL drops). A tier move is between two tiers: an account that
    has no tier on one side (ineligible, so never worked by sales) makes none.
    """
    wanted = ["account_id", "is_pql", "score", "tier", "routed_to"]
    before = current.reindex(columns=[*wanted, "is_sales_accepted"])
    feedback = ["sales_decision", "sales_decided_at", "is_sales_accepted", "left_reason"]
    after = proposed.reindex(columns=[*wanted, "pql_status", *feedback])
    after = after.rename(columns={"is_sales_accepted": "is_sales_accepted_after"})
    before = before.rename(columns={"is_sales_accepted": "is_sales_accepted_before"})
    both = before.merge(after, on="account_id", how="outer", suffixes=("_before", "_after"), indicator=True)
    was = _flags(both["is_pql_before"])
    now = _flags(both["is_pql_after"])
    rank = {tier: place for place, tier in enumerate(TIERS)}
    place_before = both["tier_before"].map(rank)
    place_after = both["tier_after"].map(rank)
    scored_both = both["_merge"].eq("both")
    status = both["pql_status"].astype(object)
    left_by_sales = was & ~now & status.isin((LEFT_DISQUALIFIED, LEFT_DONE))
    back = now & ~was & status.eq(NEW) & both["sales_decision"].isin((DISQUALIFIED, DONE))
    accepted = (
        now & _flags(both["is_sales_accepted_after"]) & ~(was & _flags(both["is_sales_accepted_before"]))
    )
    masks = {
        NEW_PQL: now & ~was & ~back,
        DROPPED_PQL: was & ~now & ~left_by_sales,
        TIER_UP: scored_both & (place_after < place_before),
        TIER_DOWN: scored_both & (place_after > place_before),
        LEFT_BY_SALES: left_by_sales,
        BACK_AFTER_COOLDOWN: back,
        SALES_ACCEPTED: accepted,
    }
    why = status.where(both["_merge"].ne("left_only"), NOT_SCORED)
    sales_why = _feedback_why(both)
    parts = [
        pd.DataFrame(
            {
                "account_id": both.loc[mask, "account_id"],
                "change": change,
                "score_before": both.loc[mask, "score_before"],
                "score_after": both.loc[mask, "score_after"],
                "tier_before": both.loc[mask, "tier_before"],
                "tier_after": both.loc[mask, "tier_after"],
                "routed_to": both.loc[mask, "routed_to_after"].where(
                    both.loc[mask, "routed_to_after"].notna(), both.loc[mask, "routed_to_before"]
                ),
                "why": why[mask]
                if change == DROPPED_PQL
                else sales_why[mask]
                if change in FEEDBACK_CHANGES
                else None,
            }
        )
        for change, mask in masks.items()
        if mask.any()
    ]
    if not parts:
        return pd.DataFrame(columns=COLUMNS)
    changes = pd.concat(parts, ignore_index=True)
    order = changes["change"].map(
        {change: place for place, change in enumerate((*CHANGES, *FEEDBACK_CHANGES))}
    )
    best_first = changes["score_after"].fillna(changes["score_before"])
    return (
        changes.assign(_order=order, _score=-best_first)
        .sort_values(["_order", "_score", "account_id"])[COLUMNS]
        .reset_index(drop=True)
    )


def change_counts(changes: pd.DataFrame) -> dict[str, int]:
    """Number of accounts per change kind: every one of CHANGES (zero when none), and each of the
    FEEDBACK_CHANGES the changes hold (a project without rep feedback sees the same four as ever)."""
    counts = changes["change"].value_counts()
    present = [change for change in FEEDBACK_CHANGES if counts.get(change, 0)]
    return {change: int(counts.get(change, 0)) for change in (*CHANGES, *present)}


def entered_and_left(changes: pd.DataFrame) -> tuple[int, int]:
    """Accounts the changes add to the list and accounts they take off it."""
    counts = changes["change"].value_counts()
    return sum(int(counts.get(c, 0)) for c in ENTERED), sum(int(counts.get(c, 0)) for c in LEFT)


def _shown(value: object) -> str:
    if pd.isna(value):
        return "-"
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def _move(before: object, after: object) -> str:
    return f"{_shown(before)} -> {_shown(after)}"


def render_changes(changes: pd.DataFrame, *, limit: int = 20) -> Group:
    """Rich tables of the changes, one per kind, the `limit` highest scores of each shown."""
    counts = change_counts(changes)
    tables = []
    for change in counts:
        rows = changes[changes["change"] == change].head(limit)
        table = Table(title=f"{_TITLES[change]}: {counts[change]}", title_justify="left")
        for header in ("account", "score", "tier", "routed to", *(("why",) if change in _WITH_WHY else ())):
            table.add_column(header, justify="right" if header == "score" else "left")
        for row in rows.itertuples(index=False):
            if change in ENTERED:
                score, tier = _shown(row.score_after), _shown(row.tier_after)
            else:
                score, tier = _move(row.score_before, row.score_after), _move(row.tier_before, row.tier_after)
            routed = "" if pd.isna(row.routed_to) else str(row.routed_to)
            cells = [escape(str(row.account_id)), score, tier, escape(routed)]
            if change == DROPPED_PQL:
                cells.append(str(row.why).replace("_", " "))
            elif change in _WITH_WHY:
                cells.append(escape(str(row.why)))
            table.add_row(*cells)
        if counts[change] > limit:
            table.caption = f"{counts[change] - limit} more not shown"
        tables.append(table)
    return Group(*tables)

"""What a run would change in the sales list, for `pql score --dry-run`: nothing is written."""

from __future__ import annotations

import pandas as pd
from rich.console import Group
from rich.markup import escape
from rich.table import Table

from pql.config import TIERS, Settings

NEW_PQL = "new_pql"
DROPPED_PQL = "dropped_pql"
TIER_UP = "tier_up"
TIER_DOWN = "tier_down"
CHANGES = (NEW_PQL, DROPPED_PQL, TIER_UP, TIER_DOWN)
NOT_SCORED = "not scored this run"
_TITLES = {NEW_PQL: "New PQLs", DROPPED_PQL: "Dropped PQLs", TIER_UP: "Tier up", TIER_DOWN: "Tier down"}
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


def changes_frame(current: pd.DataFrame, proposed: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """One row per change: new PQLs, dropped PQLs and tier moves of `proposed` against `current`.

    `current` is `writeback.current_scores`; `proposed` the rows a run would write (with pql_status
    from the rules, used to say why a PQL drops). A tier move is between two tiers: an account that
    has no tier on one side (ineligible, so never worked by sales) makes none.
    """
    wanted = ["account_id", "is_pql", "score", "tier", "routed_to"]
    before = current.reindex(columns=wanted)
    after = proposed.reindex(columns=[*wanted, "pql_status"])
    both = before.merge(after, on="account_id", how="outer", suffixes=("_before", "_after"), indicator=True)
    was = both["is_pql_before"].astype(object).where(both["is_pql_before"].notna(), False).astype(bool)
    now = both["is_pql_after"].astype(object).where(both["is_pql_after"].notna(), False).astype(bool)
    rank = {tier: place for place, tier in enumerate(TIERS)}
    place_before = both["tier_before"].map(rank)
    place_after = both["tier_after"].map(rank)
    scored_both = both["_merge"].eq("both")
    masks = {
        NEW_PQL: now & ~was,
        DROPPED_PQL: was & ~now,
        TIER_UP: scored_both & (place_after < place_before),
        TIER_DOWN: scored_both & (place_after > place_before),
    }
    why = both["pql_status"].astype(object).where(both["_merge"].ne("left_only"), NOT_SCORED)
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
                "why": why[mask] if change == DROPPED_PQL else None,
            }
        )
        for change, mask in masks.items()
        if mask.any()
    ]
    if not parts:
        return pd.DataFrame(columns=COLUMNS)
    changes = pd.concat(parts, ignore_index=True)
    order = changes["change"].map({change: place for place, change in enumerate(CHANGES)})
    best_first = changes["score_after"].fillna(changes["score_before"])
    return (
        changes.assign(_order=order, _score=-best_first)
        .sort_values(["_order", "_score", "account_id"])[COLUMNS]
        .reset_index(drop=True)
    )


def change_counts(changes: pd.DataFrame) -> dict[str, int]:
    """Number of accounts per change kind (every kind present, zero when none)."""
    counts = changes["change"].value_counts()
    return {change: int(counts.get(change, 0)) for change in CHANGES}


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
    for change in CHANGES:
        rows = changes[changes["change"] == change].head(limit)
        table = Table(title=f"{_TITLES[change]}: {counts[change]}", title_justify="left")
        for header in ("account", "score", "tier", "routed to", *(("why",) if change == DROPPED_PQL else ())):
            table.add_column(header, justify="right" if header == "score" else "left")
        for row in rows.itertuples(index=False):
            if change == NEW_PQL:
                score, tier = _shown(row.score_after), _shown(row.tier_after)
            else:
                score, tier = _move(row.score_before, row.score_after), _move(row.tier_before, row.tier_after)
            routed = "" if pd.isna(row.routed_to) else str(row.routed_to)
            cells = [escape(str(row.account_id)), score, tier, escape(routed)]
            if change == DROPPED_PQL:
                cells.append(str(row.why).replace("_", " "))
            table.add_row(*cells)
        if counts[change] > limit:
            table.caption = f"{counts[change] - limit} more not shown"
        tables.append(table)
    return Group(*tables)

"""The dry-run diff: new PQLs, dropped PQLs and tier moves against the current list."""

from __future__ import annotations

import pandas as pd
from rich.console import Console

from pql.config import Settings
from pql.scoring.diff import change_counts, changes_frame, render_changes


def frame(*rows: tuple) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["account_id", "is_pql", "score", "tier", "routed_to"])


CURRENT = frame(
    ("stays", True, 70.0, "high", "ana"),
    ("drops", True, 50.0, "medium", "ana"),
    ("climbs", False, 40.0, "low", None),
    ("falls", False, 55.0, "high", None),
    ("vanishes", True, 80.0, "very_high", "bob"),
    ("steady", False, 20.0, "low", None),
)
PROPOSED = frame(
    ("stays", True, 71.0, "high", "ana"),
    ("drops", False, 40.0, "medium", None),
    ("climbs", True, 65.0, "medium", "bob"),
    ("falls", False, 30.0, "low", None),
    ("steady", False, 21.0, "low", None),
    ("newcomer", True, 90.0, "very_high", "sdr"),
).assign(pql_status=["kept", "dropped_below_exit", "new", "not_pql", "not_pql", "new"])


def test_changes_list_new_pqls_dropped_pqls_and_tier_moves_with_why() -> None:
    changes = changes_frame(CURRENT, PROPOSED, Settings())
    listed = list(changes[["account_id", "change"]].itertuples(index=False, name=None))
    assert listed == [
        ("newcomer", "new_pql"),
        ("climbs", "new_pql"),
        ("vanishes", "dropped_pql"),
        ("drops", "dropped_pql"),
        ("climbs", "tier_up"),
        ("falls", "tier_down"),
    ]
    why = changes.loc[changes["change"] == "dropped_pql"].set_index("account_id")["why"].to_dict()
    assert why == {"vanishes": "not scored this run", "drops": "dropped_below_exit"}


def test_counts_cover_every_kind_of_change() -> None:
    counts = change_counts(changes_frame(CURRENT, PROPOSED, Settings()))
    assert counts == {"new_pql": 2, "dropped_pql": 2, "tier_up": 1, "tier_down": 1}


def test_a_first_run_against_an_empty_list_only_adds() -> None:
    changes = changes_frame(frame(), PROPOSED, Settings())
    assert change_counts(changes) == {"new_pql": 3, "dropped_pql": 0, "tier_up": 0, "tier_down": 0}


def test_no_change_gives_an_empty_diff() -> None:
    assert changes_frame(CURRENT, CURRENT, Settings()).empty


def test_rendered_diff_shows_counts_and_the_accounts() -> None:
    console = Console(record=True, width=120)
    console.print(render_changes(changes_frame(CURRENT, PROPOSED, Settings()), limit=1))
    text = console.export_text()
    assert "New PQLs: 2" in text and "newcomer" in text and "1 more not shown" in text
    assert "vanishes" in text and "80.0 -> -" in text and "not scored this run" in text
    assert "40.0 -> 65.0" in text and "low -> medium" in text


def test_a_pql_that_converts_drops_untiered_without_a_tier_move() -> None:
    before = frame(("converts", True, 75.0, "high", "ana"))
    after = frame(("converts", False, 80.0, None, None)).assign(pql_status=["dropped_converted"])
    changes = changes_frame(before, after, Settings())
    assert changes["change"].tolist() == ["dropped_pql"]
    console = Console(record=True, width=120)
    console.print(render_changes(changes))
    assert "high -> -" in console.export_text()

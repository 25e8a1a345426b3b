"""The dry-run diff: new PQLs, dropped PQLs and tier moves against the current list, and the moves a
rep's decision makes."""

from __future__ import annotations

import pandas as pd
from rich.console import Console

from pql.config import Settings
from pql.scoring.diff import change_counts, changes_frame, entered_and_left, render_changes


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


def feedback_frame(*rows: dict) -> pd.DataFrame:
    defaults = {"score": 70.0, "tier": "high", "routed_to": "ana", "is_sales_accepted": False}
    return pd.DataFrame([defaults | row for row in rows])


SALES_BEFORE = feedback_frame(
    {"account_id": "unfit", "is_pql": True},
    {"account_id": "closed", "is_pql": True},
    {"account_id": "owned", "is_pql": True},
    {"account_id": "returns", "is_pql": False, "routed_to": None},
    {"account_id": "sinks", "is_pql": True},
)
SALES_AFTER = feedback_frame(
    {
        "account_id": "unfit",
        "is_pql": False,
        "routed_to": None,
        "pql_status": "left_disqualified",
        "sales_decision": "disqualified",
        "left_reason": "disqualified by ana on 2026-05-02 (not a fit); may qualify again from 2026-07-31",
    },
    {
        "account_id": "closed",
        "is_pql": False,
        "routed_to": None,
        "pql_status": "left_done",
        "sales_decision": "done",
        "left_reason": "marked done by ana on 2026-05-03; may qualify again from 2026-08-01",
    },
    {
        "account_id": "owned",
        "is_pql": True,
        "pql_status": "kept",
        "sales_decision": "accepted",
        "sales_decided_at": pd.Timestamp("2026-05-04 10:00"),
        "is_sales_accepted": True,
    },
    {
        "account_id": "returns",
        "is_pql": True,
        "pql_status": "new",
        "sales_decision": "disqualified",
        "sales_decided_at": pd.Timestamp("2026-02-01 09:00"),
    },
    {
        "account_id": "sinks",
        "is_pql": False,
        "score": 40.0,
        "routed_to": None,
        "pql_status": "dropped_below_exit",
    },
)


def test_moves_a_rep_made_are_their_own_kinds_of_change_each_with_its_reason() -> None:
    changes = changes_frame(SALES_BEFORE, SALES_AFTER, Settings()).set_index("account_id")
    assert changes["change"].to_dict() == {
        "sinks": "dropped_pql",
        "unfit": "left_by_sales",
        "closed": "left_by_sales",
        "returns": "back_after_cooldown",
        "owned": "sales_accepted",
    }
    assert changes["why"].to_dict() == {
        "sinks": "dropped_below_exit",
        "unfit": "disqualified by ana on 2026-05-02 (not a fit); may qualify again from 2026-07-31",
        "closed": "marked done by ana on 2026-05-03; may qualify again from 2026-08-01",
        "returns": "cooldown over after disqualified on 2026-02-01",
        "owned": "accepted on 2026-05-04",
    }


def test_a_pql_accepted_before_the_current_list_is_no_change() -> None:
    before = feedback_frame({"account_id": "owned", "is_pql": True, "is_sales_accepted": True})
    after = SALES_AFTER[SALES_AFTER["account_id"] == "owned"]
    assert changes_frame(before, after, Settings()).empty


def test_counts_show_the_moves_a_rep_made_and_the_list_s_entries_and_exits_include_them() -> None:
    changes = changes_frame(SALES_BEFORE, SALES_AFTER, Settings())
    assert change_counts(changes) == {
        "new_pql": 0,
        "dropped_pql": 1,
        "tier_up": 0,
        "tier_down": 0,
        "left_by_sales": 2,
        "back_after_cooldown": 1,
        "sales_accepted": 1,
    }
    assert entered_and_left(changes) == (1, 3)


def test_the_rendered_diff_has_a_table_per_move_a_rep_made_with_the_reason() -> None:
    console = Console(record=True, width=200)
    console.print(render_changes(changes_frame(SALES_BEFORE, SALES_AFTER, Settings())))
    text = console.export_text()
    assert "Left: disqualified or done by sales: 2" in text
    assert "disqualified by ana on 2026-05-02 (not a fit); may qualify again from 2026-07-31" in text
    assert "Back after cooldown: 1" in text and "cooldown over after disqualified on 2026-02-01" in text
    assert "Accepted by sales: 1" in text and "accepted on 2026-05-04" in text


def test_without_moves_by_a_rep_the_rendered_diff_has_no_table_for_them() -> None:
    console = Console(record=True, width=120)
    console.print(render_changes(changes_frame(CURRENT, PROPOSED, Settings())))
    text = console.export_text()
    assert "New PQLs: 2" in text and "by sales" not in text and "cooldown" not in text

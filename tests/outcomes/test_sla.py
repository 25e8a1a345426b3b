"""Follow-up SLA: touches before, at and after the deadline, and none."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import pytest

from pql.outcomes.sla import compliance_by_owner, overdue_pqls, pql_owners, sla_status

ENTERED = datetime(2025, 3, 3, 9, 0)
NOW = datetime(2025, 3, 10, 9, 0)


def _pqls(rows: list[tuple[str, str, datetime]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["account_id", "owner", "entered_at"])


def _touches(rows: list[tuple[str, datetime]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["account_id", "touched_at"])


def _status_of(touch: datetime | None, *, as_of: datetime = NOW) -> pd.Series:
    touches = _touches([("a", touch)] if touch else [])
    return sla_status(_pqls([("a", "ana", ENTERED)]), touches, sla_hours=24, as_of=as_of).iloc[0]


def test_a_touch_before_the_deadline_meets_the_sla() -> None:
    row = _status_of(ENTERED + timedelta(hours=3))
    assert row["status"] == "met"
    assert row["hours_to_first_touch"] == 3.0


def test_a_touch_exactly_at_the_deadline_meets_the_sla() -> None:
    assert _status_of(ENTERED + timedelta(hours=24))["status"] == "met"


def test_a_touch_after_the_deadline_is_late() -> None:
    row = _status_of(ENTERED + timedelta(hours=24, minutes=1))
    assert row["status"] == "late"
    assert pd.isna(row["hours_overdue"])


def test_no_touch_after_the_deadline_is_overdue_by_the_hours_since_it() -> None:
    row = _status_of(None)
    assert row["status"] == "overdue"
    assert row["hours_overdue"] == 6 * 24


def test_no_touch_before_the_deadline_is_pending() -> None:
    assert _status_of(None, as_of=ENTERED + timedelta(hours=24))["status"] == "pending"


def test_a_touch_before_the_account_became_a_pql_does_not_count() -> None:
    assert _status_of(ENTERED - timedelta(minutes=1))["status"] == "overdue"


def test_a_touch_after_as_of_is_not_known_yet() -> None:
    assert _status_of(NOW + timedelta(hours=1))["status"] == "overdue"


def test_the_first_touch_after_entry_decides_when_there_are_several() -> None:
    pqls = _pqls([("a", "ana", ENTERED)])
    touches = _touches(
        [
            ("a", ENTERED - timedelta(days=2)),
            ("a", ENTERED + timedelta(hours=30)),
            ("a", ENTERED + timedelta(hours=2)),
        ]
    )
    row = sla_status(pqls, touches, sla_hours=24, as_of=NOW).iloc[0]
    assert (row["status"], row["hours_to_first_touch"]) == ("met", 2.0)


def test_the_sla_hours_come_from_the_caller() -> None:
    touches = _touches([("a", ENTERED + timedelta(hours=30))])
    status = sla_status(_pqls([("a", "ana", ENTERED)]), touches, sla_hours=48, as_of=NOW)
    assert status["status"].tolist() == ["met"]


def test_compliance_per_owner_counts_met_over_due() -> None:
    pqls = _pqls(
        [
            ("a1", "ana", ENTERED),
            ("a2", "ana", ENTERED),
            ("a3", "ana", ENTERED),
            ("a4", "ana", NOW - timedelta(hours=1)),
            ("b1", "bo", ENTERED),
        ]
    )
    touches = _touches([("a1", ENTERED + timedelta(hours=1)), ("a2", ENTERED + timedelta(hours=40))])
    table = compliance_by_owner(sla_status(pqls, touches, sla_hours=24, as_of=NOW)).set_index("owner")
    ana = table.loc["ana"]
    assert (ana["pqls"], ana["due"], ana["met"], ana["late"], ana["overdue"], ana["pending"]) == (
        4,
        3,
        1,
        1,
        1,
        1,
    )
    assert ana["compliance"] == pytest.approx(1 / 3)
    assert ana["median_hours_to_first_touch"] == pytest.approx(20.5)
    assert table.loc["bo", "compliance"] == 0.0
    assert table.loc["all owners", "met"] == 1
    assert table.loc["all owners", "due"] == 4
    assert table.index.tolist() == ["bo", "ana", "all owners"]


def test_the_overdue_list_holds_current_pqls_only_longest_overdue_first() -> None:
    pqls = _pqls(
        [("old", "ana", ENTERED - timedelta(days=2)), ("new", "bo", ENTERED), ("gone", "cy", ENTERED)]
    )
    status = sla_status(pqls, _touches([]), sla_hours=24, as_of=NOW)
    current = pd.DataFrame(
        {
            "account_id": ["new", "old"],
            "score": [80.0, 70.0],
            "tier": ["high", "high"],
            "playbook": ["x", "y"],
        }
    )
    listed = overdue_pqls(status, current)
    assert listed["account_id"].tolist() == ["old", "new"]
    assert listed["hours_overdue"].tolist() == [8 * 24, 6 * 24]
    assert listed["score"].tolist() == [70.0, 80.0]


def test_owner_is_the_routing_then_the_crm_owner_then_the_queue() -> None:
    entries = pd.DataFrame({"account_id": ["a", "b", "c"], "routed_to": ["ana", None, None]})
    crm = pd.DataFrame({"account_id": ["a", "b", "c"], "owner": ["zed", "bo", None]})
    assert pql_owners(entries, crm, "pql-queue").tolist() == ["ana", "bo", "pql-queue"]


def test_no_pqls_gives_an_all_owners_row_with_nothing_due() -> None:
    table = compliance_by_owner(sla_status(_pqls([]), _touches([]), sla_hours=24, as_of=NOW))
    assert table["owner"].tolist() == ["all owners"]
    assert table["due"].tolist() == [0]

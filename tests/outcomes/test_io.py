"""The SQL reads of production evaluation, on real databases."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import pytest

from pql.config import Settings
from pql.outcomes import io

from .conftest import MONDAY, World, history_row

DAY = timedelta(days=1)


def _qualifying_history(world: World) -> None:
    world.history(
        [
            history_row("a", MONDAY, tier="medium"),
            history_row(
                "a",
                MONDAY + DAY,
                is_pql=True,
                first_pql_at=MONDAY + DAY,
                tier="high",
                routed_to="ana",
                playbook="freemium_upgrade",
            ),
            history_row("a", MONDAY + 2 * DAY, is_pql=True, first_pql_at=MONDAY + DAY, tier="very_high"),
            history_row("b", MONDAY + 2 * DAY, is_control=True, tier="high"),
            history_row("c", MONDAY + 3 * DAY, is_pql=True, first_pql_at=MONDAY + 3 * DAY),
            history_row("d", MONDAY + 5 * DAY, is_pql=True, first_pql_at=MONDAY + 5 * DAY),
            history_row("e", MONDAY),
        ]
    )


def test_reads_agree_on_every_engine(any_db_url: str, settings: Settings) -> None:
    world = World(any_db_url, settings)
    try:
        _qualifying_history(world)
        entries = io.pql_entries(world.engine, world.output, since=MONDAY + DAY, until=MONDAY + 5 * DAY)
        assert entries["account_id"].tolist() == ["a", "b", "c"]
        assert entries["entered_at"].tolist() == [MONDAY + DAY, MONDAY + 2 * DAY, MONDAY + 3 * DAY]
        assert entries["tier"].tolist() == ["high", "high", "low"]
        assert entries["is_control"].tolist() == [False, True, False]
        runs = io.history_runs(world.engine, world.output, since=MONDAY, until=MONDAY + 3 * DAY)
        assert runs["as_of"].tolist() == [MONDAY, MONDAY + DAY, MONDAY + 2 * DAY]
        rows = io.history_rows(world.engine, world.output, ["run-20250108"])
        assert sorted(rows["account_id"]) == ["a", "b"]
        assert rows.set_index("account_id")["is_control"].to_dict() == {"a": False, "b": True}
        world.plan_changes([{"account_id": "a", "changed_at": MONDAY, "to_plan": "paid", "mrr": 49.0}])
        changes = io.plan_changes(world.engine, world.source, until=MONDAY + DAY)
        assert changes[["account_id", "to_plan", "mrr"]].values.tolist() == [["a", "paid", 49.0]]
        world.crm([{"account_id": "a", "owner": "ana", "last_touch_at": MONDAY + 2 * DAY}])
        touches, source = io.touches(
            world.engine, world.source, entries, since=MONDAY, until=MONDAY + 7 * DAY
        )
        assert (source, touches["touched_at"].tolist()) == ("crm_accounts.last_touch_at", [MONDAY + 2 * DAY])
    finally:
        world.engine.dispose()


@pytest.mark.postgres
def test_entries_on_postgresql_take_the_first_qualifying_run(postgres_url: str, settings: Settings) -> None:
    world = World(postgres_url, settings)
    try:
        _qualifying_history(world)
        entries = io.pql_entries(world.engine, world.output, until=MONDAY + 7 * DAY)
        assert entries.set_index("account_id")["entered_at"].to_dict() == {
            "a": MONDAY + DAY,
            "b": MONDAY + 2 * DAY,
            "c": MONDAY + 3 * DAY,
            "d": MONDAY + 5 * DAY,
        }
        assert entries.set_index("account_id").loc["a", "routed_to"] == "ana"
    finally:
        world.engine.dispose()


def test_an_entry_falls_back_to_as_of_when_first_pql_at_is_unset(world: World) -> None:
    world.history([history_row("x", MONDAY + DAY, is_control=True, first_pql_at=None)])
    entries = io.pql_entries(world.engine, world.output, until=MONDAY + 7 * DAY)
    assert entries["entered_at"].tolist() == [MONDAY + DAY]


def test_a_rescored_date_gives_one_entry(world: World) -> None:
    world.history(
        [
            history_row("a", MONDAY, is_pql=True, first_pql_at=MONDAY),
            history_row(
                "a",
                MONDAY,
                is_pql=True,
                first_pql_at=MONDAY,
                run_id="rerun",
                scored_at=MONDAY + timedelta(hours=5),
            ),
        ]
    )
    assert len(io.pql_entries(world.engine, world.output, until=MONDAY + DAY)) == 1


def test_current_pqls_are_the_flagged_rows_of_pql_scores(world: World) -> None:
    world.scores(
        [
            {**history_row("a", MONDAY, is_pql=True, first_pql_at=MONDAY, score=81.0), "reasons_text": "x"},
            {**history_row("b", MONDAY), "reasons_text": None},
        ]
    )
    current = io.current_pqls(world.engine, world.output)
    assert current[["account_id", "score"]].values.tolist() == [["a", 81.0]]


def _run(as_of: datetime, pqls: int | None, **values: object) -> dict[str, object]:
    row = {
        "run_id": f"r-{as_of:%d}-{values.get('started_at', as_of):%H%M}",
        "kind": "nightly",
        "as_of": as_of,
        "status": "succeeded",
        "used_fallback": False,
        "pqls": pqls,
        "started_at": as_of,
        "finished_at": as_of + timedelta(minutes=5),
        "error": None,
    }
    row.update(values)
    return row


def test_trailing_volumes_skip_failed_and_unfinished_runs_and_count_a_rescored_date_once(
    world: World,
) -> None:
    world.runs(
        [
            _run(MONDAY, 10),
            _run(MONDAY + DAY, 12),
            _run(MONDAY + DAY, 14, started_at=MONDAY + DAY + timedelta(hours=3)),
            _run(MONDAY + 2 * DAY, 99, error="boom", status="failed"),
            _run(MONDAY + 3 * DAY, 98, finished_at=None, status="running"),
            _run(MONDAY + 4 * DAY, 50),
        ]
    )
    volumes = io.trailing_pql_volumes(world.engine, world.output, before=MONDAY + 4 * DAY, runs=28)
    assert volumes == [14, 10]
    assert io.trailing_pql_volumes(world.engine, world.output, before=MONDAY + 4 * DAY, runs=1) == [14]


def _entries(*rows: tuple[str, datetime]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["account_id", "entered_at"])


def test_an_empty_activities_table_leaves_the_touches_to_last_touch_at(world: World) -> None:
    world.crm([{"account_id": "a", "owner": "ana", "last_touch_at": MONDAY + 3 * DAY}])
    touches, source = io.touches(
        world.engine, world.source, _entries(("a", MONDAY)), since=MONDAY, until=MONDAY + 7 * DAY
    )
    assert (source, touches["touched_at"].tolist()) == ("crm_accounts.last_touch_at", [MONDAY + 3 * DAY])


def test_touches_come_from_crm_activities_when_it_holds_rows(world: World) -> None:
    world.activities([{"account_id": "a", "owner": "bo", "occurred_at": MONDAY + DAY}])
    world.crm([{"account_id": "a", "owner": "ana", "last_touch_at": MONDAY + 3 * DAY}])
    touches, source = io.touches(
        world.engine, world.source, _entries(("a", MONDAY)), since=MONDAY, until=MONDAY + 7 * DAY
    )
    assert source == "crm_activities"
    assert touches[["account_id", "touched_at", "touched_by"]].values.tolist() == [
        ["a", pd.Timestamp(MONDAY + DAY), "bo"]
    ]


def test_first_activities_agree_on_every_engine(any_db_url: str, settings: Settings) -> None:
    world = World(any_db_url, settings)
    try:
        world.activities(
            [
                {"account_id": "a", "owner": "ana", "occurred_at": MONDAY - DAY, "activity_type": "call"},
                {"account_id": "a", "owner": "bo", "occurred_at": MONDAY + 2 * DAY, "activity_type": "call"},
                {"account_id": "a", "owner": "ana", "occurred_at": MONDAY + DAY, "activity_type": "meeting"},
                {"account_id": "b", "owner": "bo", "occurred_at": MONDAY + 7 * DAY},
                {"account_id": "z", "owner": "cy", "occurred_at": MONDAY + DAY},
            ]
        )
        entries = _entries(("a", MONDAY), ("b", MONDAY), ("c", MONDAY))
        first = io.first_activities(world.engine, world.source, entries, until=MONDAY + 7 * DAY)
        assert first.values.tolist() == [["a", pd.Timestamp(MONDAY + DAY), "ana", "meeting"]]
    finally:
        world.engine.dispose()


def test_an_activity_at_the_pql_moment_counts_and_one_just_before_it_does_not(world: World) -> None:
    world.activities(
        [
            {"account_id": "a", "occurred_at": MONDAY - timedelta(seconds=1)},
            {"account_id": "b", "occurred_at": MONDAY},
        ]
    )
    entries = _entries(("a", MONDAY), ("b", MONDAY))
    first = io.first_activities(world.engine, world.source, entries, until=MONDAY + DAY)
    assert first["account_id"].tolist() == ["b"]


def test_an_activity_at_or_after_until_is_not_known_yet(world: World) -> None:
    world.activities(
        [
            {"account_id": "a", "occurred_at": MONDAY + DAY},
            {"account_id": "b", "occurred_at": MONDAY + DAY - timedelta(seconds=1)},
        ]
    )
    entries = _entries(("a", MONDAY), ("b", MONDAY))
    first = io.first_activities(world.engine, world.source, entries, until=MONDAY + DAY)
    assert first["account_id"].tolist() == ["b"]


def test_activities_at_the_same_instant_go_to_the_lowest_activity_id(world: World) -> None:
    world.activities(
        [
            {"activity_id": "2", "account_id": "a", "owner": "bo", "occurred_at": MONDAY + DAY},
            {"activity_id": "1", "account_id": "a", "owner": "ana", "occurred_at": MONDAY + DAY},
        ]
    )
    first = io.first_activities(world.engine, world.source, _entries(("a", MONDAY)), until=MONDAY + 7 * DAY)
    assert first["touched_by"].tolist() == ["ana"]


def test_many_pqls_are_sent_in_batches_with_the_same_answer(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.activities(
        [{"account_id": f"a{i}", "owner": "ana", "occurred_at": MONDAY + i * DAY} for i in range(5)]
    )
    entries = _entries(*((f"a{i}", MONDAY + timedelta(hours=1)) for i in range(6)))
    monkeypatch.setattr(io, "PQLS_PER_STATEMENT", 2)
    first = io.first_activities(world.engine, world.source, entries, until=MONDAY + 7 * DAY)
    assert sorted(first["account_id"]) == ["a1", "a2", "a3", "a4"]


def test_no_pqls_read_no_activities(world: World) -> None:
    world.activities([{"account_id": "a", "occurred_at": MONDAY}])
    first = io.first_activities(world.engine, world.source, _entries(), until=MONDAY + DAY)
    assert first.empty
    assert first.columns.tolist() == io.TOUCH_COLUMNS

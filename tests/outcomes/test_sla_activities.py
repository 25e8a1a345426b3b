"""Follow-up SLA from `crm_activities` on the hand-built world of `sla_world`, on every engine."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
import pytest

from pql.config import Settings
from pql.db import Databases
from pql.outcomes.evaluation import SlaEvaluation, evaluate_sla

from .conftest import MONDAY, World
from .sla_world import ENTERED, HOUR, NOW, build_sla_world


def _evaluate(world: World) -> SlaEvaluation:
    settings = world.settings.model_copy(update={"source_url": world.url})
    dbs = Databases(settings)
    try:
        return evaluate_sla(dbs, settings, since=MONDAY, as_of=NOW)
    finally:
        dbs.dispose()


@pytest.fixture
def any_world(any_db_url: str, settings: Settings) -> Iterator[World]:
    built = World(any_db_url, settings)
    yield built
    built.engine.dispose()


@pytest.fixture
def from_activities(any_world: World) -> SlaEvaluation:
    build_sla_world(any_world, with_activities=True)
    return _evaluate(any_world)


def _statuses(sla: SlaEvaluation) -> dict[str, str]:
    return sla.status.set_index("account_id")["status"].to_dict()


def _figures(table: pd.DataFrame, key: str) -> dict[str, tuple[int, ...]]:
    columns = ["pqls", "due", "met", "late", "overdue", "pending"]
    return {row[key]: tuple(int(row[c]) for c in columns) for row in table.to_dict("records")}


def test_the_touches_come_from_crm_activities_and_say_so(from_activities: SlaEvaluation) -> None:
    assert from_activities.touch_source == "crm_activities"
    assert from_activities.source_line == "follow-up from crm_activities"


def test_each_treated_pql_gets_the_status_of_its_first_activity(from_activities: SlaEvaluation) -> None:
    assert _statuses(from_activities) == {
        "a1": "met",
        "a2": "late",
        "a3": "overdue",
        "b1": "met",
        "b2": "pending",
        "b3": "late",
    }


def test_touched_on_time_then_again_later_counts_as_on_time(from_activities: SlaEvaluation) -> None:
    a1 = from_activities.status.set_index("account_id").loc["a1"]
    assert (a1["status"], a1["hours_to_first_touch"]) == ("met", 2.0)


def test_an_activity_before_first_pql_at_does_not_count(from_activities: SlaEvaluation) -> None:
    a2 = from_activities.status.set_index("account_id").loc["a2"]
    assert a2["first_touch_at"] == pd.Timestamp(ENTERED + 30 * HOUR)


def test_an_activity_at_or_after_the_evaluation_time_does_not_count(from_activities: SlaEvaluation) -> None:
    a3 = from_activities.status.set_index("account_id").loc["a3"]
    assert pd.isna(a3["first_touch_at"])
    assert a3["hours_overdue"] == pytest.approx((NOW - ENTERED - 24 * HOUR) / HOUR)


def test_any_rep_s_activity_counts_and_is_reported_under_the_pql_s_owner(
    from_activities: SlaEvaluation,
) -> None:
    b1 = from_activities.status.set_index("account_id").loc["b1"]
    assert (b1["owner"], b1["touched_by"], b1["activity_type"], b1["status"]) == ("bo", "cy", "call", "met")


def test_the_overdue_list_holds_the_untouched_pqls_past_their_deadline(
    from_activities: SlaEvaluation,
) -> None:
    assert from_activities.overdue[["account_id", "owner", "score"]].values.tolist() == [["a3", "ana", 71.0]]


def test_compliance_per_owner(from_activities: SlaEvaluation) -> None:
    table = from_activities.by_owner
    assert table["owner"].tolist() == ["ana", "bo", "all owners"]
    assert _figures(table, "owner") == {
        "ana": (3, 3, 1, 1, 1, 0),
        "bo": (3, 2, 1, 1, 0, 1),
        "all owners": (6, 5, 2, 2, 1, 1),
    }
    by_owner = table.set_index("owner")
    assert by_owner["compliance"].tolist() == pytest.approx([1 / 3, 1 / 2, 2 / 5])
    assert by_owner["median_hours_to_first_touch"].tolist() == pytest.approx([16.0, 26.5, 17.5])


def test_compliance_per_playbook(from_activities: SlaEvaluation) -> None:
    table = from_activities.by_playbook
    assert table["playbook"].tolist() == ["freemium_upgrade", "trial_to_paid", "all playbooks"]
    assert _figures(table, "playbook") == {
        "freemium_upgrade": (4, 4, 1, 2, 1, 0),
        "trial_to_paid": (2, 1, 1, 0, 0, 1),
        "all playbooks": (6, 5, 2, 2, 1, 1),
    }
    assert table.set_index("playbook")["compliance"].tolist() == pytest.approx([1 / 4, 1.0, 2 / 5])


def test_without_activities_last_touch_at_decides_and_the_output_says_so(any_world: World) -> None:
    build_sla_world(any_world, with_activities=False)
    sla = _evaluate(any_world)
    assert sla.source_line == "follow-up from crm_accounts.last_touch_at (no activities table)"
    # The last touch is the only one visible: a1, touched on time and again later, looks late.
    assert _statuses(sla) == {
        "a1": "late",
        "a2": "late",
        "a3": "overdue",
        "b1": "met",
        "b2": "pending",
        "b3": "late",
    }
    assert sla.status["touched_by"].isna().all()


def test_a_renamed_activities_table_is_the_one_read(settings: Settings, duckdb_url: str) -> None:
    tables = settings.tables.model_copy(
        update={
            "crm_activities": settings.tables.crm_activities.model_copy(
                update={
                    "name": "sales_touches",
                    "columns": settings.tables.crm_activities.columns.model_copy(
                        update={"occurred_at": "ts"}
                    ),
                }
            )
        }
    )
    world = World(duckdb_url, settings.model_copy(update={"tables": tables}))
    try:
        build_sla_world(world, with_activities=True)
        sla = _evaluate(world)
    finally:
        world.engine.dispose()
    assert sla.source_line == "follow-up from crm_activities"
    assert _statuses(sla)["a1"] == "met"

"""validate_events: each check passes on the clean window and catches its own kind of bad events."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from gate_worlds import AS_OF, World, event, loose

from pql.config import load_settings
from pql.db import DataError, create_engine
from pql.schema import source_tables
from pql.validation import validate_events
from pql.validation.gates import NO_EVENTS_NOTE

NOW = AS_OF + timedelta(hours=2)  # a nightly run starts a little after its as_of


def run(world: World, **overrides: object):
    settings = (
        load_settings(None, state_dir=world.settings.state_dir, **overrides) if overrides else world.settings
    )
    return validate_events(world.engine, world.tables, settings, AS_OF, now=NOW)


def test_clean_window_passes_every_check_on_each_database(any_world: World) -> None:
    result = run(any_world)
    assert result.status == "passed", [c for c in result.checks if c.status != "passed"]
    assert {check.name for check in result.checks} == {
        "events.required_columns",
        "events.window_not_empty",
        "events.ids_not_null",
        "events.known_accounts",
        "events.not_in_future",
        "events.duplicate_rate",
        "events.known_names",
        "events.key_events_seen",
        "events.properties_valid",
        "events.no_empty_days",
        "events.volume_spike",
    }


def test_events_between_as_of_and_the_runs_start_are_not_in_the_future(world: World) -> None:
    world.insert("events", [event("acc_1", "login", AS_OF + timedelta(hours=1))])
    assert run(world).check("events.not_in_future").status == "passed"


def test_an_event_after_the_runs_start_beyond_the_tolerance_fails_with_examples(any_world: World) -> None:
    late = NOW + timedelta(minutes=6)
    any_world.insert("events", [event("acc_1", "login", late, event_id="e_late")])
    check = run(any_world).check("events.not_in_future")
    assert check.status == "failed"
    assert check.rows == 1
    assert "event_id=e_late" in check.failures[0].examples[0]


def test_an_event_within_the_future_tolerance_passes(world: World) -> None:
    world.insert("events", [event("acc_1", "login", NOW + timedelta(minutes=4))])
    assert run(world).check("events.not_in_future").status == "passed"


def test_null_account_or_user_ids_warn_with_their_count(any_world: World) -> None:
    noon = AS_OF - timedelta(hours=12)
    rows = [event("acc_1", "login", noon, event_id="e_n1"), event("acc_2", "login", noon, event_id="e_n2")]
    rows[0]["account_id"] = None
    rows[1]["user_id"] = None
    any_world.insert("events", rows)
    check = run(any_world).check("events.ids_not_null")
    assert (check.status, check.rows) == ("warned", 2)
    assert any("e_n1" in example for example in check.failures[0].examples)


def test_events_of_unknown_accounts_warn(world: World) -> None:
    world.insert("events", [event("acc_ghost", "login", AS_OF - timedelta(hours=3))])
    check = run(world).check("events.known_accounts")
    assert (check.status, check.rows) == ("warned", 1)
    assert check.failures[0].examples == ("account_id=acc_ghost events=1",)


def test_a_duplicate_event_rate_above_the_limit_fails(any_world: World) -> None:
    noon = AS_OF - timedelta(hours=12)
    any_world.insert("events", [event("acc_1", "login", noon, event_id="e_dup") for _ in range(3)])
    check = run(any_world).check("events.duplicate_rate")
    assert check.status == "failed"
    assert check.rows == 2
    assert check.failures[0].examples == ("event_id=e_dup events=3",)


def test_a_duplicate_rate_under_a_raised_limit_passes(world: World) -> None:
    noon = AS_OF - timedelta(hours=12)
    world.insert("events", [event("acc_1", "login", noon, event_id="e_dup") for _ in range(3)])
    result = run(world, validation={"max_duplicate_event_rate": 0.1})
    assert result.check("events.duplicate_rate").status == "passed"


def test_a_name_first_seen_on_the_newest_day_is_reported_not_fatal(world: World) -> None:
    world.insert("events", [event("acc_1", "tried_new_thing", AS_OF - timedelta(hours=2))])
    result = run(world)
    check = result.check("events.known_names")
    assert (check.status, check.rows) == ("warned", 1)
    assert check.failures[0].examples == ("event_name=tried_new_thing events=1",)
    assert not result.failed


def test_a_key_event_missing_from_the_window_warns(world: World) -> None:
    world.execute(sa.delete(world.tables.events).where(world.tables.events.c.event_name == "view_pricing"))
    check = run(world).check("events.key_events_seen")
    assert (check.status, check.rows) == ("warned", 1)
    assert check.failures[0].examples == ("event_name=view_pricing events=0",)


def test_a_table_whose_events_stopped_before_the_window_fails(world: World) -> None:
    e = world.tables.events.c
    world.execute(sa.delete(world.tables.events).where(e.occurred_at >= AS_OF - timedelta(days=28)))
    result = run(world)
    assert result.check("events.window_not_empty").status == "failed"
    assert result.check("events.no_empty_days").rows == 7
    assert result.failed
    assert result.notes == []


def test_an_empty_events_table_passes_with_a_note_on_each_database(any_world: World) -> None:
    any_world.execute(sa.delete(any_world.tables.events))
    result = run(any_world)
    assert result.status == "passed"
    assert result.notes == [NO_EVENTS_NOTE]
    assert result.check("events.required_columns").status == "passed"
    assert {check.status for check in result.checks if check.name != "events.required_columns"} == {"skipped"}


def test_an_empty_day_in_the_last_week_fails_naming_the_day(world: World) -> None:
    e = world.tables.events.c
    day = AS_OF - timedelta(days=3)
    world.execute(
        sa.delete(world.tables.events).where(e.occurred_at >= day, e.occurred_at < day + timedelta(days=1))
    )
    check = run(world).check("events.no_empty_days")
    assert (check.status, check.rows) == ("failed", 1)
    assert check.failures[0].examples[0].startswith(f"day_start={day.isoformat()} events=0")


def test_a_tenfold_volume_spike_fails(world: World) -> None:
    noon = AS_OF - timedelta(days=1) + timedelta(hours=12)
    world.insert(
        "events",
        [event("acc_1", "login", noon + timedelta(seconds=i), event_id=f"s{i}") for i in range(9 * 35)],
    )
    check = run(world).check("events.volume_spike")
    assert (check.status, check.rows) == ("failed", 1)
    assert "events=350" in check.failures[0].examples[0]


def test_a_ninefold_day_is_not_a_spike(world: World) -> None:
    noon = AS_OF - timedelta(days=1) + timedelta(hours=12)
    world.insert(
        "events",
        [event("acc_1", "login", noon + timedelta(seconds=i), event_id=f"s{i}") for i in range(8 * 35)],
    )
    assert run(world).check("events.volume_spike").status == "passed"


def test_a_check_set_to_warn_does_not_fail_the_stage(world: World) -> None:
    world.insert("events", [event("acc_1", "login", NOW + timedelta(days=400))])
    result = run(world, validation={"policies": {"events.not_in_future": "warn"}})
    assert result.check("events.not_in_future").status == "warned"
    assert not result.failed


def test_a_renamed_column_fails_and_skips_the_checks_that_need_it(duckdb_url: str, settings) -> None:
    renamed = settings.tables.model_dump()
    renamed["events"]["columns"]["occurred_at"] = "ts"
    tables = loose(source_tables(load_settings(None, tables=renamed).tables))
    engine = create_engine(duckdb_url)
    tables.metadata.create_all(engine)
    # The database still has `ts`... the settings say `occurred_at`: that is what a rename looks like.
    result = validate_events(engine, loose(source_tables(settings.tables)), settings, AS_OF, now=NOW)
    engine.dispose()
    check = result.check("events.required_columns")
    assert (check.status, check.rows) == ("failed", 1)
    assert check.failures[0].examples == ("table=events column=occurred_at present=False",)
    assert result.check("events.duplicate_rate").status == "skipped"


def test_a_missing_events_table_fails_on_required_columns(duckdb_url: str, settings) -> None:
    engine = create_engine(duckdb_url)
    result = validate_events(engine, source_tables(settings.tables), settings, AS_OF, now=NOW)
    engine.dispose()
    assert result.check("events.required_columns").rows == 6


def test_an_unreachable_database_is_a_data_error_naming_it(settings) -> None:
    engine = create_engine("postgresql+psycopg://pql:secret@127.0.0.1:1/nowhere")
    with pytest.raises(DataError, match=r"source database .*\*\*\*.* is unreachable"):
        validate_events(engine, source_tables(settings.tables), settings, AS_OF, now=NOW)


def test_validating_events_prints_nothing(world: World, capfd: pytest.CaptureFixture) -> None:
    world.insert("events", [event("acc_1", "brand_new", AS_OF - timedelta(hours=1))])
    assert run(world).status == "warned"
    assert capfd.readouterr() == ("", "")


def test_a_name_seen_earlier_in_the_window_is_known(world: World) -> None:
    world.insert("events", [event("acc_1", "rare_thing", AS_OF - timedelta(days=20))])
    world.insert("events", [event("acc_1", "rare_thing", AS_OF - timedelta(hours=2))])
    assert run(world).check("events.known_names").status == "passed"


def test_a_duplicated_event_ten_days_before_as_of_fails_with_its_id(any_world: World) -> None:
    older = AS_OF - timedelta(days=10)
    any_world.insert("events", [event("acc_1", "login", older, event_id="e_old") for _ in range(3)])
    check = run(any_world).check("events.duplicate_rate")
    assert (check.status, check.rows) == ("failed", 2)
    assert check.failures[0].examples == ("event_id=e_old events=3",)


def test_a_day_loaded_twice_three_weeks_before_as_of_fails(world: World) -> None:
    e = world.tables.events
    day = AS_OF - timedelta(days=21)
    in_day = sa.and_(e.c.occurred_at >= day, e.c.occurred_at < day + timedelta(days=1))
    world.execute(e.insert().from_select(list(e.columns), sa.select(*e.columns).where(in_day)))
    assert run(world).check("events.duplicate_rate").status == "failed"


def test_repeated_event_ids_before_the_window_the_run_reads_pass(world: World) -> None:
    older = AS_OF - timedelta(days=30)
    world.insert("events", [event("acc_1", "login", older, event_id="e_old") for _ in range(3)])
    assert run(world).check("events.duplicate_rate").status == "passed"


def test_clean_properties_pass(world: World) -> None:
    row = event("acc_1", "login", AS_OF - timedelta(hours=3))
    row["properties"] = '{"seats": 3, "plan": {"limit": 10}}'
    world.insert("events", [row])
    assert run(world).check("events.properties_valid").status == "passed"


@pytest.mark.parametrize(
    ("properties", "expectation"),
    [
        ('{"seats": -3}', "expect_column_values_to_be_between"),
        ('{"rows": 1e15}', "expect_column_values_to_be_between"),
        ('{"nested": {"count": -1}}', "expect_column_values_to_be_between"),
        ("[1, 2]", "expect_column_values_to_be_in_set"),
        ("{not json", "expect_column_values_to_be_in_set"),
    ],
)
def test_negative_absurd_or_malformed_properties_warn(
    world: World, properties: str, expectation: str
) -> None:
    row = event("acc_2", "login", AS_OF - timedelta(hours=3), event_id="e_props")
    row["properties"] = properties
    world.insert("events", [row])
    check = run(world).check("events.properties_valid")
    assert (check.status, check.rows) == ("warned", 1)
    assert check.failures[0].expectation == expectation
    assert check.failures[0].examples[0].startswith("event_id=e_props events=1 properties=")

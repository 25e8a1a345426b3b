"""The nightly flow end to end on a small demo world: what a success writes, and what each kind of
failure leaves behind (a failed flow run, a failed ledger row, an untouched CRM)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
import sqlalchemy as sa
from prefect.client.orchestration import get_client

from pql.clock import start_of_day, today_in
from pql.config import ConfigError, load_settings
from pql.db import DataError
from pql.flows import tasks
from pql.flows.nightly import nightly
from pql.flows.summary import RunSummary
from pql.schema import source_tables
from pql.validation import ValidationFailed
from pql.validation.gates import NO_EVENTS_NOTE

if TYPE_CHECKING:
    from conftest import World


def test_as_of_defaults_to_the_start_of_today_in_the_configured_time_zone() -> None:
    settings = load_settings(None, timezone="Asia/Tokyo")
    assert tasks.nightly_as_of(None, settings) == start_of_day(today_in(settings.zone), settings.zone)


def test_an_as_of_with_an_offset_is_taken_as_the_instant_it_names() -> None:
    settings = load_settings(None, timezone="Asia/Tokyo")
    paris_midnight = datetime(2026, 3, 2, tzinfo=ZoneInfo("Europe/Paris"))
    assert tasks.nightly_as_of(paris_midnight, settings) == datetime(2026, 3, 1, 23)
    assert tasks.nightly_as_of(datetime(2026, 3, 2), settings) == datetime(2026, 3, 2)  # naive is UTC


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_a_successful_run_writes_the_current_list_and_its_history(scored: tuple[World, RunSummary]) -> None:
    world, summary = scored
    scores, history = world.table("scores"), world.table("history")
    assert len(scores) == len(history) == summary.accounts_scored > 300
    assert int(scores["is_pql"].sum()) == summary.pqls > 0
    assert set(history["run_id"]) == {summary.run_id}


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_a_successful_run_completes_its_ledger_row(scored: tuple[World, RunSummary]) -> None:
    world, summary = scored
    (run,) = world.table("runs").to_dict("records")
    assert (run["run_id"], run["kind"], run["status"], run["as_of"]) == (
        summary.run_id,
        "nightly",
        "succeeded",
        world.end,
    )
    assert set(json.loads(run["timings_json"])) >= {"validate-source", "build-features", "score-accounts"}
    assert json.loads(run["validation_json"])["status"] in ("passed", "warned", "quarantined")
    assert run["used_fallback"] == summary.used_fallback


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_the_ledger_names_the_prefect_flow_run_that_scored(scored: tuple[World, RunSummary]) -> None:
    world, _ = scored
    (run,) = world.table("runs").to_dict("records")
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(run["flow_run_id"])
    assert flow_run.name == f"nightly-{world.end:%Y-%m-%d}"
    assert flow_run.state is not None and flow_run.state.is_completed()


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_the_run_publishes_its_report_as_a_markdown_artifact(
    scored: tuple[World, RunSummary], report_of: Callable[[str, str], str]
) -> None:
    _, summary = scored
    report = report_of("nightly", str(summary.flow_run_id))
    assert f"| accounts scored | {summary.accounts_scored:,} |" in report
    assert summary.top_pqls[0]["account_id"] in report


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_a_run_leaves_data_docs_with_a_page_per_validation(scored: tuple[World, RunSummary]) -> None:
    world, summary = scored
    docs = world.root / ".pql" / "runs" / str(summary.run_id) / "data_docs"
    index = (docs / "index.html").read_text(encoding="utf-8")
    pages = sorted(docs.glob("validations/**/*.html"))
    stages = {page.relative_to(docs / "validations").parts[1] for page in pages}
    assert stages == {"events", "plan_changes", "accounts", "crm", "features", "scores", "output"}
    results = json.loads((docs.parent / "validation" / "scores.json").read_text(encoding="utf-8"))
    assert len(pages) == sum(
        len(json.loads(path.read_text(encoding="utf-8"))["results"])
        for path in (docs.parent / "validation").glob("*.json")
        if path.name != "summary.json"
    )
    assert len(results["results"]) == 5
    assert all(page.relative_to(docs).as_posix() in index for page in pages)


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_the_ledger_and_the_report_link_the_data_docs(
    scored: tuple[World, RunSummary], report_of: Callable[[str, str], str]
) -> None:
    world, summary = scored
    (run,) = world.table("runs").to_dict("records")
    index = world.root / ".pql" / "runs" / str(summary.run_id) / "data_docs" / "index.html"
    assert run["data_docs_path"] == summary.data_docs == str(index)
    assert f"| data docs | [{index}]({index.resolve().as_uri()}) |" in report_of(
        "nightly", str(summary.flow_run_id)
    )


def paid_accounts(world: World) -> set[str]:
    """The accounts whose latest plan change before the world's end is into a paid plan."""
    tables = source_tables(world.settings.tables)
    changes = tables.plan_changes.c
    query = sa.select(changes.account_id, changes.to_plan).where(changes.changed_at < world.end)
    engine = sa.create_engine(world.source_url)
    try:
        with engine.connect() as conn:
            rows = pd.DataFrame(conn.execute(query.order_by(changes.changed_at)).all())
    finally:
        engine.dispose()
    plan_now = rows.groupby("account_id")["to_plan"].last()
    return set(plan_now[plan_now.isin(world.settings.plans.paid)].index)


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_a_run_writes_no_tier_nor_grade_for_paid_accounts(scored: tuple[World, RunSummary]) -> None:
    world, summary = scored
    paid = paid_accounts(world)
    assert summary.ineligible == len(paid) > 0
    for key in ("scores", "history"):
        rows = world.table(key)
        ineligible = rows["account_id"].isin(paid)
        assert rows.loc[ineligible, ["tier", "grade"]].isna().all().all(), key
        assert rows.loc[ineligible, "ineligible_reason"].eq("on a paid plan").all(), key
        assert rows.loc[~ineligible, "tier"].notna().all() and rows.loc[~ineligible, "grade"].notna().all()


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_a_validation_failure_fails_the_run_and_leaves_the_crm_as_it_was(world: World) -> None:
    nightly(as_of=world.end, config=world.config)
    scores, history = world.table("scores"), world.table("history")
    # Forty days after the world ends, the events window is empty: a `fail` check.
    state = nightly(as_of=world.end + timedelta(days=40), config=world.config, return_state=True)
    assert state.is_failed()
    with pytest.raises(ValidationFailed):
        state.result()
    pd.testing.assert_frame_equal(world.table("scores"), scores)
    pd.testing.assert_frame_equal(world.table("history"), history)
    (run,) = world.table("runs").query("status == 'failed'").to_dict("records")
    assert run["error"].startswith("ValidationFailed")
    assert "events.window_not_empty" in json.loads(run["validation_json"])["failed"]


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_a_run_failing_validation_links_the_data_docs_showing_the_failure(world: World) -> None:
    state = nightly(as_of=world.end + timedelta(days=40), config=world.config, return_state=True)
    assert state.is_failed()
    (run,) = world.table("runs").to_dict("records")
    docs = Path(run["data_docs_path"]).parent
    assert docs == world.root / ".pql" / "runs" / run["run_id"] / "data_docs"
    (counts,) = docs.glob("validations/pql/events/counts/**/*.html")
    assert "Unsuccessful Expectations" in counts.read_text(encoding="utf-8")
    assert not list(docs.glob("validations/pql/features/**/*.html"))  # the run stopped before them


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_a_source_without_events_scores_and_records_the_empty_events_note(world: World) -> None:
    engine = sa.create_engine(world.source_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM events"))
    finally:
        engine.dispose()
    summary = nightly(as_of=world.end, config=world.config)
    assert summary.accounts_scored > 300
    (run,) = world.table("runs").to_dict("records")
    assert run["status"] == "succeeded"
    (events,) = [
        stage for stage in json.loads(run["validation_json"])["stages"] if stage["stage"] == "events"
    ]
    assert (events["status"], events["notes"]) == ("passed", [NO_EVENTS_NOTE])


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_a_data_error_at_the_write_fails_the_run_and_rolls_the_write_back(world: World) -> None:
    nightly(as_of=world.end, config=world.config)
    scores, history = world.table("scores"), world.table("history")
    # Making an older date the current list would roll the sales list back: refused.
    state = nightly(as_of=world.end - timedelta(days=7), config=world.config, return_state=True)
    assert state.is_failed()
    with pytest.raises(DataError, match="roll the sales list back"):
        state.result()
    pd.testing.assert_frame_equal(world.table("scores"), scores)
    pd.testing.assert_frame_equal(world.table("history"), history)
    assert world.table("runs")["status"].tolist() == ["failed", "succeeded"]  # sorted by as_of


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_a_configuration_error_fails_the_flow_before_anything_is_touched(world: World) -> None:
    Path(world.config).write_text('timezone = "Mars/Olympus"\n', encoding="utf-8")
    state = nightly(as_of=world.end, config=world.config, return_state=True)
    assert state.is_failed()
    with pytest.raises(ConfigError, match="timezone"):
        state.result()
    assert world.table("runs").empty


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_a_dry_run_reports_the_changes_and_writes_nothing(world: World) -> None:
    summary = nightly(as_of=world.end, dry_run=True, config=world.config)
    assert summary.dry_run and summary.run_id is None
    assert (summary.changes["change"] == "new_pql").sum() == summary.pqls > 0
    engine = sa.create_engine(world.crm_url)
    try:
        assert not sa.inspect(engine).has_table("pql_runs")
    finally:
        engine.dispose()
    assert summary.data_docs is None
    assert not (world.root / ".pql" / "runs").exists()

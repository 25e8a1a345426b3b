"""The bad-input catalogue: the whole nightly flow against one kind of bad input at a time.

Each case states its outcome. A run that fails leaves the CRM byte for byte as it was (the current
list, its history, the quarantine and the sales-owned accounts; the ledger gains one failed row naming
the failing check). A warning lets the run write and records the check. A quarantine sets the bad rows
aside with their reason and writes the rest. Bad files are caught by the loader, before any run.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from prefect.testing.utilities import prefect_test_harness

from pql.config import ConfigError, TablesConfig, load_settings
from pql.db import DataError, create_engine
from pql.demo.world import write_demo_world
from pql.flows.nightly import nightly
from pql.loading import load_file
from pql.schema import create_tables, output_tables, source_tables

pytestmark = pytest.mark.slow

END = datetime(2026, 3, 2)  # the world ends here; the catalogue's runs score as of it
NEWEST_DAY = END - timedelta(days=1)
USER = "demo-u00000001"
TABLES = TablesConfig()
SOURCE, OUTPUT = source_tables(TABLES), output_tables(TABLES)


@dataclass
class Pipeline:
    """One case's copy of the world: a source database, a CRM database and a settings file."""

    root: Path

    @property
    def source_url(self) -> str:
        return f"duckdb:///{(self.root / 'source.duckdb').as_posix()}"

    @property
    def crm_url(self) -> str:
        return f"duckdb:///{(self.root / 'crm.duckdb').as_posix()}"

    @property
    def config(self) -> str:
        return str(self.root / "pql.toml")

    def configure(self, source_url: str | None = None, extra: str = "") -> None:
        self.root.joinpath("pql.toml").write_text(
            f'source_url = "{source_url or self.source_url}"\n'
            f'crm_url = "{self.crm_url}"\n'
            f'state_dir = "{(self.root / ".pql").as_posix()}"\n'
            f"{extra}"
            "[flows]\nretries = 1\nretry_delay_seconds = 0\nlock_timeout_seconds = 0\n",
            encoding="utf-8",
        )

    def source(self, *statements: str) -> None:
        engine = create_engine(self.source_url)
        try:
            with engine.begin() as conn:
                for statement in statements:
                    conn.execute(sa.text(statement))
        finally:
            engine.dispose()

    def crm(self, statement: str) -> None:
        engine = create_engine(self.crm_url)
        try:
            with engine.begin() as conn:
                conn.execute(sa.text(statement))
        finally:
            engine.dispose()

    def rows(self, url: str, table: str) -> pd.DataFrame:
        engine = create_engine(url)
        try:
            if not sa.inspect(engine).has_table(table):
                return pd.DataFrame()
            with engine.connect() as conn:
                return pd.DataFrame(conn.execute(sa.text(f"SELECT * FROM {table}")).mappings().all())
        finally:
            engine.dispose()

    def fingerprint(self) -> dict[str, str]:
        """A digest of every table a failed run must leave untouched, row order aside."""
        tables = {
            **{name: (self.crm_url, name) for name in ("pql_scores", "pql_score_history", "pql_quarantine")},
            "crm_accounts": (self.source_url, "crm_accounts"),
        }
        digests = {}
        for name, (url, table) in tables.items():
            frame = self.rows(url, table)
            text = frame.sort_values(list(frame.columns)).to_csv(index=False) if not frame.empty else ""
            digests[name] = hashlib.sha256(text.encode()).hexdigest()
        return digests

    def runs(self) -> pd.DataFrame:
        return self.rows(self.crm_url, "pql_runs").sort_values("started_at", ignore_index=True)

    def latest_validation(self) -> dict:
        return json.loads(self.runs()["validation_json"].iloc[-1])


@pytest.fixture(scope="module")
def prefect_api() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, prefect_api: None) -> Path:
    """A 150-account, 60-day world already scored the night before END: the CRM has a list to protect."""
    pipeline = Pipeline(tmp_path_factory.mktemp("catalogue"))
    pipeline.configure()
    engine = create_engine(pipeline.source_url)
    try:
        create_tables(engine, SOURCE)
        settings = load_settings(Path(pipeline.config))
        write_demo_world(engine, SOURCE, settings, accounts=150, days=60, seed=11, end=END)
    finally:
        engine.dispose()
    nightly(as_of=END - timedelta(days=1), config=pipeline.config)
    return pipeline.root


@pytest.fixture
def pipeline(template: Path, tmp_path: Path) -> Pipeline:
    root = tmp_path / "pipeline"
    shutil.copytree(template, root, ignore=shutil.ignore_patterns(".pql"))
    copy = Pipeline(root)
    copy.configure()
    return copy


def _sql(value: object) -> str:
    return "NULL" if value is None else "'" + str(value).replace("'", "''") + "'"


def event_values(
    event_id: str,
    account: str | None,
    at: datetime,
    *,
    user: str | None = USER,
    properties: str | None = None,
) -> str:
    """One `(...)` row of `insert_events`: a login event."""
    values = (_sql(event_id), _sql(user), _sql(account), "'login'", f"TIMESTAMP '{at:%Y-%m-%d %H:%M:%S}'")
    return f"({', '.join(values)}, {_sql(properties)})"


def insert_events(*values: str) -> str:
    columns = "event_id, user_id, account_id, event_name, occurred_at, properties"
    return f"INSERT INTO events ({columns}) VALUES {', '.join(values)}"


NEWEST = f"occurred_at >= TIMESTAMP '{NEWEST_DAY:%Y-%m-%d}' AND occurred_at < TIMESTAMP '{END:%Y-%m-%d}'"


# --- the cases: (how the input goes bad, what must happen) -----------------------------------------


def fails_on(check: str) -> Callable[[Pipeline, Callable[[], object]], None]:
    """The run fails on `check`; the CRM is byte for byte as it was; the ledger names the check."""

    def verify(pipeline: Pipeline, run: Callable[[], object]) -> None:
        before, runs_before = pipeline.fingerprint(), len(pipeline.runs())
        state = run()
        assert state.is_failed()
        with pytest.raises(DataError):
            state.result()
        assert pipeline.fingerprint() == before
        runs = pipeline.runs()
        assert len(runs) == runs_before + 1 and runs["status"].iloc[-1] == "failed"
        assert check in json.loads(runs["validation_json"].iloc[-1])["failed"]

    return verify


def warns_on(check: str) -> Callable[[Pipeline, Callable[[], object]], None]:
    """The run writes the list and records the warning."""

    def verify(pipeline: Pipeline, run: Callable[[], object]) -> None:
        assert run().is_completed()
        assert pipeline.runs()["status"].iloc[-1] == "succeeded"
        assert check in pipeline.latest_validation()["warned"]

    return verify


CASES = {
    "null account and user ids": (
        lambda p: p.source(
            insert_events(
                event_values("bad-1", None, NEWEST_DAY + timedelta(hours=9)),
                event_values("bad-2", "demo-a000001", NEWEST_DAY + timedelta(hours=9), user=None),
            )
        ),
        warns_on("events.ids_not_null"),
    ),
    "events for unknown accounts": (
        lambda p: p.source(
            insert_events(event_values("ghost-1", "ghost-account", NEWEST_DAY + timedelta(hours=3)))
        ),
        warns_on("events.known_accounts"),
    ),
    "timestamps in the future": (
        lambda p: p.source(insert_events(event_values("future-1", "demo-a000001", datetime(2099, 6, 1)))),
        fails_on("events.not_in_future"),
    ),
    "duplicate events": (
        lambda p: p.source(f"INSERT INTO events SELECT * FROM events WHERE {NEWEST}"),
        fails_on("events.duplicate_rate"),
    ),
    "negative or absurd counts in properties": (
        lambda p: p.source(
            insert_events(
                event_values(
                    "props-1", "demo-a000001", NEWEST_DAY + timedelta(hours=4), properties='{"seats": -4}'
                ),
                event_values(
                    "props-2", "demo-a000002", NEWEST_DAY + timedelta(hours=4), properties='{"rows": 1e15}'
                ),
            )
        ),
        warns_on("events.properties_valid"),
    ),
    "a missing column": (
        lambda p: p.source("ALTER TABLE events DROP COLUMN user_id"),
        fails_on("events.required_columns"),
    ),
    "a renamed column": (
        lambda p: p.source("ALTER TABLE events RENAME COLUMN occurred_at TO event_time"),
        fails_on("events.required_columns"),
    ),
    "an empty events window": (
        lambda p: p.source(
            f"DELETE FROM events WHERE occurred_at >= TIMESTAMP '{END - timedelta(days=28):%Y-%m-%d}'"
        ),
        fails_on("events.window_not_empty"),
    ),
    "a tenfold volume spike": (
        lambda p: p.source(
            *(
                f"INSERT INTO events SELECT event_id || '-copy{i}', user_id, account_id, event_name, "
                f"occurred_at, properties FROM events WHERE {NEWEST}"
                for i in range(10)
            )
        ),
        fails_on("events.volume_spike"),
    ),
    "a plan change to an unknown plan": (
        lambda p: p.source(
            "INSERT INTO plan_changes (account_id, changed_at, from_plan, to_plan, mrr) VALUES "
            f"('demo-a000003', TIMESTAMP '{NEWEST_DAY:%Y-%m-%d} 08:00:00', 'free', 'enterprise', 900)"
        ),
        fails_on("plan_changes.known_plans"),
    ),
    "an activity before its account existed": (
        lambda p: p.source(
            "INSERT INTO crm_activities (activity_id, account_id, owner, occurred_at, activity_type) "
            "VALUES ('act-1', 'demo-a000001', 'rep', TIMESTAMP '2001-01-01 09:00:00', 'call')"
        ),
        warns_on("sales.activities_after_account_created"),
    ),
    "an opportunity closed before it was created": (
        lambda p: p.source(
            "INSERT INTO opportunities (opportunity_id, account_id, created_at, stage, closed_at, is_won) "
            f"VALUES ('opp-1', 'demo-a000002', TIMESTAMP '{NEWEST_DAY:%Y-%m-%d} 08:00:00', 'lost', "
            f"TIMESTAMP '{NEWEST_DAY - timedelta(days=3):%Y-%m-%d} 08:00:00', false)"
        ),
        warns_on("sales.opportunities_closed_after_created"),
    ),
    "an unknown rep decision": (
        lambda p: p.source(
            "INSERT INTO pql_feedback (account_id, owner, decided_at, decision) "
            f"VALUES ('demo-a000003', 'rep', TIMESTAMP '{NEWEST_DAY:%Y-%m-%d} 08:00:00', 'maybe')"
        ),
        warns_on("sales.known_decisions"),
    ),
    "a CRM table whose schema differs": (
        lambda p: p.crm("ALTER TABLE pql_scores RENAME COLUMN playbook TO sales_play"),
        fails_on("crm.table_schema"),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_in_the_source_or_crm(pipeline: Pipeline, case: str) -> None:
    break_input, verify = CASES[case]
    break_input(pipeline)
    verify(pipeline, lambda: nightly(as_of=END, config=pipeline.config, return_state=True))


def test_a_negative_employee_count_quarantines_that_account_and_scores_the_rest(pipeline: Pipeline) -> None:
    pipeline.source("UPDATE accounts SET employees = -40 WHERE account_id = 'demo-a000005'")
    summary = nightly(as_of=END, config=pipeline.config)
    quarantined = pipeline.rows(pipeline.crm_url, "pql_quarantine")
    (row,) = quarantined.to_dict("records")
    assert row["source_table"] == "features" and row["batch_id"] == summary.run_id
    assert (
        row["reason"].startswith("features.value_ranges:")
        and "min_non_negative_in=employees" in row["reason"]
    )
    assert json.loads(row["row_json"])["account_id"] == "demo-a000005"
    scored = pipeline.rows(pipeline.crm_url, "pql_scores")
    assert "demo-a000005" not in set(scored["account_id"])
    features = pipeline.rows(pipeline.source_url, "accounts")
    assert summary.accounts_scored + len(quarantined) == int((features["created_at"] < END).sum())


def test_a_table_name_that_is_not_an_identifier_is_rejected_before_any_sql(pipeline: Pipeline) -> None:
    before = pipeline.fingerprint()
    pipeline.configure(extra='[tables.events]\nname = "events; DROP TABLE accounts"\n')
    state = nightly(as_of=END, config=pipeline.config, return_state=True)
    assert state.is_failed()
    with pytest.raises(ConfigError, match=r"tables\.events\.name.*plain SQL identifier"):
        state.result()
    assert pipeline.fingerprint() == before
    assert not pipeline.rows(pipeline.source_url, "accounts").empty
    assert len(pipeline.runs()) == 1  # only the night before's


def test_an_unreachable_database_fails_with_a_clear_error_and_touches_nothing(pipeline: Pipeline) -> None:
    before, runs_before = pipeline.fingerprint(), len(pipeline.runs())
    pipeline.configure(source_url="postgresql+psycopg://pql:secret@127.0.0.1:1/nowhere")
    state = nightly(as_of=END, config=pipeline.config, return_state=True)
    assert state.is_failed()
    with pytest.raises(DataError, match=r"source database .*:\*\*\*@127\.0\.0\.1:1/nowhere is unreachable"):
        state.result()
    assert pipeline.fingerprint() == before
    runs = pipeline.runs()
    assert len(runs) == runs_before + 1 and "secret" not in runs["error"].iloc[-1]


# --- bad files: the loader sets bad rows aside before any run sees them ------------------------------


def load_events(pipeline: Pipeline, path: Path):
    engine = create_engine(pipeline.source_url)
    try:
        return load_file(engine, TABLES, "events", path, fmt="csv")
    finally:
        engine.dispose()


HEADER = b"event_id,user_id,account_id,event_name,occurred_at\n"


def test_naive_and_aware_timestamps_mixed_load_as_the_same_utc_instant(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    path = tmp_path / "mixed.csv"
    path.write_bytes(
        HEADER
        + b"mixed-1,demo-u00000001,demo-a000001,login,2026-03-01T10:00:00\n"
        + b"mixed-2,demo-u00000001,demo-a000001,login,2026-03-01T12:00:00+02:00\n"
    )
    report = load_events(pipeline, path)
    assert (report.loaded, report.quarantined) == (2, 0)
    stored = pipeline.rows(pipeline.source_url, "events").set_index("event_id").loc[["mixed-1", "mixed-2"]]
    assert stored["occurred_at"].tolist() == [pd.Timestamp("2026-03-01 10:00:00")] * 2
    assert nightly(as_of=END, config=pipeline.config, return_state=True).is_completed()


def test_epoch_milliseconds_in_a_seconds_column_are_quarantined_by_the_loader(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    seconds = int((NEWEST_DAY + timedelta(hours=6) - datetime(1970, 1, 1)).total_seconds())
    path = tmp_path / "epochs.csv"
    path.write_bytes(
        HEADER
        + b"".join(f"epoch-{i},demo-u00000001,demo-a000001,login,{seconds + i}\n".encode() for i in range(5))
        + f"epoch-ms,demo-u00000001,demo-a000001,login,{seconds * 1000}\n".encode()
    )
    report = load_events(pipeline, path)
    assert (report.loaded, report.quarantined) == (5, 1)
    (reason,) = pipeline.rows(pipeline.source_url, "pql_quarantine")["reason"]
    assert "looks like epoch milliseconds" in reason
    assert nightly(as_of=END, config=pipeline.config, return_state=True).is_completed()


def test_invalid_utf8_in_text_is_quarantined_by_the_loader(pipeline: Pipeline, tmp_path: Path) -> None:
    path = tmp_path / "bytes.csv"
    path.write_bytes(
        HEADER
        + b"utf-1,demo-u00000001,demo-a000001,login,2026-03-01T10:00:00\n"
        + b"utf-2,demo-u00000001,demo-a000001,caf\xe9,2026-03-01T10:00:00\n"
    )
    report = load_events(pipeline, path)
    assert (report.loaded, report.quarantined) == (1, 1)
    (reason,) = pipeline.rows(pipeline.source_url, "pql_quarantine")["reason"]
    assert "is not valid UTF-8" in reason
    assert nightly(as_of=END, config=pipeline.config, return_state=True).is_completed()

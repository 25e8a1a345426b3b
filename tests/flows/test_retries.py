"""Which failures a task retries: transient database errors, never bad data or bad configuration."""

from __future__ import annotations

from pathlib import Path

import duckdb
import psycopg
import psycopg.errors
import pytest
import sqlalchemy as sa

from pql.config import ConfigError, Settings
from pql.db import DataError
from pql.flows.retries import is_transient, task_options
from pql.validation import ValidationFailed


def _wrapped(driver_error: Exception) -> sa.exc.DBAPIError:
    """The error as SQLAlchemy raises it around a driver error."""
    return sa.exc.DBAPIError.instance("SELECT 1", {}, driver_error, psycopg.Error)


def test_a_connection_that_cannot_be_made_is_transient() -> None:
    engine = sa.create_engine("postgresql+psycopg://pql@127.0.0.1:1/db", connect_args={"connect_timeout": 2})
    with pytest.raises(sa.exc.OperationalError) as caught:
        engine.connect()
    assert is_transient(caught.value)


def test_serialization_failure_is_transient() -> None:
    assert is_transient(_wrapped(psycopg.errors.SerializationFailure("could not serialize access")))


def test_deadlock_is_transient() -> None:
    assert is_transient(_wrapped(psycopg.errors.DeadlockDetected("deadlock detected")))


def test_a_dropped_connection_is_transient() -> None:
    assert is_transient(_wrapped(psycopg.OperationalError("server closed the connection unexpectedly")))


def test_a_constraint_violation_is_not_transient() -> None:
    assert not is_transient(_wrapped(psycopg.errors.UniqueViolation("duplicate key value")))


def test_a_busy_sqlite_database_is_transient(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'busy.sqlite'}"
    holder = sa.create_engine(url, connect_args={"timeout": 0}, isolation_level="AUTOCOMMIT")
    waiter = sa.create_engine(url, connect_args={"timeout": 0})
    with holder.connect() as first, waiter.connect() as second:
        first.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        first.exec_driver_sql("BEGIN EXCLUSIVE")
        with pytest.raises(sa.exc.OperationalError) as caught:
            second.exec_driver_sql("INSERT INTO t VALUES (1)")
        first.exec_driver_sql("ROLLBACK")
    assert is_transient(caught.value)


def test_a_missing_sqlite_table_is_not_transient(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'empty.sqlite'}")
    with engine.connect() as conn, pytest.raises(sa.exc.OperationalError) as caught:
        conn.exec_driver_sql("SELECT * FROM missing")
    assert not is_transient(caught.value)


def test_a_duckdb_write_conflict_is_transient() -> None:
    database = duckdb.connect(":memory:")
    database.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, x INTEGER); INSERT INTO t VALUES (1, 0)")
    first, second = database.cursor(), database.cursor()
    first.execute("BEGIN; UPDATE t SET x = 1 WHERE id = 1")
    second.execute("BEGIN")
    with pytest.raises(duckdb.Error) as caught:
        second.execute("UPDATE t SET x = 2 WHERE id = 1")
    assert is_transient(caught.value)


def test_a_duckdb_catalog_error_is_not_transient() -> None:
    with pytest.raises(duckdb.Error) as caught:
        duckdb.connect(":memory:").execute("SELECT * FROM missing")
    assert not is_transient(caught.value)


def test_an_unreachable_database_reported_as_data_error_is_still_transient() -> None:
    try:
        try:
            raise _wrapped(psycopg.OperationalError("connection refused"))
        except sa.exc.DBAPIError as exc:
            raise DataError("source database is unreachable") from exc
    except DataError as error:
        assert is_transient(error)


def test_a_validation_failure_is_never_retried() -> None:
    summary = {"status": "failed", "failed": [], "warned": [], "quarantined": [], "quarantined_rows": 0}
    try:
        try:
            raise _wrapped(psycopg.errors.DeadlockDetected("deadlock detected"))
        except sa.exc.DBAPIError as exc:
            raise ValidationFailed({**summary, "stages": []}) from exc
    except ValidationFailed as error:
        assert not is_transient(error)


def test_a_configuration_error_is_never_retried() -> None:
    assert not is_transient(ConfigError("timezone: unknown time zone"))


def test_task_options_back_off_exponentially_and_time_out(settings: Settings) -> None:
    configured = settings.model_copy(
        update={"flows": settings.flows.model_copy(update={"retries": 3, "retry_delay_seconds": 5})}
    )
    options = task_options(configured)
    assert options["retries"] == 3
    assert options["retry_delay_seconds"] == [5, 10, 20]
    assert options["timeout_seconds"] == configured.flows.task_timeout_seconds

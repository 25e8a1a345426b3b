"""Which task failures are worth another attempt: transient database errors, and nothing else.

A lost connection, a serialization failure or a deadlock can succeed on a second try; bad data, a
failed validation or a configuration mistake fails the same way every time, so retrying it only
delays the page to the operator.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import duckdb
import psycopg
import sqlalchemy as sa
from prefect.client.schemas.objects import TaskRun
from prefect.states import State
from prefect.tasks import exponential_backoff

from pql.config import ConfigError, Settings
from pql.validation import ValidationFailed

# SQLSTATEs worth retrying: serialization failure, deadlock, the server shutting down or refusing new
# connections for now, too many connections. Class 08 (connection exceptions) is added by prefix.
TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "57P01", "57P02", "57P03", "53300"})
# Bad data and bad configuration fail the same way every time, whatever caused them.
NEVER_RETRIED = (ConfigError, ValidationFailed)
_SQLITE_BUSY = frozenset({"SQLITE_BUSY", "SQLITE_LOCKED"})
# DuckDB: write-write conflicts and a file held by another process clear up on their own.
_DUCKDB_TRANSIENT = (duckdb.ConnectionException, duckdb.TransactionException, duckdb.SerializationException)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and everything it was raised from or while handling, outermost first."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _sqlstate(error: BaseException) -> str | None:
    code = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
    return str(code) if code else None


def _driver_error_is_transient(error: BaseException) -> bool | None:
    """True/False when the driver's own error says; None when it is not a driver error we know."""
    code = _sqlstate(error)
    if code is not None:
        return code in TRANSIENT_SQLSTATES or code.startswith("08")
    if isinstance(error, sqlite3.Error):
        return getattr(error, "sqlite_errorname", None) in _SQLITE_BUSY
    if isinstance(error, duckdb.Error):
        return isinstance(error, _DUCKDB_TRANSIENT) or (
            isinstance(error, duckdb.IOException) and "lock" in str(error).lower()
        )
    if isinstance(error, psycopg.Error):
        # A psycopg OperationalError without a SQLSTATE is a connection that failed or dropped.
        return isinstance(error, psycopg.OperationalError)
    return None


def is_transient(exc: BaseException) -> bool:
    """Whether `exc` is a database error that may well succeed if the same work is tried again."""
    if isinstance(exc, NEVER_RETRIED):
        return False
    for error in _chain(exc):
        if isinstance(error, sa.exc.DBAPIError):
            if error.connection_invalidated:
                return True
            verdict = _driver_error_is_transient(error.orig)
            if verdict is not None:
                return verdict
            # A driver we do not know (a warehouse dialect): OperationalError is its "try again".
            return isinstance(error, sa.exc.OperationalError)
        verdict = _driver_error_is_transient(error)
        if verdict is not None:
            return verdict
    return False


def retry_on_transient(task: Any, task_run: TaskRun, state: State) -> bool:
    """Prefect `retry_condition_fn`: retry the task only when it failed on a transient database error."""
    exc = state.data if isinstance(state.data, BaseException) else None
    if exc is None:
        exc = state.result(raise_on_failure=False)
    return isinstance(exc, BaseException) and is_transient(exc)


def task_options(settings: Settings) -> dict[str, Any]:
    """Retries with exponential back-off on transient errors only, and a timeout, for every task."""
    flows = settings.flows
    return {
        "retries": flows.retries,
        "retry_delay_seconds": exponential_backoff(flows.retry_delay_seconds)(flows.retries),
        "retry_jitter_factor": 0.2 if flows.retry_delay_seconds else None,
        "retry_condition_fn": retry_on_transient,
        "timeout_seconds": flows.task_timeout_seconds,
    }

"""Running a flow from a process (the command line, a notebook): Prefect's console turned down, the run's
stacks imported in the main thread, a Prefect API ready, and a database error that ends the run turned
into one readable `DataError`.

Prefect is imported only inside these functions, after `quiet_prefect` has set its console defaults.
"""

from __future__ import annotations

import importlib
import logging
import os
import sqlite3
import warnings
from collections.abc import Callable
from contextlib import ExitStack
from typing import TypeVar

import duckdb
import psycopg
import sqlalchemy as sa

from pql.db import DataError, failure_of

R = TypeVar("R")
DATABASE_ERRORS = (sa.exc.SQLAlchemyError, psycopg.Error, duckdb.Error, sqlite3.Error)
# Defaults only: anything already set in the environment wins.
QUIET_PREFECT = {
    "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING",
    "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DASK_LOGGING__DISTRIBUTED": "error",
    # Prefect's default (20 s) is too short for its temporary server on a busy machine.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
}
# What a run needs, imported in this order in the main thread before any thread starts: Python's import
# lock does not make a module that one thread is still initialising safe for another, and Great
# Expectations and Prefect both import SQLAlchemy's ORM.
RUN_STACKS = ("sqlalchemy.orm", "great_expectations", "prefect", "prefect.logging.handlers")
EPHEMERAL_ATTEMPTS = 2


class PrefectApiUnavailable(DataError):
    """Prefect's temporary API server did not start (no PREFECT_API_URL was configured)."""

    heading = "run could not start"


def quiet_prefect(*, console_level: str = "WARNING") -> None:
    """Turn Prefect's (and Dask's) console output down to warnings before Prefect is imported.

    Runs still send every log line to the Prefect API. Set PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL=INFO
    to see them in the terminal too.
    """
    for name, value in {**QUIET_PREFECT, "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": console_level}.items():
        os.environ.setdefault(name, value)
    # Great Expectations' own pandas calls warn about regex groups; that is not the operator's business.
    warnings.filterwarnings("ignore", category=UserWarning, module=r"great_expectations\.")


class _FailuresReportedByPql(logging.Filter):
    """Drops Prefect's console reports of a failed task or flow run (error lines with tracebacks):
    the command prints the failure itself, once and readably. The Prefect API still gets them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.levelno >= logging.ERROR
            and record.name.startswith(("prefect.flow_runs", "prefect.task_runs"))
        )


def import_run_stacks() -> None:
    """Import RUN_STACKS and build the Great Expectations context, all in the calling (main) thread."""
    for name in RUN_STACKS:
        importlib.import_module(name)
    from pql.validation.gx_runner import prepare

    prepare()


def prefect_api(stack: ExitStack) -> None:
    """Use the Prefect server PREFECT_API_URL names; without one, start a temporary server for the life
    of `stack` that dies with this process, trying twice, so a slow start fails as one clear message
    rather than a traceback mid-run. Call it before any other thread starts (see `ephemeral_server`)."""
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_SERVER_EPHEMERAL_ENABLED,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
        temporary_settings,
    )

    from pql.flows.server import ServerDidNotStart, ephemeral_server

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return  # a configured server (or Prefect's own message when neither is allowed)
    timeout = PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()
    for _ in range(EPHEMERAL_ATTEMPTS):
        try:
            api_url = stack.enter_context(ephemeral_server(timeout))
        except ServerDidNotStart:
            continue  # its process is already stopped
        stack.enter_context(temporary_settings({PREFECT_API_URL: api_url}))
        return
    raise PrefectApiUnavailable(
        f"the temporary Prefect API server did not start within {timeout} s ({EPHEMERAL_ATTEMPTS} tries): "
        "set PREFECT_API_URL to a running Prefect server, or raise "
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS."
    )


def run_flow(call: Callable[[], R]) -> R:
    """Call a flow (imported, so Prefect's logging is set up); a database error that outlived its
    retries becomes a failed run (exit code 1).

    Everything the run imports is imported first, in the main thread (`import_run_stacks`); then the
    Prefect API is made ready (`prefect_api`): a configured server, or a temporary one that this process
    starts and that dies with it, never outliving a killed command.
    """
    import_run_stacks()
    from prefect.logging.handlers import PrefectConsoleHandler

    with ExitStack() as stack:
        prefect_api(stack)
        for handler in logging.getLogger().handlers:
            if isinstance(handler, PrefectConsoleHandler) and not any(
                isinstance(existing, _FailuresReportedByPql) for existing in handler.filters
            ):
                handler.addFilter(_FailuresReportedByPql())
        try:
            return call()
        except DATABASE_ERRORS as exc:
            # The driver's own first line, not SQLAlchemy's message (which repeats the whole statement).
            database, cause = failure_of(exc) if isinstance(exc, sa.exc.DBAPIError) else (None, exc)
            on = f" on database {database}" if database else ""
            from pql.flows.retries import is_transient

            # Only transient errors are retried; saying "after its retries" of the others would mislead.
            tried = (
                "after its retries"
                if is_transient(exc)
                else "(not retried: it would fail the same way again)"
            )
            raise DataError(f"the run failed on a database error{on} {tried}: {cause}") from exc

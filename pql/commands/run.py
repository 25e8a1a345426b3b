"""`pql score`, `pql backfill` and `pql serve`: the flows, run from the command line.

Prefect is imported only when a command runs, after its console output is turned down: the flow runs
still log everything to the Prefect API (the UI shows it), but the terminal gets pql's own summary.
"""

from __future__ import annotations

import importlib
import logging
import os
import sqlite3
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import duckdb
import psycopg
import sqlalchemy as sa
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pql.commands import cli_errors, console, errors, instant_option, settings_of
from pql.commands.output import JSON_HELP, print_json, records, warn
from pql.commands.progress import progress_bar
from pql.config import config_path
from pql.db import DataError, failure_of

if TYPE_CHECKING:
    from pql.flows.summary import RunSummary

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


def flow_config(ctx: typer.Context) -> str | None:
    """The settings file to hand to a flow run (absolute, so a run in another directory reads the same)."""
    found = config_path((ctx.find_root().params or {}).get("config"))
    return str(found.resolve()) if found is not None else None


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


@contextmanager
def prefect_console_on(console: Console) -> Iterator[None]:
    """Prefect's console log lines printed by `console` for the block, then by Prefect's own again.

    Under a progress bar drawn on `console`, they are printed above the bar instead of through it:
    Prefect's handler has a console of its own, which writes straight to the terminal."""
    from prefect.logging.handlers import PrefectConsoleHandler

    loggers = [logging.getLogger(), *logging.root.manager.loggerDict.values()]
    handlers = list(  # one handler serves several loggers: each is switched (and restored) once
        {
            id(handler): handler
            for logger in loggers
            if isinstance(logger, logging.Logger)
            for handler in logger.handlers
            if isinstance(handler, PrefectConsoleHandler)
        }.values()
    )
    before = [handler.console for handler in handlers]
    for handler in handlers:
        handler.console = console
    try:
        yield
    finally:
        for handler, own in zip(handlers, before, strict=True):
            handler.console = own


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


def _fmt_count(value: int) -> str:
    return f"{value:,}"


def print_summary(summary: RunSummary) -> None:
    """The run, as an operator reads it: counts, tiers, validation, model, top PQLs or changes."""
    from pql.validation import summary_text

    title = f"pql {summary.kind} as of {summary.as_of:%Y-%m-%d %H:%M} UTC"
    console.print(f"[bold]{title}[/]" + (" [yellow](dry run: nothing written)[/]" if summary.dry_run else ""))
    model = summary.model_version + (
        " [yellow](fallback: points baseline; run `pql train`)[/]" if summary.used_fallback else ""
    )
    console.print(f"model {model}")
    for warning in summary.model_warnings:
        console.print(f"[bold yellow]warning:[/] {escape(warning)}", highlight=False)
    counts = Table(show_header=False, box=None, pad_edge=False)
    for label, value in (
        ("accounts scored", summary.accounts_scored),
        ("PQLs", summary.pqls),
        ("new PQLs", summary.new_pqls),
        ("dropped PQLs", summary.dropped_pqls),
        *((f"tier {tier}", count) for tier, count in summary.tiers.items()),
        ("not tiered (ineligible)", summary.ineligible),
    ):
        counts.add_row(label, _fmt_count(value))
    console.print(counts)
    console.print(summary_text(summary.validation), highlight=False)
    if summary.monitoring:
        breaches = summary.monitoring.get("breaches", [])
        console.print(f"monitoring {summary.monitoring.get('status', 'unknown')}", highlight=False)
        for breach in breaches[:5]:
            console.print(
                f"  {breach['check']} {breach['name']} = {breach['value']} "
                f"(at or above the {breach['level']} threshold {breach['threshold']})",
                highlight=False,
            )
    if summary.dry_run and summary.changes is not None:
        from pql.scoring.diff import render_changes

        console.print(render_changes(summary.changes))
        return
    top = Table(title=f"top {len(summary.top_pqls)} PQLs (strongest reason)", title_justify="left")
    for header in ("account", "routed to", "score", "tier", "playbook", "why"):
        top.add_column(header, justify="right" if header == "score" else "left")
    for pql in summary.top_pqls:
        top.add_row(
            pql.get("name") or pql["account_id"],
            pql.get("routed_to") or "",
            f"{pql['score']:.1f}",
            pql["tier"],
            pql.get("playbook") or "",
            pql["reasons"].split("\n")[0].removeprefix("+ "),
        )
    console.print(top)
    if summary.model_report:
        console.print(f"model report: {summary.model_report}")
    console.print(f"run {summary.run_id} (Prefect flow run {summary.flow_run_id})", highlight=False)


def summary_document(summary: RunSummary) -> dict[str, Any]:
    """The run as `pql score --json` prints it: what `print_summary` shows, with every reason line of
    the top PQLs and, for a dry run, every planned change."""
    return {
        "kind": summary.kind,
        "as_of": summary.as_of,
        "dry_run": summary.dry_run,
        "run_id": summary.run_id,
        "flow_run_id": summary.flow_run_id,
        "model": {
            "version": summary.model_version,
            "used_fallback": summary.used_fallback,
            "report": summary.model_report,
            "warnings": summary.model_warnings,
        },
        "accounts_scored": summary.accounts_scored,
        "pqls": summary.pqls,
        "new_pqls": summary.new_pqls,
        "dropped_pqls": summary.dropped_pqls,
        "tiers": summary.tiers,
        "ineligible": summary.ineligible,
        "validation": summary.validation,
        "monitoring": summary.monitoring or None,
        "top_pqls": [
            {**pql, "reasons": [line for line in pql["reasons"].split("\n") if line]}
            for pql in summary.top_pqls
        ],
        "changes": records(summary.changes) if summary.changes is not None else None,
    }


def register(app: typer.Typer) -> None:
    @app.command("score")
    @cli_errors
    def score(
        ctx: typer.Context,
        as_of: Annotated[
            str | None,
            typer.Option(
                "--as-of",
                help="Score as of the start of this day (YYYY-MM-DD, in the configured time zone); "
                "default: the start of today.",
            ),
        ] = None,
        dry_run: Annotated[
            bool, typer.Option("--dry-run", help="Show new PQLs, dropped PQLs and tier moves; write nothing.")
        ] = False,
        as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
    ) -> None:
        """Run the nightly scoring flow: validate, score, explain, write the PQL list to the CRM."""
        settings = settings_of(ctx)
        moment = instant_option(as_of, "--as-of", settings)
        quiet_prefect()
        from pql.flows.nightly import nightly

        summary = run_flow(lambda: nightly(as_of=moment, dry_run=dry_run, config=flow_config(ctx)))
        if as_json:
            for warning in summary.model_warnings:
                warn(warning)
            print_json(summary_document(summary))
            return
        print_summary(summary)

    @app.command("backfill")
    @cli_errors
    def backfill(
        ctx: typer.Context,
        start: Annotated[str, typer.Argument(help="First day to score (YYYY-MM-DD).")],
        end: Annotated[str, typer.Argument(help="Last day to score (YYYY-MM-DD), inclusive.")],
        update_current: Annotated[
            bool,
            typer.Option(
                "--update-current", help="Also make the last day's scores the current list in pql_scores."
            ),
        ] = False,
    ) -> None:
        """Score every day from START to END into the history (pql_score_history), oldest first."""
        settings = settings_of(ctx)
        try:
            first, last = date.fromisoformat(start), date.fromisoformat(end)
        except ValueError as exc:
            raise typer.BadParameter(f"dates must look like 2026-01-31 ({exc}).") from exc
        quiet_prefect()
        from pql.flows.backfill import backfill as backfill_flow
        from pql.flows.tasks import as_of_dates

        as_of_dates(first, last, settings)  # a backwards range stops here, before any run starts

        with (
            progress_bar("backfill", "days") as progress,
            prefect_console_on(errors) if progress else nullcontext(),
        ):
            summaries = run_flow(
                lambda: backfill_flow(
                    start=first,
                    end=last,
                    update_current=update_current,
                    config=flow_config(ctx),
                    progress=progress,
                )
            )
        table = Table(title=f"backfill {first} .. {last}", title_justify="left")
        for header in ("as of (UTC)", "accounts", "PQLs", "new", "dropped", "validation", "run"):
            table.add_column(header)
        for summary in summaries:
            table.add_row(
                f"{summary.as_of:%Y-%m-%d %H:%M}",
                _fmt_count(summary.accounts_scored),
                _fmt_count(summary.pqls),
                _fmt_count(summary.new_pqls),
                _fmt_count(summary.dropped_pqls),
                summary.validation.get("status", ""),
                summary.run_id or "",
            )
        console.print(table)
        where = "pql_score_history and pql_scores (last day)" if update_current else "pql_score_history only"
        console.print(f"{len(summaries)} day(s) written to {where}.")

    @app.command("serve")
    @cli_errors
    def serve(
        ctx: typer.Context,
        file: Annotated[
            Path | None,
            typer.Option(
                "--file", help="The deployments file (default: ./prefect.yaml, else the project's)."
            ),
        ] = None,
        limit: Annotated[
            int | None, typer.Option("--limit", min=1, help="Most flow runs at once (default: no limit).")
        ] = None,
        port: Annotated[
            int,
            typer.Option("--port", help="Port for a local Prefect server (when PREFECT_API_URL is unset)."),
        ] = 4200,
    ) -> None:
        """Serve the deployments of prefect.yaml (nightly, retrain, backfill) from this process.

        With PREFECT_API_URL set, they are registered with that Prefect server; without it, a local
        Prefect server (scheduler and UI) runs alongside for as long as this command does.
        """
        settings = settings_of(ctx)
        quiet_prefect(console_level="INFO")
        from prefect import serve as serve_deployments
        from prefect.settings import PREFECT_API_URL, temporary_settings

        from pql.flows.deployments import default_prefect_yaml, runner_deployments
        from pql.flows.server import local_server

        config = flow_config(ctx)
        deployments = runner_deployments(
            file or default_prefect_yaml(), settings, parameters={"config": config} if config else None
        )
        with ExitStack() as stack:
            if not PREFECT_API_URL.value():
                log = settings.state_dir / "prefect-server.log"
                api_url = stack.enter_context(local_server(port, log))
                stack.enter_context(temporary_settings({PREFECT_API_URL: api_url}))
                console.print(f"local Prefect server: UI at {api_url.removesuffix('/api')}, log in {log}")
            names = ", ".join(deployment.name for deployment in deployments)
            console.print(f"serving {names}; stop with Ctrl+C", highlight=False)
            serve_deployments(*deployments, limit=limit)

"""`pql report` (outcomes, lift, SLA and drift as one HTML page) and `pql sla` (follow-up today)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import pandas as pd
import typer
from rich.table import Table

from pql.clock import start_of_day, today_in
from pql.commands import cli_errors, console, instant_option, require_database_files, settings_of
from pql.commands.output import JSON_HELP, print_json, records
from pql.config import ConfigError
from pql.db import databases

if TYPE_CHECKING:
    from pql.outcomes.evaluation import SlaEvaluation

REPORT_DAYS = 182


def _cell(value: object, kind: str = "") -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "-"
    if kind == "percent":
        return f"{float(value):.0%}"
    if kind == "hours":
        return f"{float(value):.1f}"
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d %H:%M")
    return str(value)


def _compliance_table(compliance: pd.DataFrame, sla_hours: int, key: str = "owner") -> Table:
    table = Table(title=f"First touch within {sla_hours} h, per {key}")
    for column in (key, "PQLs", "due", "met", "late", "overdue", "pending", "compliance", "median h"):
        table.add_column(column, justify="left" if column == key else "right", no_wrap=column == key)
    for row in compliance.itertuples(index=False):
        table.add_row(
            str(getattr(row, key)),
            str(row.pqls),
            str(row.due),
            str(row.met),
            str(row.late),
            str(row.overdue),
            str(row.pending),
            _cell(row.compliance, "percent"),
            _cell(row.median_hours_to_first_touch, "hours"),
        )
    return table


def _overdue_table(overdue: pd.DataFrame) -> Table:
    table = Table(title=f"Overdue PQLs, still PQLs now ({len(overdue)})")
    for column in ("account", "owner", "PQL since", "deadline", "hours overdue", "score", "tier", "playbook"):
        table.add_column(
            column,
            justify="right" if column in ("hours overdue", "score") else "left",
            no_wrap=column in ("account", "owner"),
        )
    for row in overdue.itertuples(index=False):
        table.add_row(
            row.account_id,
            row.owner,
            _cell(row.entered_at),
            _cell(row.deadline),
            _cell(row.hours_overdue, "hours"),
            f"{row.score:.0f}",
            _cell(row.tier),
            _cell(row.playbook),
        )
    return table


def sla_document(result: SlaEvaluation, *, overdue_only: bool) -> dict[str, Any]:
    """The follow-up as `pql sla --json` prints it: every row of the tables, values unrounded;
    `by_owner` and `by_playbook` are null with --overdue, as the text then shows only the overdue list."""
    return {
        "as_of": result.as_of,
        "since": result.since,
        "sla_hours": result.sla_hours,
        "touch_source": result.touch_source,
        "source_line": result.source_line,
        "by_owner": None if overdue_only else records(result.by_owner),
        "by_playbook": None if overdue_only else records(result.by_playbook),
        "overdue": records(result.overdue),
    }


def register(app: typer.Typer) -> None:
    @app.command("report")
    @cli_errors
    def report(
        ctx: typer.Context,
        since: Annotated[
            str | None,
            typer.Option(help=f"First day of PQL entries to include (default: {REPORT_DAYS} days ago)."),
        ] = None,
        until: Annotated[
            str | None,
            typer.Option(help="End of the period and of observed outcomes (default: start of today)."),
        ] = None,
        out: Annotated[
            Path | None,
            typer.Option(help="HTML file to write (default: <state_dir>/reports/pql-report-<until>.html)."),
        ] = None,
    ) -> None:
        """Write the outcomes report: PQL volume, conversion by tier, lift, control uplift, SLA and drift."""
        from pql.outcomes.report import write_report

        settings = settings_of(ctx)
        end = instant_option(until, "--until", settings) or start_of_day(
            today_in(settings.zone), settings.zone
        )
        start = instant_option(since, "--since", settings) or end - timedelta(days=REPORT_DAYS)
        if start >= end:
            raise ConfigError(f"--since ({start:%Y-%m-%d}) must be before --until ({end:%Y-%m-%d}).")
        require_database_files(settings.source_database_url, settings.crm_database_url)
        path = out or settings.state_dir / "reports" / f"pql-report-{end:%Y-%m-%d}.html"
        written = write_report(settings, since=start, until=end, out=path)
        console.print(f"report written to {written}")

    @app.command("sla")
    @cli_errors
    def sla(
        ctx: typer.Context,
        overdue: Annotated[bool, typer.Option("--overdue", help="Print only the overdue PQL list.")] = False,
        since: Annotated[
            str | None,
            typer.Option(help="First day of PQL entries to include (default: scoring.max_pql_age_days ago)."),
        ] = None,
        as_of: Annotated[
            str | None, typer.Option("--as-of", help="Judge the SLA as of this moment (default: now).")
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
    ) -> None:
        """Show each owner's and playbook's share of PQLs first touched within outcomes.sla_hours, where the
        touches came from, and the overdue PQLs."""
        from pql.outcomes.evaluation import evaluate_sla

        settings = settings_of(ctx)
        now = instant_option(as_of, "--as-of", settings) or datetime.now(UTC).replace(tzinfo=None)
        start = instant_option(since, "--since", settings) or now - timedelta(
            days=settings.scoring.max_pql_age_days
        )
        require_database_files(settings.source_database_url, settings.crm_database_url)
        with databases(settings) as dbs:
            result = evaluate_sla(dbs, settings, since=start, as_of=now)
        if as_json:
            print_json(sla_document(result, overdue_only=overdue))
            return
        if not overdue:
            console.print(_compliance_table(result.by_owner, result.sla_hours))
            console.print(_compliance_table(result.by_playbook, result.sla_hours, "playbook"))
            console.print(f"{result.source_line}; PQLs since {start:%Y-%m-%d %H:%M} UTC")
        console.print(_overdue_table(result.overdue))

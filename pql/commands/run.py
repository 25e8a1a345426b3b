"""`pql score`, `pql backfill` and `pql serve`: the flows, run from the command line.

Prefect is imported only when a command runs, after its console output is turned down: the flow runs
still log everything to the Prefect API (the UI shows it), but the terminal gets pql's own summary.
"""

from __future__ import annotations

from contextlib import ExitStack, nullcontext
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from pql.api import Project
from pql.commands import cli_errors, console, errors, instant_option, settings_of
from pql.commands.output import JSON_HELP, print_json, records, warn
from pql.commands.progress import prefect_console_on, progress_bar
from pql.config import config_path
from pql.flows.runner import quiet_prefect, run_flow

if TYPE_CHECKING:
    from pql.flows.summary import RunSummary


def flow_config(ctx: typer.Context) -> str | None:
    """The settings file to hand to a flow run (absolute, so a run in another directory reads the same)."""
    found = config_path((ctx.find_root().params or {}).get("config"))
    return str(found.resolve()) if found is not None else None


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
    if summary.alerts:
        console.print(escape(summary.alerts), highlight=False)
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
        "alerts": summary.alerts,
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
        with Project(settings, config=flow_config(ctx)) as project:
            summary = project.score(moment, dry_run=dry_run)
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

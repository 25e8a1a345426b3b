"""`pql demo-data`: write a simulated product-led world into the source tables."""

from __future__ import annotations

from typing import Annotated

import typer

from pql.commands import cli_errors, console, instant_option, settings_of
from pql.commands.progress import progress_bar
from pql.db import databases, redacted
from pql.demo.world import DemoWorldSummary, write_demo_world


def summary_lines(summary: DemoWorldSummary, url: str) -> list[str]:
    """What the command prints about the world it wrote."""
    return [
        f"demo world written to {redacted(url)}",
        f"  window        {summary.start:%Y-%m-%d %H:%M} to {summary.end:%Y-%m-%d %H:%M} UTC (end exclusive)",
        f"  accounts      {summary.accounts:>12,}",
        f"  users         {summary.users:>12,}",
        f"  events        {summary.events:>12,}",
        f"  plan changes  {summary.plan_changes:>12,}",
        f"  trials        {summary.trials:>12,}",
        f"  conversions   {summary.conversions:>12,}",
        f"  time taken    {summary.seconds:>11.1f}s"
        f"  ({summary.events / max(summary.seconds, 1e-9):,.0f} events/s)",
    ]


def register(app: typer.Typer) -> None:
    @app.command("demo-data")
    @cli_errors
    def demo_data(
        ctx: typer.Context,
        accounts: Annotated[int, typer.Option("--accounts", min=1, help="Accounts to simulate.")] = 2000,
        days: Annotated[int, typer.Option("--days", min=1, help="Days of history before --end.")] = 180,
        seed: Annotated[int, typer.Option("--seed", min=0, help="Random seed: same seed, same world.")] = 0,
        end: Annotated[
            str | None,
            typer.Option(
                "--end",
                help="Instant the world stops, exclusive (ISO date or date-time in the configured time zone;"
                " default: start of today, so the world ends yesterday).",
            ),
        ] = None,
    ) -> None:
        """Replace the demo rows of the source tables with a simulated world (creates missing tables)."""
        settings = settings_of(ctx)
        end_at = instant_option(end, "--end", settings)
        with databases(settings) as dbs, progress_bar("simulating", "days") as progress:
            summary = write_demo_world(
                dbs.source,
                dbs.source_tables,
                settings,
                accounts=accounts,
                days=days,
                seed=seed,
                end=end_at,
                progress=progress,
            )
        for line in summary_lines(summary, settings.source_database_url):
            console.print(line, highlight=False)

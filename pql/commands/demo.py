"""`pql demo`: the whole pipeline on an embedded demo world, in one command."""

from __future__ import annotations

from typing import Annotated

import sqlalchemy as sa
import typer

from pql.commands import cli_errors, console, settings_of
from pql.commands.models import outcome_lines
from pql.commands.progress import progress_bar
from pql.commands.run import flow_config, print_summary
from pql.db import databases, redacted
from pql.demo.world import write_demo_world
from pql.flows.runner import quiet_prefect, run_flow
from pql.schema import create_tables


def register(app: typer.Typer) -> None:
    @app.command("demo")
    @cli_errors
    def demo(
        ctx: typer.Context,
        accounts: Annotated[
            int, typer.Option("--accounts", min=50, help="Accounts in a new demo world.")
        ] = 4000,
        days: Annotated[
            int, typer.Option("--days", min=60, help="Days of history in a new demo world.")
        ] = 240,
        seed: Annotated[int, typer.Option("--seed", help="Seed of a new demo world.")] = 7,
        fresh: Annotated[
            bool, typer.Option("--fresh", help="Regenerate the demo world even if the source has events.")
        ] = False,
    ) -> None:
        """Generate a demo world if none exists, train a model, run the nightly flow, print the top PQLs."""
        from pql.models.training import TooLittleDataError, train_and_register

        settings = settings_of(ctx)
        with databases(settings) as dbs:
            tables = dbs.source_tables
            create_tables(dbs.source, tables)
            create_tables(dbs.crm, dbs.output_tables)
            # Accounts are written last, so an interrupted generation leaves none and is redone here.
            with dbs.source.connect() as conn:
                has_world = conn.execute(sa.select(tables.accounts.c.account_id).limit(1)).first() is not None
            where = redacted(settings.source_database_url)
            if has_world and not fresh:
                console.print(f"1/3 using the accounts already in {where} (--fresh regenerates a demo world)")
            else:
                console.print(
                    f"1/3 generating a demo world of {accounts:,} accounts over {days} days in {where}"
                )
                with progress_bar("simulating", "days") as progress:
                    world = write_demo_world(
                        dbs.source,
                        tables,
                        settings,
                        accounts=accounts,
                        days=days,
                        seed=seed,
                        progress=progress,
                    )
                console.print(
                    f"    {world.events:,} events, {world.users:,} users, {world.trials:,} trials, "
                    f"{world.conversions:,} conversions to paid ({world.seconds:.1f} s)"
                )
            console.print("2/3 training: backtest against baselines, register, promote if better")
            try:
                with progress_bar("training", "steps") as progress:
                    outcome = train_and_register(dbs.source, tables, settings, progress=progress)
            except TooLittleDataError as refused:
                outcome = refused.outcome
        for line in outcome_lines(outcome):
            console.print(f"    {line}", highlight=False)
        console.print("3/3 nightly scoring flow (Prefect)")
        quiet_prefect()
        from pql.flows.nightly import nightly

        summary = run_flow(lambda: nightly(config=flow_config(ctx)))
        print_summary(summary)
        console.print(
            "Next: `pql pqls --owner NAME` for a rep's list, `pql models show` for the model report."
        )

"""`pql init`: create the contract and output tables."""

from __future__ import annotations

import typer

from pql.commands import cli_errors, console, settings_of
from pql.db import databases, redacted
from pql.schema import create_tables


def register(app: typer.Typer) -> None:
    @app.command("init")
    @cli_errors
    def init(ctx: typer.Context) -> None:
        """Create any missing source-contract tables and the pipeline's output tables."""
        settings = settings_of(ctx)
        with databases(settings) as dbs:
            create_tables(dbs.source, dbs.source_tables)
            create_tables(dbs.crm, dbs.output_tables)
        console.print(f"source tables ready in {redacted(settings.source_database_url)}")
        console.print(f"output tables ready in {redacted(settings.crm_database_url)}")

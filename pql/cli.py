"""The `pql` command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pql.commands import data, demo, demo_data, inspect, load, models, pqls, report, run

app = typer.Typer(
    name="pql",
    help="Find product-qualified leads and write them, with reasons, to the CRM.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def main(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Settings file (default: $PQL_CONFIG, then ./pql.toml)."),
    ] = None,
) -> None:
    """Find product-qualified leads and write them, with reasons, to the CRM."""


for module in (demo, demo_data, load, data, inspect, models, run, pqls, report):
    module.register(app)

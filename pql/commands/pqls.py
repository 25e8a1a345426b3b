"""`pql pqls`: a rep's PQL list, read from the CRM database."""

from __future__ import annotations

from typing import Annotated

import pandas as pd
import typer
from rich.markup import escape
from rich.table import Table

from pql.api import Project
from pql.commands import cli_errors, console, settings_of


def _offer(row: object) -> str:
    playbook = "" if pd.isna(row.playbook) else str(row.playbook).replace("_", " ")
    lines = [playbook]
    if not pd.isna(row.trial_days_left):
        lines.append(f"{float(row.trial_days_left):.0f} days left in trial")
    if not pd.isna(row.first_pql_at):
        lines.append(f"PQL since {row.first_pql_at:%Y-%m-%d}")
    return "\n".join(line for line in lines if line)


def pql_table(pqls: pd.DataFrame, names: dict[str, str], *, show_routing: bool) -> Table:
    """The list as a rich table: who to call, how hot, what to offer, and why."""
    table = Table(show_lines=True, expand=True)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("account", no_wrap=True)
    table.add_column("score", no_wrap=True)
    table.add_column("offer", no_wrap=True)
    table.add_column("why", ratio=1, min_width=30)
    for place, row in enumerate(pqls.itertuples(index=False), start=1):
        # Names, ids and reasons are data: escaped so a "[" in them is never read as rich markup.
        account = [escape(names.get(row.account_id, "")), f"[dim]{escape(str(row.account_id))}[/]"]
        if show_routing:
            account.append(f"-> {escape(str(row.routed_to))}")
        tier = "" if pd.isna(row.tier) else str(row.tier).replace("_", " ")
        grade = "" if pd.isna(row.grade) else f" · grade {row.grade}"
        fit = "" if pd.isna(row.fit_score) else f"\nfit {row.fit_score:.0f}"
        table.add_row(
            str(place),
            "\n".join(line for line in account if line),
            f"[bold]{row.score:.1f}[/]\n{tier}{grade}{fit}",
            _offer(row),
            "" if pd.isna(row.reasons_text) else escape(str(row.reasons_text)),
        )
    return table


def register(app: typer.Typer) -> None:
    @app.command("pqls")
    @cli_errors
    def pqls(
        ctx: typer.Context,
        owner: Annotated[
            str | None, typer.Option("--owner", help="Only PQLs routed to this owner (or the unowned queue).")
        ] = None,
        top: Annotated[int, typer.Option("--top", min=1, help="Show at most this many, best first.")] = 25,
    ) -> None:
        """Print the current PQL list with score, tier, grade, playbook, trial days left and reasons."""
        with Project(settings_of(ctx)) as project:
            listed = project.pqls(owner=owner, top=top)
        names = dict(zip(listed["account_id"], listed["name"].fillna(""), strict=True))
        whose = f" routed to {owner}" if owner else ""
        if listed.empty:
            console.print(f"No PQLs{whose} right now.")
            return
        as_of = listed["as_of"].max()
        console.print(f"PQLs{whose} as of {as_of:%Y-%m-%d %H:%M} UTC (top {len(listed)}, best first)")
        console.print(pql_table(listed, names, show_routing=owner is None))

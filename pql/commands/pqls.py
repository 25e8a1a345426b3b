"""`pql pqls`: a rep's PQL list, read from the CRM database."""

from __future__ import annotations

import json
from typing import Annotated, Any

import pandas as pd
import typer
from rich.markup import escape
from rich.table import Table

from pql.api import Project
from pql.commands import cli_errors, console, settings_of
from pql.commands.output import JSON_HELP, jsonable, print_json


def _offer(row: object) -> str:
    playbook = "" if pd.isna(row.playbook) else str(row.playbook).replace("_", " ")
    lines = [playbook]
    if not pd.isna(row.trial_days_left):
        lines.append(f"{float(row.trial_days_left):.0f} days left in trial")
    if not pd.isna(row.first_pql_at):
        lines.append(f"PQL since {row.first_pql_at:%Y-%m-%d}")
    return "\n".join(line for line in lines if line)


def _why(row: object) -> str:
    """The reasons, then what to say (reasons and talking points are data: escaped, never markup)."""
    lines = [] if pd.isna(row.reasons_text) else [escape(str(row.reasons_text))]
    if not pd.isna(row.talking_point):
        lines.append(f"[bold]say:[/] {escape(str(row.talking_point))}")
    return "\n".join(line for line in lines if line)


def _accepted(row: object) -> bool:
    """Whether sales accepted the PQL (False when the list predates the column)."""
    accepted = getattr(row, "is_sales_accepted", None)
    return bool(pd.notna(accepted) and accepted)


def pql_table(pqls: pd.DataFrame, names: dict[str, str], *, show_routing: bool) -> Table:
    """The list as a rich table: who to call, how hot, what to offer, why, and what to say."""
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
        if _accepted(row):
            account.append("[green]✓ accepted by sales[/]")
        tier = "" if pd.isna(row.tier) else str(row.tier).replace("_", " ")
        grade = "" if pd.isna(row.grade) else f" · grade {row.grade}"
        fit = "" if pd.isna(row.fit_score) else f"\nfit {row.fit_score:.0f}"
        table.add_row(
            str(place),
            "\n".join(line for line in account if line),
            f"[bold]{row.score:.1f}[/]\n{tier}{grade}{fit}",
            _offer(row),
            _why(row),
        )
    return table


def _text(value: object) -> str | None:
    return None if pd.isna(value) else str(value)


def pql_document(pqls: pd.DataFrame, *, owner: str | None, top: int) -> dict[str, Any]:
    """The list (`Project.pqls`) as `pql pqls --json` prints it: the table's rows, best first, values
    unrounded, every reason line, and the reasons' structured form (`reasons_detail`) as stored."""
    rows = []
    for place, row in enumerate(pqls.itertuples(index=False), start=1):
        detail = _text(row.reasons_json)
        rows.append(
            {
                "rank": place,
                "account_id": str(row.account_id),
                "name": _text(row.name),
                "routed_to": _text(row.routed_to),
                "score": row.score,
                "probability": row.probability,
                "tier": _text(row.tier),
                "grade": _text(row.grade),
                "fit_score": row.fit_score,
                "playbook": _text(row.playbook),
                "trial_days_left": row.trial_days_left,
                "first_pql_at": row.first_pql_at,
                "is_sales_accepted": _accepted(row),
                "reasons": (_text(row.reasons_text) or "").splitlines(),
                "reasons_detail": json.loads(detail) if detail else None,
                "model_version": row.model_version,
                "scored_at": row.scored_at,
            }
        )
    as_of = pqls["as_of"].max() if not pqls.empty else None
    return jsonable({"as_of": as_of, "owner": owner, "top": top, "count": len(rows), "pqls": rows})


def register(app: typer.Typer) -> None:
    @app.command("pqls")
    @cli_errors
    def pqls(
        ctx: typer.Context,
        owner: Annotated[
            str | None, typer.Option("--owner", help="Only PQLs routed to this owner (or the unowned queue).")
        ] = None,
        top: Annotated[int, typer.Option("--top", min=1, help="Show at most this many, best first.")] = 25,
        as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
    ) -> None:
        """Print the current PQL list with score, tier, grade, playbook, trial days left, reasons and
        what to say."""
        with Project(settings_of(ctx)) as project:
            listed = project.pqls(owner=owner, top=top)
        if as_json:
            print_json(pql_document(listed, owner=owner, top=top))
            return
        names = dict(zip(listed["account_id"], listed["name"].fillna(""), strict=True))
        whose = f" routed to {owner}" if owner else ""
        if listed.empty:
            console.print(f"No PQLs{whose} right now.")
            return
        as_of = listed["as_of"].max()
        console.print(f"PQLs{whose} as of {as_of:%Y-%m-%d %H:%M} UTC (top {len(listed)}, best first)")
        console.print(pql_table(listed, names, show_routing=owner is None))

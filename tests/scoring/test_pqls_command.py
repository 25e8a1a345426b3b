"""`pql pqls [--owner NAME] [--top N]`: a rep's list, read from the CRM database."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
from typer.testing import CliRunner

from pql.bulk import bulk_insert
from pql.config import load_settings
from pql.db import create_engine
from pql.schema import create_tables, output_tables, source_tables
from pql.scoring.writeback import write_run

AS_OF = datetime(2024, 6, 3)


def pql_row(account_id: str, score: float, owner: str, *, plan_trial: bool = False) -> dict:
    return {
        "account_id": account_id,
        "probability": score / 200,
        "score": score,
        "tier": "high",
        "fit_score": 55.0,
        "grade": "B",
        "is_pql": True,
        "first_pql_at": AS_OF,
        "routed_to": owner,
        "playbook": "trial_conversion" if plan_trial else "freemium_upgrade",
        "trial_days_left": 4.0 if plan_trial else None,
        "reasons_json": "[]",
        "reasons_text": f"+ {account_id} hit the usage limit 3 times in the last 7 days",
        "ineligible_reason": None,
        "talking_point": "hit the usage limit 3 times: offer the plan that lifts it",
    }


def paid_row(account_id: str, score: float) -> dict:
    """An account on a paid plan as a run writes it: scored, but no tier, grade, reasons or PQL flag."""
    untiered = {"tier": None, "grade": None, "is_pql": False, "first_pql_at": None, "routed_to": None}
    quiet = {
        "playbook": None,
        "reasons_json": "[]",
        "reasons_text": "",
        "ineligible_reason": "on a paid plan",
        "talking_point": None,
    }
    return pql_row(account_id, score, "ana") | untiered | quiet


def write_list(source_url: str, crm_url: str, rows: list[dict]) -> None:
    settings = load_settings()
    source = create_engine(source_url)
    sources = source_tables(settings.tables)
    create_tables(source, sources)
    names = pd.DataFrame(
        {
            "account_id": [r["account_id"] for r in rows],
            "name": [f"{r['account_id'].title()} Ltd" for r in rows],
        }
    )
    with source.begin() as conn:
        bulk_insert(conn, sources.accounts, names.assign(created_at=datetime(2024, 1, 1)))
    crm = create_engine(crm_url)
    tables = output_tables(settings.tables)
    create_tables(crm, tables)
    run = {"run_id": "run-1", "as_of": AS_OF, "started_at": AS_OF, "model_version": "m1"}
    frame = pd.DataFrame(rows, columns=list(pql_row("x", 1, "x")))
    write_run(crm, tables, frame, run)
    source.dispose()
    crm.dispose()


def test_pqls_lists_an_owners_pqls_best_first_with_playbook_and_reasons(app, databases) -> None:
    write_list(
        *databases,
        [pql_row("acme", 70, "ana", plan_trial=True), pql_row("zeta", 90, "ana"), pql_row("bolt", 95, "bob")],
    )
    result = CliRunner().invoke(app, ["pqls", "--owner", "ana"])
    assert result.exit_code == 0, result.output
    assert "Zeta Ltd" in result.output and "Acme Ltd" in result.output and "Bolt" not in result.output
    assert result.output.index("Zeta Ltd") < result.output.index("Acme Ltd")
    assert "trial conversion" in result.output and "freemium upgrade" in result.output
    assert "hit the usage limit 3 times" in result.output


def test_pqls_says_what_to_say_under_the_reasons(app, databases) -> None:
    quiet = pql_row("zeta", 90, "ana") | {"talking_point": None}
    write_list(*databases, [pql_row("acme", 70, "ana"), quiet])
    result = CliRunner().invoke(app, ["pqls"])
    assert result.exit_code == 0, result.output
    reasons = result.output.index("acme hit the usage limit 3 times in the last 7 days")
    said = result.output.index("say: hit the usage limit 3 times: offer the plan that lifts it")
    assert reasons < said
    assert result.output.count("say:") == 1


def test_pqls_shows_a_talking_point_as_text_never_as_markup(app, databases) -> None:
    write_list(*databases, [pql_row("acme", 70, "ana") | {"talking_point": "offer [bold]Team[/bold] [red]"}])
    result = CliRunner().invoke(app, ["pqls"])
    assert result.exit_code == 0, result.output
    assert "say: offer [bold]Team[/bold] [red]" in result.output


def test_pqls_top_keeps_only_the_best(app, databases) -> None:
    write_list(
        *databases, [pql_row("acme", 70, "ana"), pql_row("zeta", 90, "ana"), pql_row("bolt", 95, "bob")]
    )
    result = CliRunner().invoke(app, ["pqls", "--top", "1"])
    assert result.exit_code == 0, result.output
    assert "Bolt Ltd" in result.output and "Zeta" not in result.output


def test_pqls_never_lists_an_account_on_a_paid_plan(app, databases) -> None:
    write_list(*databases, [pql_row("acme", 70, "ana"), paid_row("cash", 99)])
    result = CliRunner().invoke(app, ["pqls"])
    assert result.exit_code == 0, result.output
    assert "Acme Ltd" in result.output and "Cash" not in result.output


def test_pqls_for_an_owner_without_pqls_says_so(app, databases) -> None:
    write_list(*databases, [pql_row("acme", 70, "ana")])
    result = CliRunner().invoke(app, ["pqls", "--owner", "carol"])
    assert result.exit_code == 0
    assert "No PQLs routed to carol right now." in result.output


def test_pqls_before_init_fails_with_a_hint(app, databases) -> None:
    result = CliRunner().invoke(app, ["pqls"])
    assert result.exit_code == 1
    assert "pql init" in result.output

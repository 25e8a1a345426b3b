"""`pql pqls --json`: the same PQLs as the table, best first, with unrounded values and ISO dates."""

from __future__ import annotations

import json

import typer
from test_pqls_command import AS_OF, paid_row, pql_row, write_list
from typer.testing import CliRunner, Result


def invoke(app: typer.Typer, *args: str) -> Result:
    return CliRunner().invoke(app, ["pqls", *args])


def test_the_json_lists_the_tables_accounts_in_its_order_with_their_scores(app, databases) -> None:
    write_list(
        *databases,
        [
            pql_row("acme", 70.25, "ana", plan_trial=True),
            pql_row("zeta", 90, "ana"),
            pql_row("bolt", 95, "bob"),
        ],
    )
    text, document = invoke(app), invoke(app, "--json")
    assert text.exit_code == 0 and document.exit_code == 0, text.output + document.output
    found = json.loads(document.stdout)
    listed = found["pqls"]
    names = [row["name"] for row in listed]
    assert names == ["Bolt Ltd", "Zeta Ltd", "Acme Ltd"]
    assert [text.stdout.index(name) for name in names] == sorted(text.stdout.index(name) for name in names)
    assert [row["score"] for row in listed] == [95.0, 90.0, 70.25]  # the table shows 70.2
    assert all(f"{row['score']:.1f}" in text.stdout for row in listed)
    assert found["count"] == 3 and found["as_of"] == AS_OF.isoformat()


def test_each_pql_carries_what_the_table_shows_as_plain_values(app, databases) -> None:
    write_list(*databases, [pql_row("acme", 70, "ana", plan_trial=True), pql_row("zeta", 90, "ana")])
    found = json.loads(invoke(app, "--owner", "ana", "--json").stdout)
    assert found["owner"] == "ana"
    acme = next(row for row in found["pqls"] if row["account_id"] == "acme")
    assert acme["rank"] == 2 and acme["routed_to"] == "ana"
    assert acme["tier"] == "high" and acme["grade"] == "B" and acme["fit_score"] == 55.0
    assert acme["playbook"] == "trial_conversion" and acme["trial_days_left"] == 4.0
    assert acme["first_pql_at"] == AS_OF.isoformat()
    assert acme["reasons"] == ["+ acme hit the usage limit 3 times in the last 7 days"]
    zeta = next(row for row in found["pqls"] if row["account_id"] == "zeta")
    assert zeta["trial_days_left"] is None


def test_an_empty_list_is_an_empty_json_list(app, databases) -> None:
    write_list(*databases, [paid_row("cash", 99)])
    result = invoke(app, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"as_of": None, "owner": None, "top": 25, "count": 0, "pqls": []}


def test_a_missing_table_keeps_exit_code_1_with_the_message_on_stderr_only(app, databases) -> None:
    result = invoke(app, "--json")
    assert result.exit_code == 1
    assert result.stdout == "" and "pql init" in result.stderr

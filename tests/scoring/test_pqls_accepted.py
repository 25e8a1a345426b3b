"""`pql pqls` marks the PQLs sales accepted, in the table and in `--json`."""

from __future__ import annotations

import json
from datetime import datetime

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from pql.config import load_settings
from pql.db import create_engine
from pql.schema import create_tables, output_tables
from pql.scoring.writeback import write_run

AS_OF = datetime(2026, 5, 10)


def listed_pql(account_id: str, score: float, *, accepted: bool) -> dict:
    return {
        "account_id": account_id,
        "probability": score / 200,
        "score": score,
        "tier": "high",
        "is_pql": True,
        "first_pql_at": AS_OF,
        "routed_to": "ana",
        "playbook": "freemium_upgrade",
        "reasons_text": f"+ {account_id} invited 4 teammates",
        "sales_decision": "accepted" if accepted else None,
        "sales_decided_at": AS_OF if accepted else None,
        "is_sales_accepted": accepted,
    }


@pytest.fixture
def listed(app: typer.Typer, databases: tuple[str, str]) -> typer.Typer:
    """`pql pqls` on a current list of two PQLs: "owned" accepted, "fresh" not."""
    engine = create_engine(databases[1])
    tables = output_tables(load_settings().tables)
    create_tables(engine, tables)
    rows = pd.DataFrame([listed_pql("owned", 90, accepted=True), listed_pql("fresh", 70, accepted=False)])
    run = {"run_id": "r1", "as_of": AS_OF, "started_at": AS_OF, "model_version": "m1"}
    write_run(engine, tables, rows, run)
    engine.dispose()
    return app


def test_pqls_marks_each_pql_sales_accepted_and_only_those(listed: typer.Typer) -> None:
    result = CliRunner().invoke(listed, ["pqls"])

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    marked = [line for line in lines if "accepted by sales" in line]
    assert len(marked) == 1
    owned_at = next(i for i, line in enumerate(lines) if "owned" in line)
    fresh_at = next(i for i, line in enumerate(lines) if "fresh" in line)
    assert owned_at < lines.index(marked[0]) < fresh_at


def test_pqls_json_says_which_pqls_sales_accepted(listed: typer.Typer) -> None:
    result = CliRunner().invoke(listed, ["pqls", "--json"])

    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)["pqls"]
    assert {row["account_id"]: row["is_sales_accepted"] for row in listed} == {"owned": True, "fresh": False}

"""The markdown report each run publishes: what an operator reads first when something looks wrong."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from pql.flows.artifacts import run_markdown, training_markdown
from pql.flows.summary import RunSummary
from pql.models.training import TrainOutcome

VALIDATION = {
    "status": "warned",
    "failed": [],
    "warned": ["events.known_names"],
    "quarantined": [],
    "quarantined_rows": 2,
    "stages": [
        {
            "stage": "events",
            "status": "warned",
            "passed": ["events.window_not_empty", "events.ids_not_null"],
            "skipped": [],
            "problems": [
                {"check": "events.known_names", "status": "warned", "rows": 12, "hint": "Add the new names."}
            ],
        }
    ],
}


def _summary(**changes: object) -> RunSummary:
    values: dict[str, object] = {
        "kind": "nightly",
        "as_of": datetime(2026, 3, 2),
        "run_id": "run-1",
        "flow_run_id": "flow-1",
        "model_version": "20260301T020000Z-abcd1234",
        "used_fallback": False,
        "model_report": "/srv/pql/.pql/models/20260301T020000Z-abcd1234/report.html",
        "accounts_scored": 1200,
        "pqls": 40,
        "new_pqls": 7,
        "dropped_pqls": 3,
        "tiers": {"very_high": 12, "high": 108, "medium": 240, "low": 840},
        "validation": VALIDATION,
        "top_pqls": [
            {
                "account_id": "a-1",
                "name": "Acme | Co",
                "routed_to": "Priya Shah",
                "score": 91.25,
                "tier": "very_high",
                "playbook": "trial_conversion",
                "reasons": "+ invited 4 teammates in the last 7 days\n- no integration connected",
            }
        ],
    }
    return RunSummary(**{**values, **changes})  # type: ignore[arg-type]


@pytest.fixture
def markdown() -> str:
    return run_markdown(_summary())


def test_the_report_gives_the_counts(markdown: str) -> None:
    for line in ("| accounts scored | 1,200 |", "| PQLs | 40 |", "| new PQLs | 7 |", "| dropped PQLs | 3 |"):
        assert line in markdown


def test_the_report_gives_the_tier_distribution(markdown: str) -> None:
    assert "| very_high | 12 | 1.0% |" in markdown
    assert "| low | 840 | 70.0% |" in markdown


def test_the_report_counts_ineligible_accounts_apart_from_the_tiers() -> None:
    tiers = {"very_high": 9, "high": 81, "medium": 180, "low": 630}
    markdown = run_markdown(_summary(tiers=tiers, ineligible=300))
    assert "| not tiered (ineligible) | 300 | 25.0% |" in markdown
    assert "| low | 630 | 52.5% |" in markdown


def test_the_report_names_the_model_and_where_its_report_is(markdown: str) -> None:
    assert "`20260301T020000Z-abcd1234`" in markdown
    assert "/models/20260301T020000Z-abcd1234/report.html" in markdown
    assert "fallback" not in markdown


def test_the_report_links_the_runs_data_docs() -> None:
    index = "/srv/pql/.pql/runs/run-1/data_docs/index.html"
    markdown = run_markdown(_summary(data_docs=index))
    assert f"| data docs | [{index}](file://{index}) |" in markdown


def test_a_run_without_data_docs_says_so() -> None:
    assert "| data docs | – |" in run_markdown(_summary())


def test_the_report_flags_a_fallback_model() -> None:
    assert "fallback: points baseline" in run_markdown(_summary(used_fallback=True, model_report=None))


def test_the_report_summarises_validation_with_what_to_do(markdown: str) -> None:
    assert "Status: **warned**, 2 row(s) quarantined" in markdown
    assert "| events.known_names | warned | 12 | Add the new names. |" in markdown


def test_the_report_gives_the_validation_notes() -> None:
    stage = {**VALIDATION["stages"][0], "notes": ["the table is empty: the event checks were skipped"]}
    markdown = run_markdown(_summary(validation={**VALIDATION, "stages": [stage]}))
    assert "- events: the table is empty: the event checks were skipped" in markdown


def test_the_report_lists_the_top_pqls_with_their_reasons_in_one_table_row(markdown: str) -> None:
    row = next(line for line in markdown.splitlines() if line.startswith("| 1 |"))
    assert "Acme \\| Co (`a-1`)" in row
    assert "+ invited 4 teammates in the last 7 days<br>- no integration connected" in row


def test_a_run_without_pqls_says_so() -> None:
    assert "No account qualified as a PQL in this run." in run_markdown(_summary(top_pqls=[], pqls=0))


def test_the_training_report_says_whether_the_model_became_champion_and_why(tmp_path: Path) -> None:
    (tmp_path / "report.html").write_text("<html></html>", encoding="utf-8")
    outcome = TrainOutcome(
        version="v2",
        path=tmp_path,
        status="trained",
        promoted=False,
        reason="PR-AUC 0.31 <= 0.32 + 0.005",
        metrics={"pr_auc": 0.31, "lift_top_10pct": 2.5},
    )
    text = training_markdown(outcome)
    assert "| champion | no, kept as challenger: PR-AUC 0.31 <= 0.32 + 0.005 |" in text
    assert f"`{tmp_path / 'report.html'}`" in text
    assert "| pr_auc | 0.31 |" in text

"""Alert payloads for a run's new PQLs: which PQLs are announced, to whom, and what each post says."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest

from pql.config import AlertsConfig
from pql.scoring.alerts import owner_alerts, record_link, top_reasons
from pql.scoring.rules import KEPT, NEW, NOT_PQL

AS_OF = datetime(2026, 3, 2)
LINK = "https://crm.example.com/accounts/{account_id}?owner={owner}"


def row(account_id: str, owner: str, score: float, status: str = NEW, **extra: object) -> dict[str, object]:
    """One run row: a PQL routed to `owner` unless its status says it is none."""
    is_pql = status in (NEW, KEPT)
    return {
        "account_id": account_id,
        "routed_to": owner if is_pql else None,
        "score": score,
        "probability": score / 100,
        "tier": "high",
        "playbook": "freemium_upgrade",
        "reasons_text": "+ invited 4 teammates\n+ hit the usage limit twice\n- no integration",
        "is_pql": is_pql,
        "is_control": False,
        "pql_status": status,
        **extra,
    }


def config(**values: object) -> AlertsConfig:
    return AlertsConfig(link_template=LINK, **values)


def test_only_pqls_new_in_this_run_are_announced_one_post_per_owner() -> None:
    rows = pd.DataFrame(
        [
            row("a1", "ana", 80),
            row("a2", "ana", 70, status=KEPT),  # already on the list: announced when it was new
            row("b1", "bo", 65),
            row("c1", "cy", 90, status=NOT_PQL),
        ]
    )
    alerts = owner_alerts(rows, {}, config(), AS_OF)
    assert [(alert.owner, alert.new_pqls) for alert in alerts] == [("ana", 1), ("bo", 1)]


def test_a_held_out_control_account_is_never_announced() -> None:
    held_out = row("a1", "ana", 80) | {"is_pql": False, "is_control": True, "routed_to": None}
    assert owner_alerts(pd.DataFrame([held_out]), {}, config(), AS_OF) == []


def test_a_slack_post_has_a_header_and_one_section_per_pql_with_its_link() -> None:
    rows = pd.DataFrame([row("a1", "ana", 80.04), row("a 2", "ana", 70)])
    (alert,) = owner_alerts(rows, {"a1": "Acme & Co"}, config(), AS_OF)
    payload = alert.payload
    assert payload["text"] == "2 new PQLs for ana (as of 2026-03-02)"
    header, first, second = payload["blocks"]
    assert header == {"type": "header", "text": {"type": "plain_text", "text": payload["text"]}}
    assert first["type"] == "section" and first["text"]["type"] == "mrkdwn"
    assert first["text"]["text"].splitlines() == [
        "*<https://crm.example.com/accounts/a1?owner=ana|Acme &amp; Co>*  ·  score 80.0  ·  high  ·  "
        "freemium upgrade",
        "• invited 4 teammates",
        "• hit the usage limit twice",
    ]
    assert "<https://crm.example.com/accounts/a%202?owner=ana|a 2>" in second["text"]["text"]


def test_an_owner_with_more_pqls_than_the_limit_gets_the_best_and_a_more_line() -> None:
    rows = pd.DataFrame([row(f"a{score}", "ana", score) for score in (61, 75, 90, 68)])
    (alert,) = owner_alerts(rows, {}, config(max_per_owner=2), AS_OF)
    blocks = alert.payload["blocks"]
    assert alert.new_pqls == 4
    assert [block["type"] for block in blocks] == ["header", "section", "section", "context"]
    assert [block["text"]["text"].split("|")[1].split(">")[0] for block in blocks[1:3]] == ["a90", "a75"]
    assert blocks[-1]["elements"][0]["text"] == "+2 more in `pql pqls --owner ana`"


def test_a_talking_point_is_included_when_the_row_has_one() -> None:
    rows = pd.DataFrame(
        [
            row("a1", "ana", 80, talking_point="offer the Team plan, which lifts the seat limit"),
            row("a2", "ana", 70, talking_point=None),
        ]
    )
    (alert,) = owner_alerts(rows, {}, config(format="json"), AS_OF)
    first, second = alert.payload["pqls"]
    assert first["talking_point"] == "offer the Team plan, which lifts the seat limit"
    assert "talking_point" not in second
    (slack,) = owner_alerts(rows, {}, config(), AS_OF)
    assert slack.payload["blocks"][1]["text"]["text"].endswith(
        "_Say:_ offer the Team plan, which lifts the seat limit"
    )


def test_the_json_format_is_a_plain_document_per_owner() -> None:
    rows = pd.DataFrame([row("a1", "ana", 80), row("a2", "ana", 70)])
    (alert,) = owner_alerts(rows, {"a1": "Acme"}, config(format="json", max_per_owner=1), AS_OF, "run-1")
    assert alert.payload == {
        "owner": "ana",
        "as_of": "2026-03-02T00:00:00",
        "run_id": "run-1",
        "new_pqls": 2,
        "more": 1,
        "pqls": [
            {
                "account_id": "a1",
                "name": "Acme",
                "score": 80.0,
                "tier": "high",
                "playbook": "freemium_upgrade",
                "reasons": ["invited 4 teammates", "hit the usage limit twice"],
                "link": "https://crm.example.com/accounts/a1?owner=ana",
            }
        ],
    }


def test_without_a_link_template_a_pql_has_no_link() -> None:
    (alert,) = owner_alerts(pd.DataFrame([row("a1", "ana", 80)]), {}, AlertsConfig(format="json"), AS_OF)
    assert "link" not in alert.payload["pqls"][0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("+ one\n+ two\n+ three\n- four", ["one", "two", "three"]),
        ("- only lowering", []),
        (None, []),
    ],
)
def test_top_reasons_are_the_raising_ones(text: str | None, expected: list[str]) -> None:
    assert top_reasons(text) == expected


def test_link_values_are_url_quoted_so_an_id_cannot_change_the_path() -> None:
    assert record_link(LINK, "../admin?x=1", "ana b") == (
        "https://crm.example.com/accounts/..%2Fadmin%3Fx%3D1?owner=ana%20b"
    )

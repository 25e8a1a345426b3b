"""Alert messages for a run's new PQLs, one per owner (pure: sending them is `flows.alerts`).

A PQL is new in a run when the PQL rules admitted it in this run (`pql_status` "new": it was not a
PQL after the previous run, so its `first_pql_at` is this run's as_of). A held-out (control) account
is not a PQL and is never announced. Each owner (its `routed_to`, the unowned queue included) gets one
message listing at most `alerts.max_per_owner` of them, best first, and how many more there are.

Two payload formats: "slack", a Slack incoming-webhook payload (`text` as the notification's
fallback, `blocks` with one section per PQL), and "json", a plain document for any other receiver.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

import pandas as pd

from pql.config import AlertsConfig
from pql.scoring.rules import NEW

# Raising reasons shown per PQL (reasons_text lists up to 3, "+ " first).
TOP_REASONS = 3
# Slack refuses a section text over 3000 characters.
_SLACK_SECTION_LIMIT = 3000


@dataclass(frozen=True)
class OwnerAlert:
    """One post: the owner, how many new PQLs they have, and the payload to send."""

    owner: str
    new_pqls: int
    payload: dict[str, Any]


def new_pqls(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows of PQLs that entered the list in this run, best first (score, probability, id)."""
    if rows.empty or "pql_status" not in rows:
        return rows.iloc[0:0]
    fresh = rows[rows["is_pql"].astype(bool) & rows["pql_status"].eq(NEW)]
    return fresh.sort_values(["score", "probability", "account_id"], ascending=[False, False, True])


def _text(value: object) -> str | None:
    """A cell as stripped text; None for a missing or blank value."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    text = str(value).strip()
    return text or None


def top_reasons(reasons_text: object, limit: int = TOP_REASONS) -> list[str]:
    """The raising reasons of a row's `reasons_text` ("+ " lines), without their sign."""
    lines = (_text(reasons_text) or "").splitlines()
    return [line.removeprefix("+ ").strip() for line in lines if line.startswith("+ ")][:limit]


def record_link(template: str | None, account_id: str, owner: str) -> str | None:
    """The template filled with the account's values, each URL-quoted; None without a template."""
    if template is None:
        return None
    return template.format(account_id=quote(account_id, safe=""), owner=quote(owner, safe=""))


def _pql(row: Mapping[str, Any], names: Mapping[str, str], config: AlertsConfig) -> dict[str, Any]:
    account_id, owner = str(row["account_id"]), str(row["routed_to"])
    item: dict[str, Any] = {
        "account_id": account_id,
        "name": names.get(account_id) or account_id,
        "score": round(float(row["score"]), 1),
        "tier": _text(row.get("tier")),
        "playbook": _text(row.get("playbook")),
        "reasons": top_reasons(row.get("reasons_text")),
    }
    talking_point = _text(row.get("talking_point"))
    if talking_point is not None:
        item["talking_point"] = talking_point
    link = record_link(config.link_template, account_id, owner)
    if link is not None:
        item["link"] = link
    return item


def _plural(count: int) -> str:
    return f"{count} new PQL" + ("" if count == 1 else "s")


def _mrkdwn(text: str) -> str:
    """Text as Slack mrkdwn shows it literally: &, < and > escaped as Slack asks."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_section(item: Mapping[str, Any]) -> dict[str, Any]:
    name = _mrkdwn(item["name"])
    title = f"<{item['link']}|{name}>" if "link" in item else name
    facts = [f"score {item['score']:.1f}"]
    facts += [str(item[key]).replace("_", " ") for key in ("tier", "playbook") if item.get(key)]
    lines = [f"*{title}*  ·  " + "  ·  ".join(_mrkdwn(fact) for fact in facts)]
    lines += [f"• {_mrkdwn(reason)}" for reason in item["reasons"]]
    if "talking_point" in item:
        lines.append(f"_Say:_ {_mrkdwn(item['talking_point'])}")
    text = "\n".join(lines)
    if len(text) > _SLACK_SECTION_LIMIT:
        text = text[: _SLACK_SECTION_LIMIT - 1] + "…"
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def slack_payload(owner: str, items: list[dict[str, Any]], more: int, as_of: datetime) -> dict[str, Any]:
    """A Slack incoming-webhook payload: a header, one section per PQL, a "+N more" line if any."""
    count = len(items) + more
    heading = f"{_plural(count)} for {owner} (as of {as_of:%Y-%m-%d})"
    blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": heading}}]
    blocks += [_slack_section(item) for item in items]
    if more:
        note = f"+{more} more in `pql pqls --owner {_mrkdwn(owner)}`"
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": note}]})
    return {"text": heading, "blocks": blocks}


def json_payload(
    owner: str, items: list[dict[str, Any]], more: int, as_of: datetime, run_id: str | None
) -> dict[str, Any]:
    """A plain JSON document: the owner, the run, the PQLs listed and how many more there are."""
    return {
        "owner": owner,
        "as_of": as_of.isoformat(),
        "run_id": run_id,
        "new_pqls": len(items) + more,
        "pqls": items,
        "more": more,
    }


def owner_alerts(
    rows: pd.DataFrame,
    names: Mapping[str, str],
    config: AlertsConfig,
    as_of: datetime,
    run_id: str | None = None,
) -> list[OwnerAlert]:
    """One alert per owner with new PQLs in `rows` (a run's rows, `scoring.rows.pql_rows`), by owner.

    `names` maps account_id to the account's name (the id stands in for a missing one); a
    `talking_point` column, when the rows have one, is carried into each PQL that has a value.
    """
    fresh = new_pqls(rows)
    alerts = []
    for owner, group in fresh.groupby(fresh["routed_to"].astype(str), sort=True):
        listed = group.head(config.max_per_owner).to_dict("records")
        items = [_pql(row, names, config) for row in listed]
        more = len(group) - len(items)
        if config.format == "slack":
            payload = slack_payload(owner, items, more, as_of)
        else:
            payload = json_payload(owner, items, more, as_of, run_id)
        alerts.append(OwnerAlert(owner=owner, new_pqls=len(group), payload=payload))
    return alerts

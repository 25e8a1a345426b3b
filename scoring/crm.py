"""Read-only views of the sales-owned tables (`crm_accounts`, `pql_feedback`). The pipeline never
writes to them."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import pandas as pd
import sqlalchemy as sa

from pql.config import FEEDBACK_DECISIONS
from pql.schema import SourceTables, in_use

SNAPSHOT_COLUMNS = ("account_id", "owner", "lifecycle_stage", "has_open_opportunity", "do_not_contact")
FEEDBACK_COLUMNS = ("account_id", "sales_decision", "sales_decided_at", "sales_decided_by", "sales_note")
# Two decisions on one account at the same instant: the one that keeps it off the list wins.
_TIE_ORDER = ("disqualified", "done", "accepted")
_CHUNK = 1000


def crm_snapshot(engine: sa.Engine, tables: SourceTables, as_of: datetime | None = None) -> pd.DataFrame:
    """One row per CRM account: account_id, owner, lifecycle_stage, has_open_opportunity, do_not_contact.

    With `as_of`, and `pql_feedback` in use, each account's latest rep decision before `as_of` is
    joined on (`feedback_snapshot`; an account with a decision but no CRM row gets one too)."""
    crm = tables.crm_accounts
    query = sa.select(*(crm.c[name] for name in SNAPSHOT_COLUMNS))
    with engine.connect() as conn:
        rows = conn.execute(query).fetchall()
    snapshot = pd.DataFrame(rows, columns=list(SNAPSHOT_COLUMNS)).astype({"account_id": str})
    if as_of is None or not in_use(engine, tables.pql_feedback):
        return snapshot
    return snapshot.merge(feedback_snapshot(engine, tables, as_of), on="account_id", how="outer")


def feedback_snapshot(engine: sa.Engine, tables: SourceTables, as_of: datetime) -> pd.DataFrame:
    """Each account's latest rep decision strictly before `as_of`: account_id, sales_decision,
    sales_decided_at, sales_decided_by (the rep), sales_note (the rep's reason).

    Decisions at or after `as_of` are not read (a re-run of a past date sees what that night saw);
    decisions are read case-blind; other values are ignored (the gate reports them). Ties on
    decided_at: disqualified, then done, then accepted; then by rep and reason, so the pick is fixed.
    """
    f = tables.pql_feedback
    # As a rep or a CRM export spells it: "Disqualified", " done" are the same decisions.
    decision = sa.func.lower(sa.func.trim(f.c.decision))
    tie = sa.case({name: place for place, name in enumerate(_TIE_ORDER)}, value=decision)
    ranked = (
        sa.select(
            f.c.account_id,
            decision.label("decision"),
            f.c.decided_at,
            f.c.owner,
            f.c.reason,
            sa.func.row_number()
            .over(
                partition_by=f.c.account_id,
                order_by=(
                    f.c.decided_at.desc(),
                    tie,
                    f.c.owner.asc().nulls_last(),
                    f.c.reason.asc().nulls_last(),
                ),
            )
            .label("place"),
        )
        .where(f.c.decided_at < as_of, decision.in_(FEEDBACK_DECISIONS))
        .subquery("ranked")
    )
    latest = [ranked.c[name] for name in ("account_id", "decision", "decided_at", "owner", "reason")]
    query = sa.select(*latest).where(ranked.c.place == 1).order_by(ranked.c.account_id)
    with engine.connect() as conn:
        rows = conn.execute(query).fetchall()
    frame = pd.DataFrame(rows, columns=list(FEEDBACK_COLUMNS)).astype({"account_id": str})
    frame["sales_decided_at"] = pd.to_datetime(frame["sales_decided_at"]).astype("datetime64[us]")
    return frame


def account_names(engine: sa.Engine, tables: SourceTables, account_ids: Iterable[str]) -> dict[str, str]:
    """account_id -> account name for the given ids (ids without a name are left out)."""
    accounts = tables.accounts
    ids = list(dict.fromkeys(account_ids))
    names: dict[str, str] = {}
    with engine.connect() as conn:
        for start in range(0, len(ids), _CHUNK):
            query = sa.select(accounts.c.account_id, accounts.c.name).where(
                accounts.c.account_id.in_(ids[start : start + _CHUNK]), accounts.c.name.is_not(None)
            )
            names.update({str(account_id): name for account_id, name in conn.execute(query)})
    return names

"""Read-only views of the sales-owned `crm_accounts` table. The pipeline never writes to it."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd
import sqlalchemy as sa

from pql.schema import SourceTables

SNAPSHOT_COLUMNS = ("account_id", "owner", "lifecycle_stage", "has_open_opportunity", "do_not_contact")
_CHUNK = 1000


def crm_snapshot(engine: sa.Engine, tables: SourceTables) -> pd.DataFrame:
    """One row per CRM account: account_id, owner, lifecycle_stage, has_open_opportunity, do_not_contact."""
    crm = tables.crm_accounts
    query = sa.select(*(crm.c[name] for name in SNAPSHOT_COLUMNS))
    with engine.connect() as conn:
        rows = conn.execute(query).fetchall()
    return pd.DataFrame(rows, columns=list(SNAPSHOT_COLUMNS)).astype({"account_id": str})


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

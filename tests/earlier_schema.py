"""The output tables as the release before tiers-for-eligible-accounts-only created them (before
talking points too)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from pql.schema import ADDED_LATER, OutputTables

AS_OF = datetime(2024, 6, 3)


def earlier_output_tables(tables: OutputTables) -> sa.MetaData:
    """pql_scores and pql_score_history as they were: `tier` NOT NULL and none of the columns added
    later (`ineligible_reason`, the rep feedback columns, ...)."""
    md = sa.MetaData()
    for table in (tables.scores, tables.history):
        columns = [column for column in table.columns if not column.info.get(ADDED_LATER)]
        sa.Table(
            table.name,
            md,
            *(
                sa.Column(
                    c.name,
                    c.type,
                    key=c.key,
                    primary_key=c.primary_key,
                    nullable=c.nullable and c.name != "tier",
                )
                for c in columns
            ),
        )
    return md


def earlier_row(account_id: str, *, run_id: str = "run-0") -> dict[str, object]:
    """A pql_scores / pql_score_history row as the earlier release wrote it: a tiered PQL."""
    return {
        "account_id": account_id,
        "run_id": run_id,
        "as_of": AS_OF,
        "probability": 0.3,
        "score": 63.3,
        "tier": "high",
        "is_pql": True,
        "is_control": False,
        "routed_to": "ana",
        "playbook": "freemium_upgrade",
        "model_version": "m0",
        "scored_at": AS_OF,
    }


def create_earlier_tables(engine: sa.Engine, tables: OutputTables, accounts: list[str]) -> None:
    """The earlier pql_scores and pql_score_history, one row per account in each."""
    md = earlier_output_tables(tables)
    md.create_all(engine)
    with engine.begin() as conn:
        for table in md.sorted_tables:
            conn.execute(sa.insert(table), [earlier_row(a) for a in accounts])

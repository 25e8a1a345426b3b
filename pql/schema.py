"""Every table the pipeline reads or writes, declared once with SQLAlchemy Core.

Tables are declared, never reflected (duckdb-engine cannot reflect under SQLAlchemy 2.1). Physical
table and column names come from the settings; each column's Python key is its contract name, so code
always writes `tables.events.c.occurred_at` whatever the column is called in the database.

Timestamps are stored as naive UTC (`TIMESTAMP WITHOUT TIME ZONE`): the one representation that
compares and subtracts the same way on DuckDB, SQLite and PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from pql.config import TablesConfig

ID = sa.String(64)
TIMESTAMP = sa.DateTime(timezone=False)


def _col(physical: str, key: str, type_: sa.types.TypeEngine, **kwargs: object) -> sa.Column:
    return sa.Column(physical, type_, key=key, **kwargs)


@dataclass(frozen=True)
class SourceTables:
    """The data contract: what the pipeline reads."""

    metadata: sa.MetaData
    accounts: sa.Table
    users: sa.Table
    events: sa.Table
    plan_changes: sa.Table
    crm_accounts: sa.Table
    # Optional (`pql init` creates it empty): read only when attributes from it are configured.
    account_attributes: sa.Table

    @property
    def all(self) -> list[sa.Table]:
        """The required contract tables."""
        return [self.accounts, self.users, self.events, self.plan_changes, self.crm_accounts]

    @property
    def attribute_columns(self) -> list[sa.Column]:
        """The accounts table's declared attribute columns (`tables.accounts.attributes`)."""
        return [column for column in self.accounts.columns if column.info.get("attribute")]


@dataclass(frozen=True)
class OutputTables:
    """What the pipeline owns and writes (in the CRM database), plus its quarantine."""

    metadata: sa.MetaData
    scores: sa.Table
    history: sa.Table
    runs: sa.Table
    quarantine: sa.Table

    @property
    def all(self) -> list[sa.Table]:
        return [self.scores, self.history, self.runs, self.quarantine]


def source_tables(names: TablesConfig) -> SourceTables:
    md = sa.MetaData()
    a, u, e, p, c = (
        names.accounts.columns,
        names.users.columns,
        names.events.columns,
        names.plan_changes.columns,
        names.crm_accounts.columns,
    )
    accounts = sa.Table(
        names.accounts.name,
        md,
        _col(a.account_id, "account_id", ID, primary_key=True),
        _col(a.name, "name", sa.Text),
        _col(a.domain, "domain", sa.Text),
        _col(a.created_at, "created_at", TIMESTAMP, nullable=False),
        _col(a.employees, "employees", sa.Integer),
        _col(a.industry, "industry", sa.Text),
        _col(a.country, "country", sa.Text),
        *(
            sa.Column(name, sa.Double if kind == "numeric" else sa.Text, info={"attribute": kind})
            for name, kind in names.accounts.attributes.items()
        ),
    )
    users = sa.Table(
        names.users.name,
        md,
        _col(u.user_id, "user_id", ID, primary_key=True),
        _col(u.account_id, "account_id", ID),
        _col(u.created_at, "created_at", TIMESTAMP, nullable=False),
        _col(u.role, "role", sa.Text),
    )
    events = sa.Table(
        names.events.name,
        md,
        _col(e.event_id, "event_id", ID, nullable=False),
        _col(e.user_id, "user_id", ID),
        _col(e.account_id, "account_id", ID),
        _col(e.event_name, "event_name", sa.Text, nullable=False),
        _col(e.occurred_at, "occurred_at", TIMESTAMP, nullable=False),
        _col(e.properties, "properties", sa.Text),
    )
    plan_changes = sa.Table(
        names.plan_changes.name,
        md,
        _col(p.account_id, "account_id", ID, nullable=False),
        _col(p.changed_at, "changed_at", TIMESTAMP, nullable=False),
        _col(p.from_plan, "from_plan", sa.Text),
        _col(p.to_plan, "to_plan", sa.Text, nullable=False),
        _col(p.trial_ends_at, "trial_ends_at", TIMESTAMP),
        _col(p.mrr, "mrr", sa.Float),
    )
    crm_accounts = sa.Table(
        names.crm_accounts.name,
        md,
        _col(c.account_id, "account_id", ID, primary_key=True),
        _col(c.owner, "owner", sa.Text),
        _col(c.lifecycle_stage, "lifecycle_stage", sa.Text),
        _col(c.has_open_opportunity, "has_open_opportunity", sa.Boolean),
        _col(c.last_touch_at, "last_touch_at", TIMESTAMP),
        _col(c.do_not_contact, "do_not_contact", sa.Boolean),
    )
    t = names.account_attributes.columns
    account_attributes = sa.Table(
        names.account_attributes.name,
        md,
        _col(t.account_id, "account_id", ID, nullable=False),
        _col(t.name, "name", sa.Text, nullable=False),
        _col(t.value, "value", sa.Text),
        _col(t.valid_from, "valid_from", TIMESTAMP, nullable=False),
    )
    # Row-store engines need these for the as_of-bounded scans; DuckDB prunes by zone maps instead,
    # and its ART indexes would only slow bulk loads down.
    for table, time_column in ((events, events.c.occurred_at), (plan_changes, plan_changes.c.changed_at)):
        sa.Index(f"ix_{table.name}_account_time", table.c.account_id, time_column).ddl_if(
            dialect=("postgresql", "sqlite")
        )
    return SourceTables(md, accounts, users, events, plan_changes, crm_accounts, account_attributes)


def output_tables(names: TablesConfig) -> OutputTables:
    md = sa.MetaData()
    scores = sa.Table(
        names.pql_scores,
        md,
        sa.Column("account_id", ID, primary_key=True),
        sa.Column("as_of", TIMESTAMP, nullable=False),
        sa.Column("probability", sa.Double, nullable=False),
        sa.Column("score", sa.Double, nullable=False),
        sa.Column("tier", sa.String(16), nullable=False),
        sa.Column("fit_score", sa.Double),
        sa.Column("grade", sa.String(1)),
        sa.Column("is_pql", sa.Boolean, nullable=False),
        sa.Column("is_control", sa.Boolean, nullable=False, default=False),
        sa.Column("first_pql_at", TIMESTAMP),
        sa.Column("routed_to", sa.Text),
        sa.Column("playbook", sa.String(32)),
        sa.Column("trial_days_left", sa.Float),
        sa.Column("reasons_json", sa.Text),
        sa.Column("reasons_text", sa.Text),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("run_id", ID, nullable=False),
        sa.Column("scored_at", TIMESTAMP, nullable=False),
    )
    history = sa.Table(
        names.pql_score_history,
        md,
        sa.Column("run_id", ID, primary_key=True),
        sa.Column("account_id", ID, primary_key=True),
        sa.Column("as_of", TIMESTAMP, nullable=False),
        sa.Column("probability", sa.Double, nullable=False),
        sa.Column("score", sa.Double, nullable=False),
        sa.Column("tier", sa.String(16), nullable=False),
        sa.Column("fit_score", sa.Double),
        sa.Column("grade", sa.String(1)),
        sa.Column("is_pql", sa.Boolean, nullable=False),
        sa.Column("is_control", sa.Boolean, nullable=False, default=False),
        sa.Column("first_pql_at", TIMESTAMP),
        sa.Column("routed_to", sa.Text),
        sa.Column("playbook", sa.String(32)),
        sa.Column("trial_days_left", sa.Float),
        sa.Column("reasons_json", sa.Text),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("scored_at", TIMESTAMP, nullable=False),
    )
    runs = sa.Table(
        names.pql_runs,
        md,
        sa.Column("run_id", ID, primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("as_of", TIMESTAMP, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("flow_run_id", sa.String(64)),
        sa.Column("model_version", sa.String(64)),
        sa.Column("used_fallback", sa.Boolean, nullable=False, default=False),
        sa.Column("accounts_scored", sa.Integer),
        sa.Column("pqls", sa.Integer),
        sa.Column("new_pqls", sa.Integer),
        sa.Column("dropped_pqls", sa.Integer),
        sa.Column("quarantined_rows", sa.Integer),
        sa.Column("started_at", TIMESTAMP, nullable=False),
        sa.Column("finished_at", TIMESTAMP),
        sa.Column("timings_json", sa.Text),
        sa.Column("validation_json", sa.Text),
        sa.Column("monitoring_json", sa.Text),
        sa.Column("error", sa.Text),
    )
    quarantine = sa.Table(
        names.quarantine,
        md,
        sa.Column("batch_id", ID, nullable=False),
        sa.Column("source_table", sa.String(64), nullable=False),
        sa.Column("row_number", sa.BigInteger),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("row_json", sa.Text, nullable=False),
        sa.Column("quarantined_at", TIMESTAMP, nullable=False),
    )
    return OutputTables(md, scores, history, runs, quarantine)


def create_tables(engine: sa.Engine, tables: SourceTables | OutputTables) -> None:
    """Create the tables (and indexes) that do not exist yet; existing ones are left untouched."""
    tables.metadata.create_all(engine, checkfirst=True)

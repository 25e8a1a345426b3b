"""Every table the pipeline reads or writes, declared once with SQLAlchemy Core.

Tables are declared, never reflected (duckdb-engine cannot reflect under SQLAlchemy 2.1). Physical
table and column names come from the settings; each column's Python key is its contract name, so code
always writes `tables.events.c.occurred_at` whatever the column is called in the database.

Timestamps are stored as naive UTC (`TIMESTAMP WITHOUT TIME ZONE`): the one representation that
compares and subtracts the same way on DuckDB, SQLite and PostgreSQL.

An output table created by an earlier release is brought up to date in place by `create_tables`: a
column marked ADDED_LATER (always nullable) is added, a column marked NULL_ALLOWED_LATER loses its NOT
NULL. Nothing else about an existing table is changed, so a column renamed by hand is still reported by
the CRM gate rather than silently re-created.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from pql.config import TablesConfig

ID = sa.String(64)
TIMESTAMP = sa.DateTime(timezone=False)
# Column info keys of the changes made after a table was first released (see `upgrade_tables`).
ADDED_LATER = "pql_added_later"
NULL_ALLOWED_LATER = "pql_null_allowed_later"


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
    # Optional, owned by sales (`pql init` creates them empty): read only when they hold rows (`in_use`).
    crm_activities: sa.Table
    opportunities: sa.Table
    pql_feedback: sa.Table

    @property
    def all(self) -> list[sa.Table]:
        """The required contract tables."""
        return [self.accounts, self.users, self.events, self.plan_changes, self.crm_accounts]

    @property
    def sales(self) -> list[sa.Table]:
        """The optional sales-owned tables: activities, opportunities, rep feedback."""
        return [self.crm_activities, self.opportunities, self.pql_feedback]

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
    t = names.crm_activities.columns
    crm_activities = sa.Table(
        names.crm_activities.name,
        md,
        _col(t.activity_id, "activity_id", ID, primary_key=True),
        _col(t.account_id, "account_id", ID, nullable=False),
        _col(t.owner, "owner", sa.Text),
        _col(t.occurred_at, "occurred_at", TIMESTAMP, nullable=False),
        _col(t.activity_type, "activity_type", sa.Text),
        _col(t.outcome, "outcome", sa.Text),
    )
    t = names.opportunities.columns
    opportunities = sa.Table(
        names.opportunities.name,
        md,
        _col(t.opportunity_id, "opportunity_id", ID, primary_key=True),
        _col(t.account_id, "account_id", ID, nullable=False),
        _col(t.created_at, "created_at", TIMESTAMP, nullable=False),
        _col(t.stage, "stage", sa.Text),
        _col(t.amount, "amount", sa.Float),
        _col(t.closed_at, "closed_at", TIMESTAMP),
        _col(t.is_won, "is_won", sa.Boolean),
    )
    t = names.pql_feedback.columns
    pql_feedback = sa.Table(
        names.pql_feedback.name,
        md,
        _col(t.account_id, "account_id", ID, nullable=False),
        _col(t.owner, "owner", sa.Text),
        _col(t.decided_at, "decided_at", TIMESTAMP, nullable=False),
        _col(t.decision, "decision", sa.Text, nullable=False),
        _col(t.reason, "reason", sa.Text),
    )
    # Row-store engines need these for the as_of-bounded scans; DuckDB prunes by zone maps instead,
    # and its ART indexes would only slow bulk loads down.
    timed = (
        (events, events.c.occurred_at),
        (plan_changes, plan_changes.c.changed_at),
        (crm_activities, crm_activities.c.occurred_at),
        (opportunities, opportunities.c.created_at),
        (pql_feedback, pql_feedback.c.decided_at),
    )
    for table, time_column in timed:
        sa.Index(f"ix_{table.name}_account_time", table.c.account_id, time_column).ddl_if(
            dialect=("postgresql", "sqlite")
        )
    return SourceTables(
        md,
        accounts,
        users,
        events,
        plan_changes,
        crm_accounts,
        account_attributes,
        crm_activities,
        opportunities,
        pql_feedback,
    )


def _feedback_columns() -> list[sa.Column]:
    """A rep's decision on the account as the run saw it (`pql_feedback`, see `scoring.rules`): the
    latest one before as_of, whether the PQL is sales-accepted, and why a decision keeps it off the list."""
    later = {ADDED_LATER: True}
    return [
        sa.Column("sales_decision", sa.String(16), info=later),  # accepted, disqualified, done or null
        sa.Column("sales_decided_at", TIMESTAMP, info=later),
        sa.Column("is_sales_accepted", sa.Boolean, info=later),
        sa.Column("left_reason", sa.Text, info=later),
    ]


def output_tables(names: TablesConfig) -> OutputTables:
    md = sa.MetaData()
    scores = sa.Table(
        names.pql_scores,
        md,
        sa.Column("account_id", ID, primary_key=True),
        sa.Column("as_of", TIMESTAMP, nullable=False),
        sa.Column("probability", sa.Double, nullable=False),
        sa.Column("score", sa.Double, nullable=False),
        sa.Column("tier", sa.String(16), info={NULL_ALLOWED_LATER: True}),  # null: ineligible, not tiered
        sa.Column("fit_score", sa.Double),
        sa.Column("grade", sa.String(1)),
        sa.Column("ineligible_reason", sa.Text, info={ADDED_LATER: True}),
        sa.Column("is_pql", sa.Boolean, nullable=False),
        sa.Column("is_control", sa.Boolean, nullable=False, default=False),
        sa.Column("first_pql_at", TIMESTAMP),
        sa.Column("routed_to", sa.Text),
        sa.Column("playbook", sa.String(32)),
        sa.Column("trial_days_left", sa.Float),
        sa.Column("reasons_json", sa.Text),
        sa.Column("reasons_text", sa.Text),
        sa.Column("talking_point", sa.Text, info={ADDED_LATER: True}),  # null: not a PQL
        *_feedback_columns(),
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
        sa.Column("tier", sa.String(16), info={NULL_ALLOWED_LATER: True}),  # null: ineligible, not tiered
        sa.Column("fit_score", sa.Double),
        sa.Column("grade", sa.String(1)),
        sa.Column("ineligible_reason", sa.Text, info={ADDED_LATER: True}),
        sa.Column("is_pql", sa.Boolean, nullable=False),
        sa.Column("is_control", sa.Boolean, nullable=False, default=False),
        sa.Column("first_pql_at", TIMESTAMP),
        sa.Column("routed_to", sa.Text),
        sa.Column("playbook", sa.String(32)),
        sa.Column("trial_days_left", sa.Float),
        sa.Column("reasons_json", sa.Text),
        sa.Column("talking_point", sa.Text, info={ADDED_LATER: True}),  # null: not a PQL
        *_feedback_columns(),
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
        sa.Column("data_docs_path", sa.Text, info={ADDED_LATER: True}),  # the run's GX Data Docs index
        # What the webhook alerts of a nightly run did (null: alerts off, or not a nightly run).
        sa.Column("alerts_json", sa.Text, info={ADDED_LATER: True}),
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


def stored_columns(conn: sa.Connection, table: sa.Table) -> list[str] | None:
    """The physical column names of `table` (`SELECT * ... LIMIT 0`), or None when it does not exist."""
    if not sa.inspect(conn).has_table(table.name):
        return None
    result = conn.execute(sa.select(sa.literal_column("*")).select_from(table).limit(0))
    return list(result.keys())


def readable_columns(conn: sa.Connection, table: sa.Table) -> list[sa.Column]:
    """The columns of `table` a query can read: all of them but a column added later that the
    database does not hold yet (its table not upgraded yet: a dry run, or `pql pqls` before a run)."""
    later = [column.name for column in table.columns if column.info.get(ADDED_LATER)]
    stored = set(stored_columns(conn, table) or ()) if later else set()
    return [column for column in table.columns if column.name in stored or column.name not in later]


def _not_null_columns(conn: sa.Connection, table: sa.Table) -> set[str]:
    """The physical names of the columns of `table` the database declares NOT NULL."""
    if conn.dialect.name == "sqlite":
        quoted = conn.dialect.identifier_preparer.quote(table.name)
        return {row[1] for row in conn.exec_driver_sql(f"PRAGMA table_info({quoted})") if row[3]}
    query = sa.text(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = :name AND is_nullable = 'NO'"
    )
    return set(conn.execute(query, {"name": table.name}).scalars())


def _rebuild_sqlite(conn: sa.Connection, table: sa.Table, stored: list[str]) -> None:
    """Recreate `table` from its declaration and copy its rows over: SQLite cannot drop a NOT NULL."""
    quote = conn.dialect.identifier_preparer.quote
    old = f"{table.name}_before_upgrade"
    columns = ", ".join(quote(name) for name in stored)
    # pysqlite runs DDL outside any transaction unless one is open: open one, so a failure changes nothing.
    conn.exec_driver_sql("BEGIN")
    conn.exec_driver_sql(f"ALTER TABLE {quote(table.name)} RENAME TO {quote(old)}")
    table.create(conn)
    conn.exec_driver_sql(f"INSERT INTO {quote(table.name)} ({columns}) SELECT {columns} FROM {quote(old)}")
    conn.exec_driver_sql(f"DROP TABLE {quote(old)}")


def _upgrade(conn: sa.Connection, table: sa.Table) -> None:
    """Bring one table, if it exists, up to date (see `upgrade_tables`)."""
    stored = stored_columns(conn, table)
    if stored is None:
        return
    added = [c for c in table.columns if c.info.get(ADDED_LATER) and c.name not in stored]
    relaxed = [c for c in table.columns if c.info.get(NULL_ALLOWED_LATER)]
    if relaxed:
        not_null = _not_null_columns(conn, table)
        relaxed = [c for c in relaxed if c.name in not_null]
    if relaxed and conn.dialect.name == "sqlite":
        _rebuild_sqlite(conn, table, stored)
        return
    preparer = conn.dialect.identifier_preparer
    name = preparer.format_table(table)
    for column in added:
        kind = column.type.compile(dialect=conn.dialect)
        conn.exec_driver_sql(f"ALTER TABLE {name} ADD COLUMN {preparer.quote(column.name)} {kind}")
    for column in relaxed:
        conn.exec_driver_sql(f"ALTER TABLE {name} ALTER COLUMN {preparer.quote(column.name)} DROP NOT NULL")


def upgrade_tables(engine: sa.Engine, tables: SourceTables | OutputTables) -> None:
    """Bring tables created by an earlier release up to date, each in one transaction: add the columns
    added later, drop the NOT NULL of columns that may be null now. A no-op on up-to-date tables."""
    for table in tables.all:
        if any(c.info.get(ADDED_LATER) or c.info.get(NULL_ALLOWED_LATER) for c in table.columns):
            with engine.begin() as conn:
                _upgrade(conn, table)


def create_tables(engine: sa.Engine, tables: SourceTables | OutputTables) -> None:
    """Create the tables (and indexes) that do not exist yet and upgrade the existing ones
    (`upgrade_tables`); nothing else about an existing table is changed."""
    tables.metadata.create_all(engine, checkfirst=True)
    upgrade_tables(engine, tables)


def in_use(engine: sa.Engine, table: sa.Table) -> bool:
    """Whether an optional table is there to read: it exists and holds at least one row. An empty
    table (as `pql init` leaves it) counts as absent, so everything works the same without it."""
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table(table.name):
            return False
        return conn.execute(sa.select(sa.literal(1)).select_from(table).limit(1)).first() is not None

"""The run ledger (`pql_runs`) around `scoring.writeback.write_run`: open a run, record a failure,
record what the run's alerts did.

A run's row is written when it starts (status `running`), so a run that dies leaves a trace; a
successful run's row is completed by `write_run`, in the same transaction as its scores. A failure is
recorded in a small transaction of its own that touches nothing but the run's row.

Every ledger write (and the run's write) runs in `fresh_transaction`: a connection whose transaction
failed, at commit above all, is thrown away rather than pooled, so neither a retry nor the failure
record ever continues in that connection's state.

A run opens its row while holding the CRM run lock, so any other row still `running` then belongs to
a run that died without letting go of the lock (killed, or its machine lost): it is marked `abandoned`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from pql.config import Settings
from pql.schema import OutputTables, create_tables
from pql.scoring.writeback import SUCCEEDED, SUPERSEDED
from pql.validation.results import ValidationFailed, data_docs_index

RUNNING = "running"
FAILED = "failed"
ABANDONED = "abandoned"
_MAX_ERROR = 4000


def utc_now() -> datetime:
    """Now as naive UTC, the way every timestamp is stored (for run bookkeeping, never for logic)."""
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass
class RunRecord:
    """One run's identity and bookkeeping; `timings` fills in as its steps finish. A dry run is never
    written anywhere."""

    kind: str
    as_of: datetime
    flow_run_id: str | None = None
    dry_run: bool = False
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started_at: datetime = field(default_factory=utc_now)
    timings: dict[str, float] = field(default_factory=dict)

    def row(self, **values: Any) -> dict[str, Any]:
        """The pql_runs values of this run, plus `values`."""
        return {
            "run_id": self.run_id,
            "kind": self.kind,
            "as_of": self.as_of,
            "flow_run_id": self.flow_run_id,
            "started_at": self.started_at,
            "timings_json": json.dumps({name: round(seconds, 3) for name, seconds in self.timings.items()}),
            **values,
        }


def data_docs_link(settings: Settings, record: RunRecord) -> str | None:
    """Where the run's Great Expectations Data Docs are (`pql_runs.data_docs_path`): the index page its
    validation wrote into the run folder, or None when it wrote none (a dry run, a run that failed first)."""
    if record.dry_run:
        return None
    index = data_docs_index(settings, record.run_id)
    return str(index) if index.is_file() else None


def scrubbed(text: str, settings: Settings) -> str:
    """`text` with the password of every configured database URL masked."""
    for url in {settings.source_database_url, settings.crm_database_url}:
        password = make_url(url).password
        if password:
            text = text.replace(str(password), "***")
    return text


def failure_text(exc: BaseException, settings: Settings) -> str:
    """What went wrong, for the ledger and the operator: type and message, passwords masked."""
    message = str(exc).strip() or "(no message)"
    return scrubbed(f"{type(exc).__name__}: {message}", settings)[:_MAX_ERROR]


def last_trained_model(engine: sa.Engine, tables: OutputTables) -> str | None:
    """The trained model (not a points fallback) the latest completed run scored with; None if no run
    ever did (a new deployment)."""
    runs = tables.runs
    if not sa.inspect(engine).has_table(runs.name):
        return None
    query = (
        sa.select(runs.c.model_version)
        .where(
            runs.c.status.in_((SUCCEEDED, SUPERSEDED)),
            runs.c.used_fallback.is_(False),
            runs.c.model_version.is_not(None),
        )
        .order_by(runs.c.started_at.desc())
        .limit(1)
    )
    with engine.connect() as conn:
        return conn.execute(query).scalar_one_or_none()


@contextmanager
def fresh_transaction(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A transaction on a connection of its own, committed at the end of the block; if anything in it
    fails (the commit included), the connection is discarded instead of going back to the pool."""
    conn = engine.connect()
    try:
        with conn.begin():
            yield conn
    except BaseException:
        # After a failed commit the session's state is unknown (a driver may even keep half of it):
        # no later transaction may start from it.
        conn.invalidate()
        raise
    finally:
        conn.close()


def open_run(engine: sa.Engine, tables: OutputTables, record: RunRecord) -> list[str]:
    """Create the output tables if they are missing, mark runs left `running` as `abandoned` and insert
    this run's row as `running`; returns the run_ids marked abandoned.

    The caller holds the CRM run lock, so no other run is alive to complete a `running` row."""
    create_tables(engine, tables)
    runs = tables.runs
    with fresh_transaction(engine) as conn:
        left = list(conn.execute(sa.select(runs.c.run_id).where(runs.c.status == RUNNING)).scalars())
        if left:
            note = f"abandoned: the run ended without finishing (found by run {record.run_id})"
            conn.execute(
                sa.update(runs)
                .where(runs.c.run_id.in_(left), runs.c.status == RUNNING)
                .values(status=ABANDONED, finished_at=utc_now(), error=note)
            )
        conn.execute(sa.insert(runs).values(record.row(status=RUNNING)))
    return left


def record_failure(
    engine: sa.Engine, tables: OutputTables, record: RunRecord, exc: BaseException, settings: Settings
) -> None:
    """Mark the run `failed` with its error and, for a validation failure, the failing expectations and
    the link to the Data Docs showing them."""
    validation = exc.summary if isinstance(exc, ValidationFailed) else None
    values = record.row(
        status=FAILED,
        finished_at=utc_now(),
        error=failure_text(exc, settings),
        validation_json=None if validation is None else json.dumps(validation, sort_keys=True, default=str),
        data_docs_path=data_docs_link(settings, record),
    )
    runs = tables.runs
    with fresh_transaction(engine) as conn:
        updated = conn.execute(sa.update(runs).where(runs.c.run_id == record.run_id).values(values)).rowcount
        if not updated:
            conn.execute(sa.insert(runs).values(values))


def record_alerts(engine: sa.Engine, tables: OutputTables, record: RunRecord, alerts: dict[str, Any]) -> None:
    """Keep what the run's webhook alerts did in its pql_runs row (written after the run's commit)."""
    runs = tables.runs
    with fresh_transaction(engine) as conn:
        conn.execute(
            sa.update(runs)
            .where(runs.c.run_id == record.run_id)
            .values(alerts_json=json.dumps(alerts, sort_keys=True, default=str))
        )

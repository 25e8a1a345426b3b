"""The run ledger (`pql_runs`) around `scoring.writeback.write_run`: open a run, record a failure.

A run's row is written when it starts (status `running`), so a run that dies leaves a trace; a
successful run's row is completed by `write_run`, in the same transaction as its scores. A failure is
recorded in a small transaction of its own that touches nothing but the run's row.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from pql.config import Settings
from pql.schema import OutputTables, create_tables
from pql.validation.results import ValidationFailed
from scoring.writeback import SUCCEEDED, SUPERSEDED

RUNNING = "running"
FAILED = "failed"
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


def open_run(engine: sa.Engine, tables: OutputTables, record: RunRecord) -> None:
    """Create the output tables if they are missing and insert the run's row as `running`."""
    create_tables(engine, tables)
    with engine.begin() as conn:
        conn.execute(sa.insert(tables.runs).values(record.row(status=RUNNING)))


def record_failure(
    engine: sa.Engine, tables: OutputTables, record: RunRecord, exc: BaseException, settings: Settings
) -> None:
    """Mark the run `failed` with its error and, for a validation failure, the failing expectations."""
    validation = exc.summary if isinstance(exc, ValidationFailed) else None
    values = record.row(
        status=FAILED,
        finished_at=utc_now(),
        error=failure_text(exc, settings),
        validation_json=None if validation is None else json.dumps(validation, sort_keys=True, default=str),
    )
    runs = tables.runs
    with engine.begin() as conn:
        updated = conn.execute(sa.update(runs).where(runs.c.run_id == record.run_id).values(values)).rowcount
        if not updated:
            conn.execute(sa.insert(runs).values(values))

"""The lock that keeps two runs writing to the same CRM from interleaving.

PostgreSQL: a session-level advisory lock held on a dedicated connection for the whole run; the
server releases it if the process dies, and also if the server restarts or the connection drops while
the run goes on. So before writing, a run calls `RunLock.ensure_held` (which takes the lock again on a
new connection if its session was lost, or fails if another run has it now) and checks with
`RunLock.verify_on`, inside its write transaction, that the lock's session is still there.

Embedded databases (DuckDB, SQLite): an exclusive `flock` on a file next to the database file, which the
kernel releases if the process dies (and which nothing else takes away while it lives). Any other CRM
database: the same kind of file lock in the state directory, which guards runs sharing that directory.

The lock lives in the CRM database rather than in the orchestrator, so it holds whichever way a run
starts: `pql score`, a served deployment, a worker, or two Prefect servers pointed at one CRM.

The model registry's lock is the models layer's own (`pql.models.registry_lock`), taken where the
registry is written.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from pql.config import Settings
from pql.db import DataError, redacted
from pql.locks import AdvisoryLock, LockBusy, advisory_keys, advisory_lock, file_lock

LOCK_NAME = "crm-write"


class RunLockBusy(LockBusy):
    """Another run holds the lock on this CRM and did not let go within the timeout."""


class RunLockLost(DataError):
    """The run's lock went with its database session and could not be taken back; nothing was written."""


class RunLock:
    """The CRM run lock as the run holds it. A file lock cannot be lost while the process lives, so
    this base class has nothing to check; the advisory lock overrides both methods."""

    def ensure_held(self) -> None:
        """Make sure the lock is held now, taking it again if the session holding it was lost."""

    def verify_on(self, conn: sa.Connection) -> None:
        """Raise RunLockLost unless the lock is held while `conn`'s transaction runs."""


def lock_keys(settings: Settings, name: str = LOCK_NAME) -> tuple[int, int]:
    """Two non-negative 31-bit advisory-lock keys for `name` on this pipeline's output tables."""
    return advisory_keys(f"pql:{name}:{settings.tables.pql_scores}")


def lock_file(settings: Settings, name: str = LOCK_NAME) -> Path:
    """Where the file lock for this CRM lives: beside an embedded database file, else the state dir."""
    url = make_url(settings.crm_database_url)
    database = url.database or ""
    if url.get_backend_name() in ("duckdb", "sqlite") and database not in ("", ":memory:"):
        target = Path(database).expanduser().resolve()
        return target.with_name(f"{target.name}.{name}.lock")
    digest = hashlib.sha256(redacted(url).encode()).hexdigest()[:16]
    return settings.state_dir / "locks" / f"{name}-{digest}.lock"


def _busy_message(settings: Settings, waited: float, holder: str) -> str:
    return (
        f"another pql run is writing to the CRM {redacted(settings.crm_database_url)} ({holder}); "
        f"waited {waited:.0f} s for it to finish. Let it finish, or stop it, then run again "
        "(raise flows.lock_timeout_seconds to wait longer)."
    )


def _waiting_message(timeout_seconds: float, holder: str) -> str:
    return f"another run holds the CRM run lock ({holder}); waiting up to {timeout_seconds:g} s for it"


def _told_waiting(
    on_wait: Callable[[str], None] | None, timeout_seconds: float
) -> Callable[[str], None] | None:
    if on_wait is None:
        return None
    return lambda holder: on_wait(_waiting_message(timeout_seconds, holder))


@contextmanager
def run_lock(
    settings: Settings,
    *,
    timeout_seconds: float,
    holder: str = "pql run",
    on_wait: Callable[[str], None] | None = None,
    name: str = LOCK_NAME,
) -> Iterator[RunLock]:
    """Hold the CRM's run lock; wait up to `timeout_seconds` for it, then raise RunLockBusy.

    `holder` describes this run to whoever finds the lock taken; `on_wait` is told, once, that the
    lock is taken and this run is waiting.
    """

    def busy(waited: float, holder: str) -> str:
        return _busy_message(settings, waited, holder)

    waiting = _told_waiting(on_wait, timeout_seconds)
    if make_url(settings.crm_database_url).get_backend_name() == "postgresql":
        lock = _AdvisoryLock(settings, holder, name)
        with advisory_lock(
            lock, timeout_seconds=timeout_seconds, busy=busy, on_wait=waiting, error=RunLockBusy
        ):
            yield lock
        return
    with _file_run_lock(lock_file(settings, name), timeout_seconds, holder, waiting, busy):
        yield RunLock()


class _AdvisoryLock(AdvisoryLock, RunLock):
    """The CRM run lock as a session-level advisory lock, taken again if its session is lost."""

    def __init__(self, settings: Settings, holder: str, name: str) -> None:
        super().__init__(settings.crm_database_url, lock_keys(settings, name), holder)
        self.settings = settings

    def ensure_held(self) -> None:
        if self.still_held():
            return
        self.close()
        conn = self.connect()
        if not conn.execute(sa.text("SELECT pg_try_advisory_lock(:k1, :k2)"), self.keys).scalar():
            holder = self.holder(conn)
            raise RunLockLost(
                f"this run's lock on the CRM {redacted(self.settings.crm_database_url)} went with its "
                f"database session (a server restart or a dropped connection), and another run holds it "
                f"now ({holder}). Nothing was written; run again once that run has finished."
            )

    def verify_on(self, conn: sa.Connection) -> None:
        if not self.held_on(conn):
            raise RunLockLost(
                f"this run's lock on the CRM {redacted(self.settings.crm_database_url)} was lost just "
                "before its write (its database session ended). Nothing was written; run again."
            )


def _file_run_lock(
    path: Path,
    timeout_seconds: float,
    holder: str,
    on_wait: Callable[[str], None] | None,
    busy: Callable[[float, str], str],
) -> AbstractContextManager[None]:
    return file_lock(
        path, timeout_seconds=timeout_seconds, holder=holder, busy=busy, on_wait=on_wait, error=RunLockBusy
    )

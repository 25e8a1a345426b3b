"""The locks that keep two runs writing to the same CRM (or model registry) from interleaving.

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
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from datetime import UTC
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from pql.config import Settings
from pql.db import DataError, redacted
from pql.locks import LockBusy, file_lock

LOCK_NAME = "crm-write"
_LOCK_TIMEOUT_SQLSTATE = "55P03"


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
    digest = hashlib.sha256(f"pql:{name}:{settings.tables.pql_scores}".encode()).digest()
    return (
        int.from_bytes(digest[:4], "big") & 0x7FFFFFFF,
        int.from_bytes(digest[4:8], "big") & 0x7FFFFFFF,
    )


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
    if make_url(settings.crm_database_url).get_backend_name() == "postgresql":
        with _advisory_lock(settings, timeout_seconds, holder, on_wait, name) as advisory:
            yield advisory
        return

    def busy(waited: float, holder: str) -> str:
        return _busy_message(settings, waited, holder)

    with _file_run_lock(lock_file(settings, name), timeout_seconds, holder, on_wait, busy):
        yield RunLock()


@contextmanager
def registry_lock(
    settings: Settings,
    *,
    timeout_seconds: float,
    holder: str = "pql retrain",
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """Hold the model registry's lock, so two retrains never promote over each other."""
    root = settings.model_registry_path

    def busy(waited: float, holder: str) -> str:
        return (
            f"another retrain is writing to the model registry {root} ({holder}); waited {waited:.0f} s. "
            "Let it finish, then run again."
        )

    with _file_run_lock(root / ".retrain.lock", timeout_seconds, holder, on_wait, busy):
        yield


_HELD_BY = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = :pid "
    "AND classid = :k1 AND objid = :k2 AND objsubid = 2"
)


class _AdvisoryLock(RunLock):
    """A session-level advisory lock on a connection of its own."""

    def __init__(self, settings: Settings, holder: str, name: str) -> None:
        k1, k2 = lock_keys(settings, name)
        self.settings, self.keys = settings, {"k1": k1, "k2": k2}
        # Outside any pool, in autocommit: the lock belongs to this session and must not pin a
        # transaction open for the length of the run.
        self.engine = sa.create_engine(
            settings.crm_database_url,
            poolclass=sa.pool.NullPool,
            isolation_level="AUTOCOMMIT",
            connect_args={"application_name": holder[:63]},
        )
        self.conn: sa.Connection | None = None
        self.pid: int | None = None

    def acquire(self, timeout_seconds: float, on_wait: Callable[[str], None] | None) -> None:
        conn = self._connect()
        if not conn.execute(sa.text("SELECT pg_try_advisory_lock(:k1, :k2)"), self.keys).scalar():
            _wait_for_advisory_lock(conn, self.settings, self.keys, timeout_seconds, on_wait)

    def _connect(self) -> sa.Connection:
        self.conn = self.engine.connect()
        self.pid = self.conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()
        return self.conn

    def _still_held(self) -> bool:
        """Whether the lock's session is alive and still holds it (False if the connection is gone)."""
        if self.conn is None or self.conn.invalidated:
            return False
        try:
            return bool(self.conn.execute(sa.text(_HELD_BY), {"pid": self.pid, **self.keys}).scalar())
        except sa.exc.DBAPIError:
            return False

    def ensure_held(self) -> None:
        if self._still_held():
            return
        self._close()
        conn = self._connect()
        if not conn.execute(sa.text("SELECT pg_try_advisory_lock(:k1, :k2)"), self.keys).scalar():
            holder = _advisory_holder(conn, self.keys)
            raise RunLockLost(
                f"this run's lock on the CRM {redacted(self.settings.crm_database_url)} went with its "
                f"database session (a server restart or a dropped connection), and another run holds it "
                f"now ({holder}). Nothing was written; run again once that run has finished."
            )

    def verify_on(self, conn: sa.Connection) -> None:
        if not conn.execute(sa.text(_HELD_BY), {"pid": self.pid, **self.keys}).scalar():
            raise RunLockLost(
                f"this run's lock on the CRM {redacted(self.settings.crm_database_url)} was lost just "
                "before its write (its database session ended). Nothing was written; run again."
            )

    def release(self) -> None:
        """Let go of the lock; a session that is already gone took its lock with it."""
        if self._still_held():
            # The session may die just now, taking its lock with it: nothing left to release then.
            with suppress(sa.exc.DBAPIError):
                self.conn.execute(sa.text("SELECT pg_advisory_unlock(:k1, :k2)"), self.keys)
        self._close()

    def _close(self) -> None:
        if self.conn is not None:
            with suppress(sa.exc.DBAPIError):  # a dead connection has nothing left to close
                self.conn.close()
            self.conn = None


@contextmanager
def _advisory_lock(
    settings: Settings,
    timeout_seconds: float,
    holder: str,
    on_wait: Callable[[str], None] | None,
    name: str,
) -> Iterator[_AdvisoryLock]:
    lock = _AdvisoryLock(settings, holder, name)
    try:
        lock.acquire(timeout_seconds, on_wait)
        yield lock
    finally:
        lock.release()
        lock.engine.dispose()


def _advisory_holder(conn: sa.Connection, keys: dict[str, int]) -> str:
    row = conn.execute(
        sa.text(
            "SELECT a.pid, a.application_name, a.backend_start FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
            "AND l.classid = :k1 AND l.objid = :k2 AND l.objsubid = 2"
        ),
        keys,
    ).first()
    if row is None:
        return "holder unknown"
    since = row.backend_start.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"held by '{row.application_name or 'unnamed'}', server pid {row.pid}, since {since}"


def _wait_for_advisory_lock(
    conn: sa.Connection,
    settings: Settings,
    keys: dict[str, int],
    timeout_seconds: float,
    on_wait: Callable[[str], None] | None,
) -> None:
    holder = _advisory_holder(conn, keys)
    if timeout_seconds <= 0:
        raise RunLockBusy(_busy_message(settings, 0, holder))
    if on_wait is not None:
        on_wait(_waiting_message(timeout_seconds, holder))
    started = time.monotonic()
    conn.execute(sa.text(f"SET lock_timeout = {int(timeout_seconds * 1000)}"))
    try:
        conn.execute(sa.text("SELECT pg_advisory_lock(:k1, :k2)"), keys)
    except sa.exc.OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) != _LOCK_TIMEOUT_SQLSTATE:
            raise
        raise RunLockBusy(_busy_message(settings, time.monotonic() - started, holder)) from None
    finally:
        conn.execute(sa.text("RESET lock_timeout"))


def _file_run_lock(
    path: Path,
    timeout_seconds: float,
    holder: str,
    on_wait: Callable[[str], None] | None,
    busy: Callable[[float, str], str],
) -> AbstractContextManager[None]:
    def waiting(holder: str) -> None:
        if on_wait is not None:
            on_wait(_waiting_message(timeout_seconds, holder))

    return file_lock(
        path, timeout_seconds=timeout_seconds, holder=holder, busy=busy, on_wait=waiting, error=RunLockBusy
    )

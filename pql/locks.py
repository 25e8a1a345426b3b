"""Locks that name their holder: an exclusive, cross-process file lock (the kernel releases it if the
process dies) and a PostgreSQL session-level advisory lock (the server releases it if the session
ends). Whoever waits for either can say who holds it."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import sqlalchemy as sa

from pql.db import DataError

_POLL_SECONDS = 0.2


class LockBusy(DataError):
    """Another process holds the lock and did not let go within the timeout."""


def _file_holder(handle: IO[str]) -> str:
    handle.seek(0)
    try:
        info = json.loads(handle.read() or "{}")
    except json.JSONDecodeError:
        info = {}
    if not info:
        return "holder unknown"
    return f"held by '{info['holder']}', pid {info['pid']} on {info['host']}, since {info['since']}"


def _claim(handle: IO[str], holder: str) -> None:
    """Record who holds the lock, for the message another process shows while it waits."""
    since = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    record = {"holder": holder, "pid": os.getpid(), "host": socket.gethostname(), "since": since}
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps(record))
    handle.flush()


@contextmanager
def file_lock(
    path: Path,
    *,
    timeout_seconds: float,
    holder: str,
    busy: Callable[[float, str], str],
    on_wait: Callable[[str], None] | None = None,
    error: type[LockBusy] = LockBusy,
) -> Iterator[None]:
    """Hold an exclusive lock on `path`; wait up to `timeout_seconds`, then raise `error` with the
    message `busy(waited, holder description)`. `on_wait` is told the holder, once, when waiting."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Opened for appending so that waiting never truncates the holder's record.
    with open(path, "a+", encoding="utf-8") as handle:
        started = time.monotonic()
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - started
                if waited >= timeout_seconds:
                    raise error(busy(waited, _file_holder(handle))) from None
                if on_wait is not None:
                    on_wait(_file_holder(handle))
                    on_wait = None
                time.sleep(min(_POLL_SECONDS, timeout_seconds - waited))
        try:
            _claim(handle, holder)
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            handle.flush()
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def advisory_keys(name: str) -> tuple[int, int]:
    """Two non-negative 31-bit PostgreSQL advisory-lock keys for the lock called `name`."""
    digest = hashlib.sha256(name.encode()).digest()
    return (
        int.from_bytes(digest[:4], "big") & 0x7FFFFFFF,
        int.from_bytes(digest[4:8], "big") & 0x7FFFFFFF,
    )


_HELD_BY = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = :pid "
    "AND classid = :k1 AND objid = :k2 AND objsubid = 2"
)
_LOCK_TIMEOUT_SQLSTATE = "55P03"


class AdvisoryLock:
    """A PostgreSQL session-level advisory lock on a connection of its own: the server releases it if
    the process dies, so it holds across machines that share the database."""

    def __init__(self, url: str, keys: tuple[int, int], holder: str) -> None:
        self.keys = {"k1": keys[0], "k2": keys[1]}
        # Outside any pool, in autocommit: the lock belongs to this session and must not pin a
        # transaction open while it is held.
        self.engine = sa.create_engine(
            url,
            poolclass=sa.pool.NullPool,
            isolation_level="AUTOCOMMIT",
            connect_args={"application_name": holder[:63]},
        )
        self.conn: sa.Connection | None = None
        self.pid: int | None = None

    def acquire(
        self,
        timeout_seconds: float,
        on_wait: Callable[[str], None] | None,
        busy: Callable[[float, str], str],
        error: type[LockBusy],
    ) -> None:
        """Take the lock; wait up to `timeout_seconds` (telling `on_wait` the holder, once), then raise
        `error(busy(waited, holder))`."""
        conn = self.connect()
        if conn.execute(sa.text("SELECT pg_try_advisory_lock(:k1, :k2)"), self.keys).scalar():
            return
        holder = self.holder(conn)
        if timeout_seconds <= 0:
            raise error(busy(0, holder))
        if on_wait is not None:
            on_wait(holder)
        started = time.monotonic()
        conn.execute(sa.text(f"SET lock_timeout = {int(timeout_seconds * 1000)}"))
        try:
            conn.execute(sa.text("SELECT pg_advisory_lock(:k1, :k2)"), self.keys)
        except sa.exc.OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) != _LOCK_TIMEOUT_SQLSTATE:
                raise
            raise error(busy(time.monotonic() - started, holder)) from None
        finally:
            conn.execute(sa.text("RESET lock_timeout"))

    def connect(self) -> sa.Connection:
        self.conn = self.engine.connect()
        self.pid = self.conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()
        return self.conn

    def holder(self, conn: sa.Connection) -> str:
        """Who holds the lock now, as whoever waits for it should read it."""
        row = conn.execute(
            sa.text(
                "SELECT a.pid, a.application_name, a.backend_start FROM pg_locks l "
                "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
                "AND l.classid = :k1 AND l.objid = :k2 AND l.objsubid = 2"
            ),
            self.keys,
        ).first()
        if row is None:
            return "holder unknown"
        since = row.backend_start.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return f"held by '{row.application_name or 'unnamed'}', server pid {row.pid}, since {since}"

    def held_on(self, conn: sa.Connection) -> bool:
        """Whether this lock's session holds the lock, asked on `conn`."""
        return bool(conn.execute(sa.text(_HELD_BY), {"pid": self.pid, **self.keys}).scalar())

    def still_held(self) -> bool:
        """Whether the lock's session is alive and still holds it (False if the connection is gone)."""
        if self.conn is None or self.conn.invalidated:
            return False
        try:
            return self.held_on(self.conn)
        except sa.exc.DBAPIError:
            return False

    def release(self) -> None:
        """Let go of the lock; a session that is already gone took its lock with it."""
        if self.still_held():
            # The session may die just now, taking its lock with it: nothing left to release then.
            with suppress(sa.exc.DBAPIError):
                self.conn.execute(sa.text("SELECT pg_advisory_unlock(:k1, :k2)"), self.keys)
        self.close()

    def close(self) -> None:
        if self.conn is not None:
            with suppress(sa.exc.DBAPIError):  # a dead connection has nothing left to close
                self.conn.close()
            self.conn = None


@contextmanager
def advisory_lock(
    lock: AdvisoryLock,
    *,
    timeout_seconds: float,
    busy: Callable[[float, str], str],
    on_wait: Callable[[str], None] | None = None,
    error: type[LockBusy] = LockBusy,
) -> Iterator[AdvisoryLock]:
    """Hold `lock` for the block; released (and its engine disposed) however the block ends."""
    try:
        lock.acquire(timeout_seconds, on_wait, busy, error)
        yield lock
    finally:
        lock.release()
        lock.engine.dispose()

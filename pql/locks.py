"""An exclusive, cross-process file lock that names its holder: the kernel releases it if the
process dies, and whoever waits for it can say who holds it."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

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

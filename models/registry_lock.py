"""The model registry's one lock: training, promotion and rollback never interleave.

Where it lives depends on where the registry lives:

- a registry on this machine's file system (a path or a `file://` URL): an exclusive file lock in the
  registry folder, `.registry.lock`, which guards every process that reaches that folder;
- a remote registry (`s3://`, `gs://`, ...) with a PostgreSQL CRM: a session-level advisory lock in
  that database, keyed on the registry's URL, so it holds across machines;
- a remote registry with any other CRM: a file lock in `<state_dir>/locks/`, which only guards the
  processes that share that state directory.

The lock is re-entrant within one context: the retrain flow holds it for the whole retrain, and the
training function and `promote` it calls take it again without waiting for themselves.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from sqlalchemy.engine import make_url

from pql.config import Settings
from pql.locks import AdvisoryLock, LockBusy, advisory_keys, advisory_lock, file_lock
from pql.models.storage import RegistryLocation, RegistryStorage, open_registry

LOCK_FILE = ".registry.lock"

# The registries this context holds the lock of (by `RegistryStorage.identity`).
_held: ContextVar[frozenset[str]] = ContextVar("pql_registry_locks_held", default=frozenset())
_log = logging.getLogger(__name__)


class RegistryBusy(LockBusy):
    """Another process holds the registry's lock and did not let go within the timeout."""


def _busy_message(store: RegistryStorage, waited: float, holder: str) -> str:
    return (
        f"another pql process is writing to the model registry {store.location} ({holder}); waited "
        f"{waited:.0f} s. Let it finish, then run again (raise flows.lock_timeout_seconds to wait longer)."
    )


def _waiting_message(store: RegistryStorage, timeout_seconds: float, holder: str) -> str:
    return (
        f"another pql process holds the model registry {store.location} ({holder}); waiting up to "
        f"{timeout_seconds:g} s for it"
    )


def _shared_with_crm(settings: Settings) -> bool:
    return make_url(settings.crm_database_url).get_backend_name() == "postgresql"


@contextmanager
def registry_lock(
    settings: Settings,
    root: RegistryLocation | RegistryStorage | None = None,
    *,
    holder: str,
    timeout_seconds: float | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """Hold the lock of the registry `root` (default: the configured one) for the block.

    Waits up to `timeout_seconds` (default `flows.lock_timeout_seconds`), telling `on_wait` (default:
    a logged warning) once that it waits and for whom; then raises RegistryBusy naming the holder.
    `holder` describes this process to whoever finds the lock taken.
    """
    store = open_registry(settings.model_registry_path if root is None else root)
    if store.identity in _held.get():
        yield
        return
    timeout = settings.flows.lock_timeout_seconds if timeout_seconds is None else timeout_seconds
    tell = on_wait or _log.warning

    def busy(waited: float, holder: str) -> str:
        return _busy_message(store, waited, holder)

    def waiting(holder: str) -> None:
        tell(_waiting_message(store, timeout, holder))

    token = None
    try:
        with _lock(settings, store, timeout, holder, waiting, busy):
            token = _held.set(_held.get() | {store.identity})
            yield
    finally:
        if token is not None:
            _held.reset(token)


def _lock_file(settings: Settings, store: RegistryStorage) -> Path:
    """The file lock of a registry: in its folder when local, else in the state directory."""
    local = store.local_path(LOCK_FILE)
    if local is not None:
        return local
    digest = hashlib.sha256(store.identity.encode()).hexdigest()[:16]
    return settings.state_dir / "locks" / f"model-registry-{digest}.lock"


@contextmanager
def _lock(
    settings: Settings,
    store: RegistryStorage,
    timeout: float,
    holder: str,
    waiting: Callable[[str], None],
    busy: Callable[[float, str], str],
) -> Iterator[None]:
    if not store.is_local and _shared_with_crm(settings):
        keys = advisory_keys(f"pql:model-registry:{store.identity}")
        lock = AdvisoryLock(settings.crm_database_url, keys, holder)
        with advisory_lock(lock, timeout_seconds=timeout, busy=busy, on_wait=waiting, error=RegistryBusy):
            yield
        return
    path = _lock_file(settings, store)
    with file_lock(
        path, timeout_seconds=timeout, holder=holder, busy=busy, on_wait=waiting, error=RegistryBusy
    ):
        yield

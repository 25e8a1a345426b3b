"""Faults injected into real nightly runs: a commit that fails, a PostgreSQL server restarted between
taking the run lock and writing. The lock must hold when the run writes, and the ledger must say
exactly what happened to each run."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import psycopg
import psycopg.errors
import pytest
import sqlalchemy as sa

from pql.flows import tasks
from pql.flows.locking import lock_keys
from pql.flows.nightly import nightly

if TYPE_CHECKING:
    from conftest import World

pytestmark = [pytest.mark.usefixtures("prefect_api"), pytest.mark.slow]

PG_BIN = Path("/usr/lib/postgresql/15/bin")


@dataclass
class CommitFault:
    """The first commit after the run's write raises `error` instead of committing; records the DBAPI
    connection that failed and every DBAPI connection checked out of a pool after that."""

    error: Exception
    failed: list[Any] = field(default_factory=list)
    checked_out_later: list[Any] = field(default_factory=list)
    writing: bool = False

    def checked_out(self, dbapi_connection: Any, record: Any, proxy: Any) -> None:
        if self.failed:
            self.checked_out_later.append(dbapi_connection)

    @property
    def failed_connection_reused(self) -> bool:
        return any(conn is self.failed[0] for conn in self.checked_out_later)


@pytest.fixture
def commit_fault(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Exception], CommitFault]]:
    """Arms a CommitFault for this test: commit_fault(error)."""
    armed: list[CommitFault] = []
    real_write, real_commit = tasks.write_run_on, sa.engine.default.DefaultDialect.do_commit

    def arm(error: Exception) -> CommitFault:
        fault = CommitFault(error)

        def write(*args: Any, **kwargs: Any) -> Any:
            fault.writing = True
            return real_write(*args, **kwargs)

        def commit(self: Any, dbapi_connection: Any) -> None:
            if fault.writing and not fault.failed:
                # SQLAlchemy hands the pool's proxy here; the checkout event sees the DBAPI connection.
                fault.failed.append(getattr(dbapi_connection, "dbapi_connection", dbapi_connection))
                raise fault.error
            real_commit(self, dbapi_connection)

        monkeypatch.setattr(tasks, "write_run_on", write)
        monkeypatch.setattr(sa.engine.default.DefaultDialect, "do_commit", commit)
        sa.event.listen(sa.pool.Pool, "checkout", fault.checked_out)
        armed.append(fault)
        return fault

    yield arm
    for fault in armed:
        sa.event.remove(sa.pool.Pool, "checkout", fault.checked_out)


def _crm_on(world: World, request: pytest.FixtureRequest, crm: str) -> None:
    if crm == "postgres":
        world.crm_url = request.getfixturevalue("postgres_url")
    world.configure(retries=2)


def _clean_run_row(world: World) -> dict[str, Any]:
    """The ledger's only row, checked to hold one run's values (not several runs' run together)."""
    (row,) = world.table("runs").to_dict("records")
    assert len(row["run_id"]) == 32
    assert row["status"] in ("succeeded", "failed")
    return row


CRMS = ["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)]
CONNECTION_LOST = {
    "duckdb": duckdb.TransactionException("Failed to commit: could not write to the WAL"),
    "postgres": psycopg.OperationalError("server closed the connection unexpectedly"),
}
DISK_FULL = {
    "duckdb": duckdb.IOException("Could not write file: No space left on device"),
    "postgres": psycopg.errors.DiskFull("could not extend file: No space left on device"),
}


@pytest.mark.parametrize("crm", CRMS)
def test_a_transient_commit_failure_is_retried_on_a_fresh_connection(
    world: World, request: pytest.FixtureRequest, commit_fault: Callable[[Exception], CommitFault], crm: str
) -> None:
    _crm_on(world, request, crm)
    fault = commit_fault(CONNECTION_LOST[crm])
    summary = nightly(as_of=world.end, config=world.config)
    assert fault.failed and not fault.failed_connection_reused
    row = _clean_run_row(world)
    assert (row["run_id"], row["status"], row["error"]) == (summary.run_id, "succeeded", None)
    assert len(world.table("scores")) == summary.accounts_scored


@pytest.mark.parametrize("crm", CRMS)
def test_a_disk_full_at_commit_marks_only_that_run_failed_and_writes_nothing(
    world: World, request: pytest.FixtureRequest, commit_fault: Callable[[Exception], CommitFault], crm: str
) -> None:
    _crm_on(world, request, crm)
    fault = commit_fault(DISK_FULL[crm])
    state = nightly(as_of=world.end, config=world.config, return_state=True)
    assert state.is_failed()
    assert fault.failed and not fault.failed_connection_reused
    row = _clean_run_row(world)
    assert row["status"] == "failed" and "No space left on device" in row["error"]
    assert world.table("scores").empty and world.table("history").empty


@dataclass
class ThrowawayPostgres:
    """A PostgreSQL server of this test's own, which the test may restart."""

    data: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def pg_ctl(self, *args: str) -> None:
        command = [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-w", *args]
        subprocess.run(["su", "postgres", "-c", subprocess.list2cmdline(command)], check=True, timeout=120)

    def restart(self) -> None:
        self.pg_ctl("-m", "fast", "restart")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def throwaway_postgres() -> Iterator[ThrowawayPostgres]:
    """A fresh PostgreSQL server on a free port, in a temporary folder, stopped and removed afterwards."""
    if not (PG_BIN / "initdb").exists() or os.geteuid() != 0:
        pytest.skip("needs PostgreSQL 15's server binaries and root (to run them as postgres)")
    root = Path(tempfile.mkdtemp(prefix="pql-restart-pg-"))
    shutil.chown(root, "postgres", "postgres")
    server = ThrowawayPostgres(root / "data", _free_port())
    initdb = [str(PG_BIN / "initdb"), "-D", str(server.data), "-A", "trust", "-U", "postgres", "--no-sync"]
    subprocess.run(["su", "postgres", "-c", subprocess.list2cmdline(initdb)], check=True, timeout=120)
    options = f"-p {server.port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    server.pg_ctl("-l", str(root / "server.log"), "-o", options, "start")
    try:
        yield server
    finally:
        server.pg_ctl("-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


def _lock_holders(url: str, keys: tuple[int, int]) -> int:
    """How many sessions hold the advisory lock `keys`, seen from a session of its own."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            query = (
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND classid = :k1 AND objid = :k2 AND objsubid = 2"
            )
            return int(conn.execute(sa.text(query), {"k1": keys[0], "k2": keys[1]}).scalar())
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_a_postgres_restart_between_lock_and_write_takes_the_lock_again_before_writing(
    world: World, throwaway_postgres: ThrowawayPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.crm_url = throwaway_postgres.url
    world.configure(retries=2)
    keys = lock_keys(world.settings)
    real_features, real_write = tasks.features_for, tasks.write_run_on
    holders_at_write: list[int] = []

    def restarted_first(*args: Any, **kwargs: Any) -> Any:
        throwaway_postgres.restart()  # the run holds the lock and its ledger row is written by now
        return real_features(*args, **kwargs)

    def write(*args: Any, **kwargs: Any) -> Any:
        holders_at_write.append(_lock_holders(throwaway_postgres.url, keys))
        return real_write(*args, **kwargs)

    monkeypatch.setattr(tasks, "features_for", restarted_first)
    monkeypatch.setattr(tasks, "write_run_on", write)
    state = nightly(as_of=world.end, config=world.config, return_state=True)
    assert holders_at_write and all(count == 1 for count in holders_at_write)
    assert state.is_completed()
    summary = state.result()
    (row,) = world.table("runs").to_dict("records")
    assert (row["run_id"], row["status"]) == (summary.run_id, "succeeded")
    assert _lock_holders(throwaway_postgres.url, keys) == 0

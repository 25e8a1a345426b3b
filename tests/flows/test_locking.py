"""The CRM run lock: a second run waits for the first or fails with a message saying who holds it."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from pql.config import Settings, load_settings
from pql.flows.locking import RunLockBusy, RunLockLost, lock_file, lock_keys, run_lock

HOLD_IN_CHILD = """
import sys
from pql.flows.locking import run_lock
from pql.config import load_settings
settings = load_settings(None, crm_url=sys.argv[1], state_dir=sys.argv[2])
with run_lock(settings, timeout_seconds=0, holder="pql nightly run in another process"):
    print("held", flush=True)
    sys.stdin.readline()
"""


def _settings(crm_url: str, tmp_path: Path) -> Settings:
    return load_settings(None, crm_url=crm_url, state_dir=tmp_path / ".pql")


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def crm_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings whose CRM is an embedded DuckDB file or a PostgreSQL database."""
    if request.param == "postgres":
        return _settings(request.getfixturevalue("postgres_url"), tmp_path)
    return _settings(f"duckdb:///{tmp_path / 'crm.duckdb'}", tmp_path)


def test_a_second_run_fails_at_once_with_who_holds_the_lock(crm_settings: Settings) -> None:
    with (
        run_lock(crm_settings, timeout_seconds=0, holder="pql nightly run 1234"),
        pytest.raises(RunLockBusy) as caught,
        run_lock(crm_settings, timeout_seconds=0, holder="second"),
    ):
        pass
    message = str(caught.value)
    assert "another pql run is writing to the CRM" in message
    assert "pql nightly run 1234" in message


def test_the_lock_is_free_again_once_released(crm_settings: Settings) -> None:
    with run_lock(crm_settings, timeout_seconds=0, holder="first"):
        pass
    with run_lock(crm_settings, timeout_seconds=0, holder="second"):
        pass


def test_a_waiting_run_gets_the_lock_when_the_first_finishes(crm_settings: Settings) -> None:
    first_holds, first_releases, second_waits = threading.Event(), threading.Event(), threading.Event()
    order: list[str] = []

    def first() -> None:
        with run_lock(crm_settings, timeout_seconds=0, holder="first"):
            order.append("first holds")
            first_holds.set()
            first_releases.wait(timeout=30)
            order.append("first releases")

    def on_wait(message: str) -> None:
        assert "first" in message
        second_waits.set()

    holder = threading.Thread(target=first)
    holder.start()
    assert first_holds.wait(timeout=30)
    waiter_error: list[BaseException] = []

    def second() -> None:
        try:
            with run_lock(crm_settings, timeout_seconds=30, holder="second", on_wait=on_wait):
                order.append("second holds")
        except BaseException as exc:
            waiter_error.append(exc)

    waiter = threading.Thread(target=second)
    waiter.start()
    assert second_waits.wait(timeout=30)
    first_releases.set()
    holder.join(timeout=30)
    waiter.join(timeout=30)
    assert not waiter_error
    assert order == ["first holds", "first releases", "second holds"]


def test_a_waiting_run_gives_up_after_its_timeout(crm_settings: Settings) -> None:
    with (
        run_lock(crm_settings, timeout_seconds=0, holder="pql nightly run 1234"),
        pytest.raises(RunLockBusy, match=r"waited \d+ s"),
        run_lock(crm_settings, timeout_seconds=0.3, holder="second"),
    ):
        pass


def test_runs_against_different_crms_do_not_block_each_other(tmp_path: Path) -> None:
    one = _settings(f"duckdb:///{tmp_path / 'one.duckdb'}", tmp_path)
    two = _settings(f"duckdb:///{tmp_path / 'two.duckdb'}", tmp_path)
    with run_lock(one, timeout_seconds=0, holder="one"), run_lock(two, timeout_seconds=0, holder="two"):
        pass


def test_the_lock_file_of_an_embedded_crm_sits_beside_its_database(tmp_path: Path) -> None:
    settings = _settings(f"sqlite:///{tmp_path / 'crm.sqlite'}", tmp_path)
    assert lock_file(settings) == (tmp_path / "crm.sqlite.crm-write.lock").resolve()


def test_the_lock_holds_across_processes(tmp_path: Path) -> None:
    crm_url = f"duckdb:///{tmp_path / 'crm.duckdb'}"
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD_IN_CHILD, crm_url, str(tmp_path / ".pql")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        with (
            pytest.raises(RunLockBusy, match="in another process"),
            run_lock(_settings(crm_url, tmp_path), timeout_seconds=0, holder="here"),
        ):
            pass
    finally:
        assert child.stdin is not None
        child.stdin.write("\n")
        child.stdin.close()
        child.wait(timeout=30)
    with run_lock(_settings(crm_url, tmp_path), timeout_seconds=0, holder="here"):
        pass


def _terminate_lock_sessions(postgres_url: str, settings: Settings) -> None:
    """End, from another session, every session holding the run lock (what a server restart does)."""
    k1, k2 = lock_keys(settings)
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
                    "AND classid = :k1 AND objid = :k2 AND objsubid = 2"
                ),
                {"k1": k1, "k2": k2},
            )
    finally:
        admin.dispose()


@pytest.mark.postgres
def test_a_lock_whose_session_ended_is_taken_again_and_released_without_error(
    postgres_url: str, tmp_path: Path
) -> None:
    settings = _settings(postgres_url, tmp_path)
    with run_lock(settings, timeout_seconds=0, holder="first") as lock:
        _terminate_lock_sessions(postgres_url, settings)
        lock.ensure_held()
        with pytest.raises(RunLockBusy), run_lock(settings, timeout_seconds=0, holder="second"):
            pass
        _terminate_lock_sessions(postgres_url, settings)
    # Leaving the block with the session gone is no error: the lock went with it.
    with run_lock(settings, timeout_seconds=0, holder="second"):
        pass


@pytest.mark.postgres
def test_a_lock_taken_by_another_run_meanwhile_fails_before_the_write(
    postgres_url: str, tmp_path: Path
) -> None:
    settings = _settings(postgres_url, tmp_path)
    with run_lock(settings, timeout_seconds=0, holder="first") as lock:
        _terminate_lock_sessions(postgres_url, settings)
        engine = sa.create_engine(postgres_url)
        try:
            with engine.connect() as writer, pytest.raises(RunLockLost, match="lost just before its write"):
                lock.verify_on(writer)
            with (
                run_lock(settings, timeout_seconds=0, holder="pql nightly run 5678"),
                pytest.raises(RunLockLost, match=r"another run holds it now.*5678"),
            ):
                lock.ensure_held()
        finally:
            engine.dispose()

"""One registry lock: promote and rollback wait for whoever holds it, a busy registry fails naming the
holder, and two `pql train` processes racing on one registry leave a consistent champion.json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path

import pytest
from model_frames import Trained
from released_together import released_together

from pql.config import Settings, load_settings
from pql.db import create_engine
from pql.demo.world import write_demo_world
from pql.models.registry import CHAMPION_FILE, METADATA_FILE, MODEL_FILE, champion_state, list_versions
from pql.models.registry_lock import RegistryBusy, registry_lock
from pql.schema import create_tables, source_tables

PQL = [sys.executable, "-c", "from pql.cli import app; app()"]
HOLDER = "a test holding the registry"


def pql_env(state_dir: Path, **variables: str) -> dict[str, str]:
    return {**os.environ, "PQL_STATE_DIR": str(state_dir), **variables}


def wait_for_the_lock(settings: Settings, *command: str) -> subprocess.CompletedProcess[str]:
    """Run `pql COMMAND` while this test holds the registry lock; release it once the command says it
    waits; the command's result."""
    with registry_lock(settings, holder=HOLDER, timeout_seconds=0):
        child = subprocess.Popen(
            [*PQL, *command],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=pql_env(settings.state_dir),
        )
        assert child.stderr is not None
        said = ""
        while "waiting up to" not in said and child.poll() is None:
            said = child.stderr.readline()
        assert "waiting up to 600 s" in said and HOLDER in said, said
    stdout, stderr = child.communicate(timeout=120)
    return subprocess.CompletedProcess(child.args, child.returncode, stdout, stderr)


def test_promote_waits_for_the_lock_then_promotes(retrained: tuple[Trained, Trained]) -> None:
    _, challenger = retrained
    result = wait_for_the_lock(challenger.settings, "models", "promote", challenger.outcome.version)
    assert result.returncode == 0, result.stderr
    assert f"{challenger.outcome.version} is now the champion" in result.stdout
    assert champion_state(challenger.root)["champion"] == challenger.outcome.version


def test_rollback_waits_for_the_lock_then_rolls_back(retrained: tuple[Trained, Trained]) -> None:
    champion, challenger = retrained
    subprocess.run(
        [*PQL, "models", "promote", challenger.outcome.version],
        env=pql_env(challenger.settings.state_dir),
        check=True,
        capture_output=True,
    )
    result = wait_for_the_lock(challenger.settings, "models", "rollback")
    assert result.returncode == 0, result.stderr
    assert f"{champion.outcome.version} is the champion again" in result.stdout
    assert champion_state(challenger.root)["champion"] == champion.outcome.version


def test_a_busy_registry_fails_after_the_timeout_naming_the_holder(
    retrained: tuple[Trained, Trained],
) -> None:
    _, challenger = retrained
    settings = challenger.settings
    with registry_lock(settings, holder=HOLDER, timeout_seconds=0):
        result = subprocess.run(
            [*PQL, "models", "promote", challenger.outcome.version],
            env=pql_env(settings.state_dir, PQL_FLOWS__LOCK_TIMEOUT_SECONDS="0"),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 1
    assert "another pql process is writing to the model registry" in result.stderr
    assert f"held by '{HOLDER}', pid {os.getpid()}" in result.stderr
    assert champion_state(challenger.root)["champion"] != challenger.outcome.version


def test_the_lock_is_reentrant_within_a_context_and_exclusive_across_threads(tmp_path: Path) -> None:
    settings = load_settings(None, state_dir=tmp_path / ".pql")
    failures: list[str] = []

    def another_thread() -> None:
        try:
            with registry_lock(settings, holder="another thread", timeout_seconds=0):
                failures.append("the other thread got the lock")
        except RegistryBusy as exc:
            failures.append(str(exc))

    with (
        registry_lock(settings, holder=HOLDER, timeout_seconds=0),
        registry_lock(settings, holder="the same flow, again", timeout_seconds=0),
    ):
        thread = threading.Thread(target=another_thread)
        thread.start()
        thread.join()
    (failure,) = failures
    assert HOLDER in failure


def remote_settings(state_dir: Path, crm_url: str, registry: str) -> Settings:
    return load_settings(None, state_dir=state_dir, crm_url=crm_url, registry_path=registry)


def busy_elsewhere(settings: Settings) -> str | None:
    """The busy message another thread (another worker) gets for the registry, or None if it got it."""
    found: list[str | None] = []

    def worker() -> None:
        try:
            with registry_lock(settings, holder="worker 2", timeout_seconds=0):
                found.append(None)
        except RegistryBusy as exc:
            found.append(str(exc))

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    return found[0]


@pytest.mark.postgres
def test_a_remote_registry_is_locked_in_a_postgresql_crm_across_workers(
    tmp_path: Path, postgres_url: str
) -> None:
    registry = "memory://pql-shared/models"
    mine = remote_settings(tmp_path / "worker-1", postgres_url, registry)
    theirs = remote_settings(tmp_path / "worker-2", postgres_url, registry)
    with registry_lock(mine, holder=HOLDER, timeout_seconds=0):
        busy = busy_elsewhere(theirs)
    assert busy is not None and f"held by '{HOLDER}', server pid" in busy
    assert busy_elsewhere(theirs) is None
    assert not (tmp_path / "worker-1" / "locks").exists()


def test_without_postgresql_a_remote_registry_is_locked_in_the_state_directory(tmp_path: Path) -> None:
    registry = "memory://pql-shared/models"
    crm = f"duckdb:///{(tmp_path / 'crm.duckdb').as_posix()}"
    settings = remote_settings(tmp_path / ".pql", crm, registry)
    with registry_lock(settings, holder=HOLDER, timeout_seconds=0):
        busy = busy_elsewhere(settings)
        (lock_file,) = (tmp_path / ".pql" / "locks").iterdir()
    assert busy is not None and HOLDER in busy
    assert lock_file.name.startswith("model-registry-")


TRAIN_ON_GO = """
import sys
print("ready", flush=True)
sys.stdin.readline()
from pql.cli import app
app(["--config", sys.argv[1], "train", "--end", sys.argv[2]])
"""


@pytest.mark.slow
def test_two_concurrent_trainings_leave_a_consistent_champion_file(tmp_path: Path) -> None:
    # SQLite, not DuckDB: a DuckDB file admits one process at a time, and both read the source.
    source = tmp_path / "source.sqlite"
    config = tmp_path / "pql.toml"
    # A conversion floor no world reaches: each training registers the points baseline marked
    # too_little_data and promotes it (no trained champion exists), so both write champion.json
    # whatever the model would have scored, and quickly.
    config.write_text(
        f'source_url = "sqlite:///{source.as_posix()}"\n'
        f'state_dir = "{(tmp_path / ".pql").as_posix()}"\n'
        "[flows]\nlock_timeout_seconds = 600\n"
        "[model]\nmin_conversions = 100000\n",
        encoding="utf-8",
    )
    settings = load_settings(config)
    engine = create_engine(settings.source_database_url)
    tables = source_tables(settings.tables)
    create_tables(engine, tables)
    write_demo_world(engine, tables, settings, accounts=150, days=90, seed=7, end=datetime(2026, 3, 2))
    engine.dispose()

    # Two ends, so the two training sets (and so the two version names) differ even within one second.
    commands = [[sys.executable, "-c", TRAIN_ON_GO, str(config), end] for end in ("2026-02-23", "2026-03-02")]
    results = released_together(commands, env=dict(os.environ), cwd=tmp_path, timeout=600)

    for result in results:
        assert result.returncode == 1 and "Training refused" in result.stderr, result.stderr
    root = settings.model_registry_path
    state = json.loads((root / CHAMPION_FILE).read_text(encoding="utf-8"))
    registered = {row["version"] for row in list_versions(root)}
    log = state["log"]
    assert [entry["action"] for entry in log] == ["fallback", "fallback"]
    assert {entry["version"] for entry in log} == registered and len(registered) == 2
    assert [entry["at"] for entry in log] == sorted(entry["at"] for entry in log)
    assert state["stack"] == [entry["version"] for entry in log]
    assert state["champion"] == log[-1]["version"]
    for name in (METADATA_FILE, MODEL_FILE):
        assert (root / state["champion"] / name).is_file()

"""`pql score` killed with SIGKILL, in a real process, before, during and after its write: the CRM holds
exactly the old or the new state, the next run marks the killed run `abandoned`, and the temporary
Prefect server the command started does not outlive it."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pytest

from pql.flows.nightly import nightly

if TYPE_CHECKING:
    from conftest import World

pytestmark = [pytest.mark.usefixtures("prefect_api"), pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
DEADLINE_SECONDS = 240
# `pql score`, with a pause at the kill point: it prints "paused" and waits for a line on stdin that
# never comes (the test kills it first).
PAUSED_SCORE = """
import os
import sys

from pql.flows import tasks
from pql.cli import app

point = os.environ["KILLED_RUN_PAUSE_AT"]


def pause():
    print("paused", flush=True)
    sys.stdin.readline()


def paused_at(name, real):
    def wrapper(*args, **kwargs):
        if point == f"before-{name}":
            pause()
        result = real(*args, **kwargs)
        if point == f"during-{name}":
            pause()  # inside the write's transaction, not yet committed
        return result

    return wrapper


tasks.write_run_on = paused_at("write", tasks.write_run_on)
tasks.publish_run_artifact = paused_at("report", tasks.publish_run_artifact)
app(sys.argv[1:], prog_name="pql")
"""
# Where to kill, and which state the CRM must then hold.
KILL_POINTS = {"during-write": "old", "before-report": "new"}


def _child_pids(parent: int) -> list[int]:
    """The processes whose parent is `parent`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            found.append(int(stat.parent.name))
    return found


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie waiting for a parent to reap it has ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_for_line(child: subprocess.Popen[str], expected: str, deadline: float) -> None:
    assert child.stdout is not None
    while time.monotonic() < deadline:
        ready, _, _ = select.select([child.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        line = child.stdout.readline()
        if not line:
            pytest.fail(f"pql score ended (exit code {child.wait()}) before printing {expected!r}")
        if line.strip() == expected:
            return
    pytest.fail(f"pql score did not print {expected!r} in time")


def _servers_of(pid: int) -> list[int]:
    """The Prefect API servers (uvicorn) that process `pid` started."""
    return [child for child in _child_pids(pid) if "uvicorn" in _command_line(child)]


def _gone_by(pids: list[int], deadline: float) -> list[int]:
    """`pids` still alive at `deadline`; waits on each process's pidfd, which turns readable on exit."""
    for pid in pids:
        try:
            descriptor = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            select.select([descriptor], [], [], max(0.0, deadline - time.monotonic()))
        finally:
            os.close(descriptor)
    return [pid for pid in pids if _alive(pid)]


def _with_this_repo(env: dict[str, str]) -> dict[str, str]:
    """`env` with this checkout first on PYTHONPATH, so a child process runs the code under test."""
    return env | {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))}


def _killed_score(world: World, point: str, tmp_path: Path) -> None:
    """Run `pql score` in a process of its own, kill it with SIGKILL at `point`, and check that the
    Prefect server it started goes with it."""
    # No Prefect API: the command starts its temporary server, which the test checks on.
    env = _with_this_repo({name: value for name, value in os.environ.items() if "PREFECT_API" not in name})
    env |= {"PREFECT_HOME": str(tmp_path / "prefect-home"), "KILLED_RUN_PAUSE_AT": point}
    argv = ["--config", world.config, "score", "--as-of", f"{world.end:%Y-%m-%d}"]
    stderr = open(tmp_path / f"score-{point}.log", "w", encoding="utf-8")  # noqa: SIM115 - closed below
    child = subprocess.Popen(
        [sys.executable, "-c", PAUSED_SCORE, *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    servers: list[int] = []
    try:
        _wait_for_line(child, "paused", time.monotonic() + DEADLINE_SECONDS)
        servers = _servers_of(child.pid)
        assert servers, "the command should have started a temporary Prefect server"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
        assert _gone_by(servers, time.monotonic() + 60) == []
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for pid in servers:  # a server the fix did not stop must not outlive the test either
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        stderr.close()


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_a_killed_score_leaves_old_or_new_state_is_marked_abandoned_and_leaves_no_server(
    world: World, point: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    nightly(as_of=world.end - timedelta(days=1), config=world.config)
    old = {key: world.table(key) for key in ("scores", "history")}

    _killed_score(world, point, tmp_path)

    runs = world.table("runs")
    killed = runs[runs["as_of"] == pd.Timestamp(world.end)].to_dict("records")
    assert len(killed) == 1
    if KILL_POINTS[point] == "old":
        for key, frame in old.items():
            pd.testing.assert_frame_equal(world.table(key), frame)
        assert killed[0]["status"] == "running"
    else:
        assert set(world.table("scores")["as_of"]) == {pd.Timestamp(world.end)}
        assert killed[0]["status"] == "succeeded"

    following = nightly(as_of=world.end, config=world.config)
    statuses = world.table("runs").set_index("run_id")["status"]
    assert statuses[following.run_id] == "succeeded"
    if KILL_POINTS[point] == "old":
        assert statuses[killed[0]["run_id"]] == "abandoned"
        assert f"marked 1 earlier run(s) abandoned (they ended without finishing): {killed[0]['run_id']}" in (
            caplog.text
        )
    else:
        assert statuses[killed[0]["run_id"]] == "superseded"
    assert "running" not in set(statuses)


# Takes the CRM run lock and opens a run in pql_runs, as a run does, prints its run_id, then waits.
OPENED_RUN = """
import sys
from datetime import datetime

from pql.flows import ledger
from pql.flows.locking import run_lock
from pql.config import load_settings
from pql.db import create_engine
from pql.schema import output_tables

settings = load_settings(None, crm_url=sys.argv[1], state_dir=sys.argv[2])
engine = create_engine(sys.argv[1])
with run_lock(settings, timeout_seconds=0, holder="pql nightly run about to be killed"):
    record = ledger.RunRecord(kind="nightly", as_of=datetime(2026, 3, 1))
    ledger.open_run(engine, output_tables(settings.tables), record)
    print(record.run_id, flush=True)
    sys.stdin.readline()
"""


@pytest.mark.postgres
def test_a_run_is_marked_abandoned_only_once_no_session_holds_its_advisory_lock(
    world: World, postgres_url: str
) -> None:
    world.crm_url = postgres_url
    world.configure()
    env = _with_this_repo(dict(os.environ))
    child = subprocess.Popen(
        [sys.executable, "-c", OPENED_RUN, postgres_url, str(world.root / ".pql")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert child.stdout is not None
        ready, _, _ = select.select([child.stdout], [], [], DEADLINE_SECONDS)
        run_id = child.stdout.readline().strip() if ready else ""
        assert len(run_id) == 32
        refused = nightly(as_of=world.end, config=world.config, return_state=True)
        assert refused.is_failed()
        assert world.table("runs").set_index("run_id")["status"].to_dict() == {run_id: "running"}
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
    # The server ends the dead client's session, and its lock, at once or nearly: wait if need be.
    world.configure(lock_timeout_seconds=60)
    following = nightly(as_of=world.end, config=world.config)
    statuses = world.table("runs").set_index("run_id")["status"].to_dict()
    assert statuses == {run_id: "abandoned", following.run_id: "succeeded"}

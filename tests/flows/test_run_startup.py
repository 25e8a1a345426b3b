"""Starting a run: everything it imports is imported in the main thread before any thread starts, and
Prefect's API is ready (a configured server, or the temporary one started with room to spare) or the
command says in one line what to set."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED, temporary_settings
from released_together import released_together

from pql.flows import server
from pql.flows.runner import EPHEMERAL_ATTEMPTS, PrefectApiUnavailable, prefect_api

# A run of a one-task flow, as `pql score` makes it, recording every module a thread other than the
# main one imports (the audit hook sees each first import, in the importing thread).
RUN_AND_REPORT_THREAD_IMPORTS = """
import sys, threading
off_main = []

def hook(event, args):
    if event == "import" and threading.current_thread() is not threading.main_thread():
        off_main.append(f"{threading.current_thread().name}:{args[0]}")

sys.addaudithook(hook)
if len(sys.argv) > 1:
    print("ready", flush=True)
    sys.stdin.readline()
from pql.flows.runner import quiet_prefect, run_flow
quiet_prefect()
from prefect import flow, task
import pql.flows.nightly

@task
def one() -> int:
    return 1

@flow
def tiny() -> int:
    return one()

assert run_flow(tiny) == 1
print("\\n".join(off_main))
"""
# Stacks that must never be imported by a second thread while the main one imports others. (Prefect's
# own event-loop thread imports a few anyio submodules lazily; those import nothing of these.)
RUN_STACK_PACKAGES = ("sqlalchemy", "great_expectations", "prefect", "pql", "pandas", "numpy")


def _environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("PREFECT_")}
    return {
        **env,
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PQL_STATE_DIR": str(tmp_path / ".pql"),
        **extra,
    }


def _off_main_stack_imports(stdout: str) -> list[str]:
    lines = [line for line in stdout.splitlines() if ":" in line]
    return [line for line in lines if line.split(":", 1)[1].split(".")[0] in RUN_STACK_PACKAGES]


@pytest.mark.slow
def test_no_thread_but_the_main_one_imports_the_run_stacks_during_a_run(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", RUN_AND_REPORT_THREAD_IMPORTS],
        capture_output=True,
        text=True,
        env=_environment(tmp_path),
        cwd=tmp_path,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert _off_main_stack_imports(done.stdout) == []


# Each pair costs two full command start-ups; the structure test above is the proof, these are the smoke.
PAIRS = 2


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_runs_started_in_pairs_at_the_same_instant_never_fail_on_an_import(tmp_path: Path) -> None:
    api_url = str(PREFECT_API_URL.value())  # the session's test server: the pairs start none of their own
    for pair in range(PAIRS):
        env = _environment(tmp_path / f"pair-{pair}", PREFECT_API_URL=api_url)
        command = [sys.executable, "-c", RUN_AND_REPORT_THREAD_IMPORTS, "on-go"]
        for done in released_together([command, command], env, tmp_path, timeout=600):
            assert "ImportError" not in done.stderr, f"pair {pair}: {done.stderr}"
            assert done.returncode == 0, f"pair {pair}: {done.stderr}"
            assert _off_main_stack_imports(done.stdout) == [], f"pair {pair}"


def test_a_run_that_cannot_start_prefects_server_says_what_to_set_in_one_line(tmp_path: Path) -> None:
    # A start-up allowance of 0 s: Prefect's temporary server can never answer in time.
    env = _environment(tmp_path, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="0")
    done = subprocess.run(
        [str(Path(sys.executable).with_name("pql")), "score", "--dry-run"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.strip().splitlines() if not line.startswith("details: ")]
    assert lines[0] == "run could not start"
    assert len(lines) == 2, done.stderr
    assert f"did not start within 0 s ({EPHEMERAL_ATTEMPTS} tries)" in lines[1]
    assert "PREFECT_API_URL" in lines[1] and "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS" in lines[1]


@pytest.fixture
def no_configured_api() -> Iterator[None]:
    """No PREFECT_API_URL (whatever the session set), temporary servers allowed."""
    with temporary_settings(
        updates={PREFECT_SERVER_EPHEMERAL_ENABLED: True}, restore_defaults={PREFECT_API_URL}
    ):
        yield


@pytest.fixture
def fake_servers(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], list[str]]:
    """The temporary server, faked: `fake_servers(n)` makes its first n starts fail as a slow start
    does, and returns the list its starts and stops are recorded in."""

    def install(failing: int) -> list[str]:
        calls: list[str] = []

        @contextmanager
        def fake(timeout_seconds: float) -> Iterator[str]:
            calls.append("start")
            try:
                if calls.count("start") <= failing:
                    raise server.ServerDidNotStart("the local Prefect server did not answer within 0 s")
                yield "http://127.0.0.1:1/api"
            finally:
                calls.append("stop")

        monkeypatch.setattr(server, "ephemeral_server", fake)
        return calls

    return install


@pytest.mark.usefixtures("no_configured_api")
def test_a_temporary_server_that_times_out_once_is_started_again(
    fake_servers: Callable[[int], list[str]],
) -> None:
    calls = fake_servers(1)
    with ExitStack() as stack:
        prefect_api(stack)
        assert PREFECT_API_URL.value() == "http://127.0.0.1:1/api"
    assert calls == ["start", "stop", "start", "stop"]


@pytest.mark.usefixtures("no_configured_api")
def test_a_temporary_server_that_never_starts_is_a_clear_error_after_two_tries(
    fake_servers: Callable[[int], list[str]],
) -> None:
    calls = fake_servers(EPHEMERAL_ATTEMPTS)
    with (
        ExitStack() as stack,
        pytest.raises(PrefectApiUnavailable, match="set PREFECT_API_URL to a running Prefect server"),
    ):
        prefect_api(stack)
    assert calls == ["start", "stop"] * EPHEMERAL_ATTEMPTS


def test_a_configured_prefect_server_is_used_as_it_is(fake_servers: Callable[[int], list[str]]) -> None:
    calls = fake_servers(0)
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:4200/api"}), ExitStack() as stack:
        prefect_api(stack)
    assert calls == []

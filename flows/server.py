"""Local Prefect servers, for commands run when no Prefect API is configured.

Served deployments need a server that runs Prefect's scheduler: the temporary server Prefect starts on
its own when no API URL is set does not schedule anything. `local_server` starts `prefect server start`
(with its UI) for the life of `pql serve`.

`ephemeral_server` replaces Prefect's own temporary server for `pql score` and `pql backfill`: the same
API server, but started so that it dies with the command. Prefect's is a plain child process that it
stops at exit, so a command killed with SIGKILL (or by the OOM killer) left it running for good.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from pql.config import ConfigError

STARTUP_TIMEOUT_SECONDS = 180
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
# What Prefect sets for its own temporary server: the API only, no UI.
_EPHEMERAL_ENV = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


@contextmanager
def local_server(
    port: int, log_path: Path, timeout_seconds: float = STARTUP_TIMEOUT_SECONDS
) -> Iterator[str]:
    """Run `prefect server start` on 127.0.0.1:`port` while the block runs; yields its API URL."""
    api_url = f"http://127.0.0.1:{port}/api"
    if not _port_is_free(port):
        raise ConfigError(
            f"port {port} is already in use. If a Prefect server runs there, point pql at it with "
            f"`export PREFECT_API_URL={api_url}`; otherwise pick another port with --port."
        )
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_until_healthy(server, api_url, str(log_path), timeout_seconds)
        yield api_url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


class ServerDidNotStart(ConfigError):
    """A local Prefect server stopped or did not answer in time; its process is stopped."""


def _wait_until_healthy(server: subprocess.Popen[bytes], api_url: str, see: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            code = server.returncode
            raise ServerDidNotStart(f"the local Prefect server stopped (exit code {code}); see {see}.")
        try:
            if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise ServerDidNotStart(f"the local Prefect server did not answer within {timeout:.0f} s; see {see}.")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _dies_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` that has the kernel send SIGTERM to the child when this process ends, however it
    ends (Linux `prctl(PR_SET_PDEATHSIG)`, kept across exec); None where there is no such call."""
    if not sys.platform.startswith("linux"):
        return None
    # Resolved before the fork: the child only makes the two system calls.
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the death signal was armed
            os._exit(1)

    return preexec


def _drain_prefect_workers() -> None:
    """Send the logs and events Prefect still has queued, as its test harness does before it stops its
    server: sent at exit instead, they would find the server gone and report connection errors."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=5)
    EventsWorker.drain_all(timeout=5)


def ephemeral_server_command(port: int) -> list[str]:
    """The command of Prefect's temporary API server (uvicorn on Prefect's app factory) on `port`."""
    import prefect

    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--app-dir",
        str(prefect.__module_path__.parent),
        "--factory",
        "prefect.server.api.server:create_app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "error",
        "--lifespan",
        "on",
    ]


@contextmanager
def ephemeral_server(timeout_seconds: float = STARTUP_TIMEOUT_SECONDS) -> Iterator[str]:
    """Prefect's temporary API server for the length of the block, tied to this process; yields its
    API URL.

    The server gets a session (and process group) of its own, so a Ctrl+C in the terminal reaches only
    this process, which stops the server on its way out; and the kernel stops it if this process dies
    without a chance to (SIGKILL). Start it before any other thread does, as `preexec_fn` requires.
    """
    from prefect.settings import get_current_settings

    port = _free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        **_EPHEMERAL_ENV,
        **get_current_settings().to_environment_variables(exclude_unset=True),
    }
    server = subprocess.Popen(
        ephemeral_server_command(port),
        env=env,
        start_new_session=True,
        preexec_fn=_dies_with_parent(),  # safe: no other thread runs yet (see the docstring)
    )
    try:
        _wait_until_healthy(server, api_url, "its output above", timeout_seconds)
        yield api_url
    finally:
        _drain_prefect_workers()
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()

"""A local Prefect server for `pql serve` when no Prefect API is configured.

Served deployments need a server that runs Prefect's scheduler: the temporary server Prefect starts on
its own when no API URL is set does not schedule anything. This starts `prefect server start` (with
its UI) for the life of `pql serve`.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from pql.config import ConfigError

STARTUP_TIMEOUT_SECONDS = 180


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
        _wait_until_healthy(server, api_url, log_path, timeout_seconds)
        yield api_url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


def _wait_until_healthy(
    server: subprocess.Popen[bytes], api_url: str, log_path: Path, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            code = server.returncode
            raise ConfigError(f"the local Prefect server stopped (exit code {code}); see {log_path}.")
        try:
            if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise ConfigError(f"the local Prefect server did not answer within {timeout:.0f} s; see {log_path}.")

"""Start processes that wait for a go, then release them together: neither gets a head start."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path


def released_together(
    commands: Sequence[Sequence[str]], env: dict[str, str], cwd: Path, timeout: float
) -> list[subprocess.CompletedProcess[str]]:
    """Run `commands`, each of which prints "ready" then waits for one line on stdin; send that line
    to all of them at once; their results, in order."""
    children = [
        subprocess.Popen(
            list(command),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=cwd,
        )
        for command in commands
    ]
    for child in children:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    results = []
    for child in children:
        stdout, stderr = child.communicate(timeout=timeout)
        results.append(subprocess.CompletedProcess(child.args, child.returncode, stdout, stderr))
    return results

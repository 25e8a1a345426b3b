"""How a long loop says how far it got, without knowing who listens (the CLI draws a bar from it).

A function with a long loop takes an optional `progress: Progress | None` and calls it as it goes with
the units done so far and the total: None while the total is unknown (the rows of a CSV file being
read). `step` names the work under way when the units are unlike each other (training's steps).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


# Runtime-checkable so that a Prefect flow can take one as a parameter (its validation needs isinstance).
@runtime_checkable
class Progress(Protocol):
    """Told that `done` of `total` units are finished; `done` grows and ends at `total`. A loop that
    starts over (a load read a second time) starts again from 0."""

    def __call__(self, done: int, total: int | None, step: str = "") -> None: ...


def report(progress: Progress | None, done: int, total: int | None, step: str = "") -> None:
    """Call `progress` when there is one, so the loops need no `if progress is not None`."""
    if progress is not None:
        progress(done, total, step)

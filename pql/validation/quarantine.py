"""Rows set aside by a `quarantine` check: the split of a frame, and the write into the quarantine table.

Kept and quarantined rows always add up to the input: a row is quarantined with every reason that
applies to it, never dropped without one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import sqlalchemy as sa

from pql.bulk import bulk_insert
from pql.schema import OutputTables
from pql.validation.jsonable import plain

if TYPE_CHECKING:
    from pql.validation.results import StageResult


def split_rows(
    frame: pd.DataFrame, reasons: Mapping[int, Sequence[str]]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(kept, quarantined) by row position; quarantined rows gain `row_number` and `reason`."""
    positions = sorted(reasons)
    bad = np.zeros(len(frame), dtype=bool)
    bad[positions] = True
    kept = frame[~bad] if positions else frame
    quarantined = frame.iloc[positions].assign(
        row_number=positions, reason=["; ".join(reasons[p]) for p in positions]
    )
    return kept, quarantined


def quarantine_frame(results: Sequence[StageResult], *, batch_id: str, at: datetime) -> pd.DataFrame:
    """The rows for the quarantine table: one per quarantined row, the row itself as JSON."""
    frames = []
    for result in results:
        rows = result.quarantined
        if rows is None or rows.empty:
            continue
        values = rows.drop(columns=["row_number", "reason"])
        frames.append(
            pd.DataFrame(
                {
                    "batch_id": batch_id,
                    "source_table": result.stage,
                    "row_number": rows["row_number"].to_numpy(dtype="int64"),
                    "reason": rows["reason"].to_numpy(),
                    "row_json": [json.dumps(plain(row)) for row in values.to_dict("records")],
                    "quarantined_at": at,
                }
            )
        )
    columns = ["batch_id", "source_table", "row_number", "reason", "row_json", "quarantined_at"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def write_quarantine(
    conn: sa.Connection, tables: OutputTables, results: Sequence[StageResult], *, batch_id: str, at: datetime
) -> int:
    """Append the quarantined rows of `results` to the quarantine table, in the caller's transaction."""
    return bulk_insert(conn, tables.quarantine, quarantine_frame(results, batch_id=batch_id, at=at))

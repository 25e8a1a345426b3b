"""The control group: a deterministic, salted-hash hold-out of new PQLs.

An account's assignment depends only on its id and the salt, so it is the same in every run, process
and partition, needs no stored state, and changes for everyone at once if the salt changes.
"""

from __future__ import annotations

import hashlib

import pandas as pd

_SCALE = float(2**64)


def control_draw(account_id: str, salt: str) -> float:
    """A uniform number in [0, 1) fixed by `salt` and `account_id`: the first 8 bytes of their sha256."""
    digest = hashlib.sha256(f"{salt}:{account_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def is_control(account_ids: pd.Series, share: float, salt: str) -> pd.Series:
    """True for the accounts held out from sales: those whose salted-hash draw falls below `share`.

    Same index as `account_ids`. `share` 0 switches the control group off (every value False).
    """
    if not 0 <= share < 1:
        raise ValueError(f"control share must be in [0, 1), got {share!r}")
    if share == 0 or account_ids.empty:
        return pd.Series(False, index=account_ids.index, dtype=bool)
    if account_ids.isna().any():
        raise ValueError(f"{int(account_ids.isna().sum())} account ids are missing; every PQL needs one")
    draws = [control_draw(str(account_id), salt) for account_id in account_ids]
    return pd.Series(draws, index=account_ids.index, dtype=float) < share

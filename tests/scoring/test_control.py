"""Control assignment: a deterministic salted hash, stable everywhere, close to the configured share."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from pql.scoring.control import is_control

IDS = pd.Series([f"acct_{i:05d}" for i in range(20_000)])


def test_the_share_held_out_is_within_one_and_a_half_points_of_the_setting() -> None:
    for share in (0.05, 0.10, 0.25):
        assert abs(is_control(IDS, share, "pql-control").mean() - share) < 0.015


def test_assignment_is_identical_across_calls() -> None:
    assert is_control(IDS, 0.1, "salt").equals(is_control(IDS, 0.1, "salt"))


def test_assignment_is_identical_in_another_process() -> None:
    script = (
        "import json, sys, pandas as pd; from pql.scoring.control import is_control; "
        "ids = pd.Series(json.load(sys.stdin)); "
        "print(json.dumps(is_control(ids, 0.1, 'salt').tolist()))"
    )
    sample = IDS.head(2_000)
    other = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(sample.tolist()),
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345"},
    )
    assert json.loads(other.stdout) == is_control(sample, 0.1, "salt").tolist()


def test_an_account_keeps_its_assignment_whatever_else_is_in_the_batch() -> None:
    alone = is_control(IDS.iloc[[7, 11]], 0.3, "salt")
    together = is_control(IDS, 0.3, "salt").iloc[[7, 11]]
    assert alone.equals(together)


def test_a_larger_share_only_adds_accounts_to_the_control_group() -> None:
    small, large = is_control(IDS, 0.05, "salt"), is_control(IDS, 0.10, "salt")
    assert not (small & ~large).any()


def test_another_salt_draws_another_group() -> None:
    first, second = is_control(IDS, 0.1, "salt-a"), is_control(IDS, 0.1, "salt-b")
    overlap = (first & second).sum() / first.sum()
    assert overlap < 0.2


def test_share_zero_holds_nobody_out_and_keeps_the_index() -> None:
    ids = pd.Series(["a", "b"], index=[10, 20])
    result = is_control(ids, 0.0, "salt")
    assert result.tolist() == [False, False]
    assert result.index.tolist() == [10, 20]


def test_a_share_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        is_control(IDS, 1.0, "salt")


def test_a_missing_account_id_is_refused() -> None:
    with pytest.raises(ValueError, match="1 account ids are missing"):
        is_control(pd.Series(["a", None]), 0.1, "salt")

"""A database error that ends a run is reported as what happened: retried only when it was transient."""

from __future__ import annotations

import duckdb
import pytest

from pql.db import DataError
from pql.flows.runner import run_flow


def _raise(error: Exception) -> None:
    raise error


@pytest.mark.usefixtures("prefect_api")
def test_a_database_error_that_is_never_retried_does_not_claim_retries() -> None:
    with pytest.raises(DataError) as raised:
        run_flow(lambda: _raise(duckdb.ConversionException("Could not convert string 'x' to INT32")))

    assert "not retried" in str(raised.value) and "after its retries" not in str(raised.value)


@pytest.mark.usefixtures("prefect_api")
def test_a_transient_database_error_is_reported_after_its_retries() -> None:
    with pytest.raises(DataError, match="after its retries"):
        run_flow(lambda: _raise(duckdb.IOException("Could not set lock on file: conflicting lock")))

"""Dask is the optional `dask` extra: the flows import and a sequential run works without it, and a run
that fans out says in one line how to install it."""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING

import pytest
from typer.testing import CliRunner

from pql.cli import app
from pql.flows.nightly import nightly
from pql.flows.partitions import DaskNotInstalled

if TYPE_CHECKING:
    from conftest import World

DASK_MODULES = ("dask", "distributed", "prefect_dask")

# A Python started with this finder first behaves as if the `dask` extra were not installed.
WITHOUT_DASK = f"""
import sys

class WithoutDask:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {DASK_MODULES!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)

sys.meta_path.insert(0, WithoutDask())
"""


@pytest.fixture
def without_dask(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dask cannot be imported in this test (None in sys.modules makes an import fail)."""
    for name in DASK_MODULES:
        monkeypatch.setitem(sys.modules, name, None)


def test_the_flows_and_the_cli_import_without_dask() -> None:
    script = WITHOUT_DASK + (
        "import pql.cli, pql.flows.nightly, pql.flows.retrain, pql.flows.backfill, pql.flows.deployments\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {DASK_MODULES!r}))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api", "without_dask")
def test_a_nightly_with_one_partition_runs_without_dask(world: World) -> None:
    world.configure(partitions=1)
    summary = nightly(as_of=world.end, config=world.config)
    assert summary.accounts_scored > 300
    assert world.table("runs")["status"].tolist() == ["succeeded"]


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api", "without_dask")
def test_a_run_on_a_dask_cluster_without_dask_names_the_extra_to_install(world: World) -> None:
    world.configure(partitions=3, dask_address="tcp://127.0.0.1:8786")
    with pytest.raises(DaskNotInstalled) as raised:
        nightly(as_of=world.end, config=world.config)
    message = str(raised.value)
    assert "\n" not in message
    assert "flows.dask_address (tcp://127.0.0.1:8786)" in message
    assert "pip install 'pql-pipeline[dask]'" in message


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api", "without_dask")
def test_pql_score_fanned_out_without_dask_exits_2_with_the_install_line(world: World) -> None:
    world.configure(partitions=2)
    result = CliRunner().invoke(app, ["--config", world.config, "score", "--as-of", f"{world.end:%Y-%m-%d}"])
    assert result.exit_code == 2, result.output
    assert "configuration error" in result.output
    assert (
        "flows.partitions = 2 fans scoring out on a local Dask cluster, but Dask is not installed "
        "(prefect_dask is missing): pip install 'pql-pipeline[dask]', or set flows.partitions = 1."
    ) in result.output

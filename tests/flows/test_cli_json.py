"""`pql score --json` on a small world: one JSON document on stdout with the run's facts, the same as the
text summary shows; and the backfill flow's progress callback, told each date."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from typer.testing import CliRunner, Result

from pql.cli import app
from pql.flows.backfill import backfill

if TYPE_CHECKING:
    from conftest import World


def pql(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def count_in(output: str, label: str) -> int:
    return int(re.search(rf"^{label}\s+([\d,]+)\s*$", output, re.MULTILINE).group(1).replace(",", ""))


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_a_dry_run_as_json_carries_the_counts_and_changes_the_text_shows(world: World) -> None:
    day = ("--as-of", f"{world.end:%Y-%m-%d}", "--dry-run")
    text = pql("--config", world.config, "score", *day)
    document = pql("--config", world.config, "score", *day, "--json")
    assert text.exit_code == 0 and document.exit_code == 0, text.output + document.output
    found = json.loads(document.stdout)
    assert found["dry_run"] is True and found["as_of"] == world.end.isoformat()
    assert found["accounts_scored"] == count_in(text.stdout, "accounts scored")
    assert found["pqls"] == count_in(text.stdout, "PQLs")
    assert found["new_pqls"] == count_in(text.stdout, "new PQLs")
    for tier, count in found["tiers"].items():
        assert count == count_in(text.stdout, f"tier {tier}")
    assert found["ineligible"] == count_in(text.stdout, r"not tiered \(ineligible\)")
    new = [change for change in found["changes"] if change["change"] == "new_pql"]
    assert len(new) == found["new_pqls"] and f"New PQLs: {len(new)}" in text.stdout
    shown = re.findall(r"^│ (\S+)\s+│\s+([\d.]+) │", text.stdout, re.MULTILINE)
    assert shown and set(shown) <= {(row["account_id"], f"{row['score_after']:.1f}") for row in new}
    assert found["model"]["version"] in text.stdout


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_a_run_as_json_lists_the_best_pqls_it_wrote_and_its_run_id(world: World) -> None:
    result = pql("--config", world.config, "score", "--as-of", f"{world.end:%Y-%m-%d}", "--json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    scores = world.table("scores")
    best = scores[scores["is_pql"]].sort_values(["score", "probability"], ascending=False).head(10)
    assert [row["account_id"] for row in found["top_pqls"]] == best["account_id"].tolist()
    assert [row["score"] for row in found["top_pqls"]] == best["score"].tolist()
    assert all(row["reasons"] and isinstance(row["reasons"], list) for row in found["top_pqls"])
    assert found["accounts_scored"] == len(scores) and found["changes"] is None
    assert world.table("runs")["run_id"].tolist() == [found["run_id"]]


def test_a_configuration_error_keeps_exit_code_2_with_the_message_on_stderr_only(tmp_path: Path) -> None:
    config = tmp_path / "pql.toml"
    config.write_text("horizon_days = 0\n", encoding="utf-8")
    result = pql("--config", str(config), "score", "--json")
    assert result.exit_code == 2
    assert result.stdout == "" and "horizon_days" in result.stderr


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_the_backfill_tells_its_progress_each_date_then_the_end(world: World) -> None:
    calls: list[tuple[int, int | None, str]] = []
    first, last = world.end - timedelta(days=2), world.end - timedelta(days=1)
    backfill(
        start=first.date(),
        end=last.date(),
        config=world.config,
        progress=lambda done, total, step="": calls.append((done, total, step)),
    )
    assert calls == [
        (0, 2, f"as of {first:%Y-%m-%d %H:%M} UTC"),
        (1, 2, f"as of {last:%Y-%m-%d %H:%M} UTC"),
        (2, 2, ""),
    ]

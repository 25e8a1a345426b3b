"""Talking points through a real nightly run: stored with the reasons of each PQL, in the list and its
history, shown by `pql pqls`, and configurable in pql.toml."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from rich.console import Console
from typer.testing import CliRunner

from pql.cli import app
from pql.commands import pqls
from pql.config import ConfigError
from pql.flows.nightly import nightly
from pql.flows.summary import RunSummary
from pql.scoring.talking_points import DEFAULT_TALKING_POINTS

if TYPE_CHECKING:
    from conftest import World


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_a_run_stores_a_talking_point_for_each_pql_and_none_for_the_others(
    scored: tuple[World, RunSummary],
) -> None:
    world, _ = scored
    for key in ("scores", "history"):
        rows = world.table(key)
        pqls = rows["is_pql"].astype(bool)
        assert rows.loc[~pqls, "talking_point"].isna().all()
        said = rows.loc[pqls, "talking_point"]
        assert said.notna().all() and said.str.len().gt(20).all()


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_pql_pqls_shows_each_pqls_talking_point_under_its_reasons(
    scored: tuple[World, RunSummary], monkeypatch: pytest.MonkeyPatch
) -> None:
    world, _ = scored
    monkeypatch.setattr(pqls, "console", Console(width=400))  # one line per reason and talking point
    best = world.table("scores").query("is_pql").sort_values("score", ascending=False).iloc[0]
    result = CliRunner().invoke(app, ["--config", world.config, "pqls", "--top", "1"])
    assert result.exit_code == 0, result.output
    first_reason = best["reasons_text"].splitlines()[0]
    assert first_reason in result.output
    assert f"say: {best['talking_point']}" in result.output
    assert result.output.index(first_reason) < result.output.index("say: ")


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_talking_points_configured_in_pql_toml_replace_the_defaults(world: World) -> None:
    tracks = {group: f"({group}) call them: {{reason}}" for group in DEFAULT_TALKING_POINTS}
    with Path(world.config).open("a", encoding="utf-8") as file:
        file.write("[scoring.talking_points]\n")
        file.writelines(f"{group} = {json.dumps(track)}\n" for group, track in tracks.items())

    summary = nightly(as_of=world.end, config=world.config)

    listed = world.table("scores").query("is_pql")
    assert len(listed) == summary.pqls > 0
    for point, entries, lines in zip(
        listed["talking_point"], listed["reasons_json"], listed["reasons_text"], strict=True
    ):
        raising = {
            reason["group"]: line[2:]
            for reason, line in zip(json.loads(entries), lines.splitlines(), strict=True)
            if reason["direction"] == "up"
        }
        assert point in {f"({group}) call them: {phrase}" for group, phrase in raising.items()}


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_a_talking_point_for_a_group_the_run_does_not_have_fails_the_run_before_the_write(
    world: World,
) -> None:
    with Path(world.config).open("a", encoding="utf-8") as file:
        file.write('[scoring.talking_points]\nusage_limit = "offer the Team plan"\n')

    state = nightly(as_of=world.end, config=world.config, return_state=True)

    assert state.is_failed()
    with pytest.raises(ConfigError, match="'usage_limit' is no reason group"):
        state.result()
    assert world.table("scores").empty

"""`pql report` and `pql sla`: the HTML report, its images in a real browser, and the SLA printout."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import pandas as pd
import pytest
import typer
from headless_chromium import decoded_images
from typer.testing import CliRunner

from pql.commands import report as report_command
from pql.config import Settings
from pql.db import databases
from pql.outcomes.evaluation import evaluate
from pql.outcomes.report import html_table, render_report

from .conftest import MONDAY, World, shared_world
from .sla_world import NOW, build_sla_world

UNTIL = MONDAY + timedelta(weeks=8, days=10)


@pytest.fixture(scope="module")
def world_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    with shared_world(tmp_path_factory, accounts=400, weeks=8, seed=2) as (settings, _):
        yield settings


@pytest.fixture(scope="module")
def report_html(world_settings: Settings) -> str:
    with databases(world_settings) as dbs:
        evaluation = evaluate(dbs, world_settings, since=MONDAY, until=UNTIL)
    return render_report(evaluation, world_settings)


def _images(page: str) -> list[str]:
    return re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([^"]+)">', page)


def test_the_report_embeds_every_plot_as_a_png(report_html: str) -> None:
    images = _images(report_html)
    assert len(images) == 6
    assert all(base64.b64decode(image).startswith(b"\x89PNG\r\n\x1a\n") for image in images)


def test_the_report_is_self_contained(report_html: str) -> None:
    assert not re.search(r'(src|href)="(?!data:)', report_html)
    assert "<link" not in report_html


def test_the_report_has_every_section(report_html: str) -> None:
    for heading in (
        "Weekly PQL volume",
        "Conversion by tier over time",
        "Lift of PQLs over non-PQLs",
        "Calibration",
        "Attributable lift (control group)",
        "Follow-up SLA",
        "Monitoring",
    ):
        assert f"<h2>{heading}</h2>" in report_html


def test_a_report_on_an_empty_history_says_so_without_plots(world: World) -> None:
    settings = world.settings.model_copy(update={"source_url": world.url})
    with databases(settings) as dbs:
        page = render_report(evaluate(dbs, settings, since=MONDAY, until=UNTIL), settings)
    assert _images(page) == []
    assert "No PQL in this period." in page
    assert "the control group is off" in page.lower()


def _cli() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main(config: Annotated[Path | None, typer.Option("--config")] = None) -> None:
        """pql"""

    report_command.register(app)
    return app


@pytest.fixture
def configured(world_settings: Settings, tmp_path: Path) -> Settings:
    (tmp_path / "pql.toml").write_text(
        f'source_url = "{world_settings.source_url}"\nstate_dir = "{world_settings.state_dir.as_posix()}"\n'
    )
    return world_settings


def test_pql_report_writes_the_html_file(configured: Settings, tmp_path: Path) -> None:
    out = tmp_path / "out" / "report.html"
    result = CliRunner().invoke(
        _cli(), ["report", "--since", "2025-01-01", "--until", f"{UNTIL:%Y-%m-%d}", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert str(out) in result.output.replace("\n", "")
    assert len(_images(out.read_text())) == 6


def test_pql_report_refuses_a_bad_date_with_exit_2(configured: Settings) -> None:
    result = CliRunner().invoke(_cli(), ["report", "--since", "last tuesday"])
    assert result.exit_code == 2
    assert "--since" in result.output


def test_pql_sla_prints_compliance_per_owner_and_the_overdue_list(configured: Settings) -> None:
    as_of = f"{MONDAY + timedelta(weeks=7, days=3):%Y-%m-%dT%H:%M}"
    result = CliRunner().invoke(_cli(), ["sla", "--as-of", as_of, "--since", "2025-01-01"])
    assert result.exit_code == 0, result.output
    for owner in ("ana", "bo", "cy", "pql-queue", "all owners"):
        assert owner in result.output
    assert "Overdue PQLs, still PQLs now" in result.output


def test_pql_sla_says_the_follow_up_comes_from_last_touch_at_without_activities(
    configured: Settings,
) -> None:
    as_of = f"{MONDAY + timedelta(weeks=7, days=3):%Y-%m-%dT%H:%M}"
    result = CliRunner().invoke(_cli(), ["sla", "--as-of", as_of, "--since", "2025-01-01"])
    assert result.exit_code == 0, result.output
    assert "follow-up from crm_accounts.last_touch_at (no activities table)" in result.output
    assert "per playbook" in result.output


@pytest.fixture
def activities_world(any_db_url: str, settings: Settings, tmp_path: Path) -> Iterator[World]:
    """The SLA world with its activities, on each engine, as the configured source."""
    world = World(any_db_url, settings)
    build_sla_world(world, with_activities=True)
    (tmp_path / "pql.toml").write_text(
        f'source_url = "{any_db_url}"\nstate_dir = "{settings.state_dir.as_posix()}"\n'
    )
    yield world
    world.engine.dispose()


def test_pql_sla_says_the_follow_up_comes_from_crm_activities(activities_world: World) -> None:
    as_of = f"{NOW:%Y-%m-%dT%H:%M}"
    result = CliRunner().invoke(_cli(), ["sla", "--as-of", as_of, "--since", f"{MONDAY:%Y-%m-%d}"])
    assert result.exit_code == 0, result.output
    assert "follow-up from crm_activities;" in result.output
    assert "last_touch_at" not in result.output
    for heading in ("per owner", "per playbook", "freemium_upgrade", "all playbooks", "Overdue PQLs"):
        assert heading in result.output
    assert re.search(r"ana\s.*\s33%", result.output)
    assert re.search(r"trial_to_paid\s.*\s100%", result.output)


def test_the_report_names_the_source_of_the_follow_up(report_html: str, activities_world: World) -> None:
    assert "Follow-up from crm_accounts.last_touch_at (no activities table)." in report_html
    settings = activities_world.settings.model_copy(update={"source_url": activities_world.url})
    with databases(settings) as dbs:
        page = render_report(evaluate(dbs, settings, since=MONDAY, until=NOW), settings)
    assert "Follow-up from crm_activities." in page
    assert "<h3>By playbook</h3>" in page
    assert "all playbooks" in page


def test_pql_sla_overdue_prints_only_the_list(configured: Settings) -> None:
    as_of = f"{MONDAY + timedelta(weeks=7, days=3):%Y-%m-%dT%H:%M}"
    result = CliRunner().invoke(_cli(), ["sla", "--overdue", "--as-of", as_of, "--since", "2025-01-01"])
    assert result.exit_code == 0, result.output
    assert "per owner" not in result.output
    assert re.search(r"Overdue PQLs, still PQLs now \((\d+)\)", result.output)


@pytest.mark.browser
def test_every_image_loads_in_headless_chromium(report_html: str, tmp_path: Path) -> None:
    images, _ = decoded_images(report_html, tmp_path)
    assert len(images) == 6
    assert all(image["complete"] and image["width"] > 0 for image in images), images


def test_values_from_the_crm_are_escaped_in_tables() -> None:
    page = html_table(pd.DataFrame({"owner": ["<script>alert(1)</script>"], "compliance": [0.5]}))
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page

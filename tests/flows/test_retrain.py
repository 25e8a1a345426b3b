"""The retrain flow: trains, registers, promotes when better, and reports as a Prefect artifact."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from pql.flows.retrain import retrain
from pql.models.registry import champion_version
from pql.models.training import TooLittleDataError

if TYPE_CHECKING:
    from conftest import World

pytestmark = [pytest.mark.usefixtures("prefect_api"), pytest.mark.slow]


def test_a_retrain_registers_a_model_and_reports_the_promotion_decision(
    world: World, report_of: Callable[[str, str], str]
) -> None:
    world.configure(model={"min_conversions": 10, "bootstrap_rounds": 10})
    state = retrain(config=world.config, return_state=True)
    outcome = state.result()
    assert (outcome.path / "metadata.json").is_file()
    registry = world.settings.model_registry_path
    assert (champion_version(registry) == outcome.version) == outcome.promoted
    report = report_of("retrain", str(state.state_details.flow_run_id))
    assert f"`{outcome.version}`" in report and outcome.reason in report


def test_a_retrain_refused_for_too_little_data_fails_and_still_reports(
    world: World, report_of: Callable[[str, str], str]
) -> None:
    world.configure(model={"min_conversions": 100_000})
    state = retrain(config=world.config, return_state=True)
    assert state.is_failed()
    with pytest.raises(TooLittleDataError):
        state.result()
    assert "too_little_data" in report_of("retrain", str(state.state_details.flow_run_id))

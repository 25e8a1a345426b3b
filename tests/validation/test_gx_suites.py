"""The gates' suites are Great Expectations' own: GX JSON that GX loads, stores and edits, one suite per
batch, with pql's extra information in `meta`."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import great_expectations as gx
import pytest

from pql.validation import CHECKS
from pql.validation.gx_runner import _batch_suite, load_suite

EXPECTATIONS = Path(__file__).parents[2] / "pql/validation/expectations"
FILES = sorted(EXPECTATIONS.glob("pql/*/*.json"))


def _name(path: Path) -> str:
    return ".".join(path.relative_to(EXPECTATIONS).with_suffix("").parts)


def test_there_is_one_suite_file_per_batch_of_the_eight_stages() -> None:
    stages = {path.parent.name for path in FILES}
    assert stages == {"events", "plan_changes", "accounts", "sales", "crm", "features", "scores", "output"}
    assert {_name(path) for path in FILES} == {
        batch.suite_name for stage in stages for batch in load_suite(stage).batches.values()
    }


@pytest.mark.parametrize("path", FILES, ids=_name)
def test_a_suite_file_loads_with_gx_and_round_trips(path: Path) -> None:
    document = json.loads(path.read_text(encoding="utf-8"))
    suite = gx.ExpectationSuite(**copy.deepcopy(document))
    assert suite.name == _name(path)
    assert len(suite.expectations) == len(document["expectations"]) > 0
    assert suite.to_json_dict() == document


@pytest.mark.parametrize("path", FILES, ids=_name)
def test_each_expectation_names_its_check_in_meta(path: Path) -> None:
    suite = gx.ExpectationSuite(**json.loads(path.read_text(encoding="utf-8")))
    stage = path.parent.name
    assert suite.meta["pql"]["stage"] == stage and suite.meta["pql"]["batch"] == path.stem
    for expectation in suite.expectations:
        assert expectation.meta["check"] in CHECKS
        assert CHECKS[expectation.meta["check"]].stage == stage


def test_suite_parameters_are_gx_parameters() -> None:
    suite = load_suite("events").batches["counts"].gx_suite()
    (rate,) = [e for e in suite.expectations if e.meta["check"] == "events.duplicate_rate"]
    assert rate.configuration.kwargs["max_value"] == {"$PARAMETER": "max_duplicate_event_rate"}


def test_a_gx_file_context_opens_the_suites_from_its_expectations_store(tmp_path: Path) -> None:
    context = gx.get_context(mode="file", project_root_dir=str(tmp_path))
    shutil.copytree(EXPECTATIONS / "pql", Path(context.root_directory) / "expectations" / "pql")
    opened = context.suites.get("pql.features.rows")
    assert opened.to_json_dict() == json.loads((EXPECTATIONS / "pql/features/rows.json").read_text())


def test_a_suite_edited_and_saved_with_gx_is_read_by_the_gates(tmp_path: Path) -> None:
    context = gx.get_context(mode="file", project_root_dir=str(tmp_path))
    saved = Path(context.root_directory) / "expectations" / "pql" / "events" / "days.json"
    saved.parent.mkdir(parents=True)
    shutil.copyfile(EXPECTATIONS / "pql/events/days.json", saved)
    suite = context.suites.get("pql.events.days")
    (spike,) = [e for e in suite.expectations if e.meta["check"] == "events.volume_spike"]
    spike.max_value = 5
    spike.save()
    edited = _batch_suite(json.loads(saved.read_text(encoding="utf-8")), str(saved))
    (spec,) = [spec for spec in edited.expectations if spec.check == "events.volume_spike"]
    assert spec.kwargs["max_value"] == 5
    assert edited.show == ("day_start", "events", "baseline_daily_events")


def test_a_suite_holding_an_expectation_gx_does_not_know_is_refused() -> None:
    document = json.loads((EXPECTATIONS / "pql/accounts/stats.json").read_text(encoding="utf-8"))
    document["expectations"][0]["type"] = "expect_column_values_to_be_lovely"
    with pytest.raises(ValueError, match=r"stats\.json: expect_column_values_to_be_lovely"):
        _batch_suite(document, "stats.json")


def test_an_expectation_naming_no_check_is_refused() -> None:
    document = json.loads((EXPECTATIONS / "pql/accounts/stats.json").read_text(encoding="utf-8"))
    del document["expectations"][1]["meta"]["check"]
    with pytest.raises(ValueError, match=r"stats\.json: expect_column_values_to_be_between names no check"):
        _batch_suite(document, "stats.json")

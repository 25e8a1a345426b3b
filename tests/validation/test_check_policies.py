"""The check registry, the policies from the settings, and the suite files that use them."""

from __future__ import annotations

from pathlib import Path

import pytest

from pql.config import ConfigError, Settings, load_settings
from pql.validation import CHECKS, check_policies
from pql.validation.gx_runner import load_suite

STAGES = sorted(
    path.name for path in (Path(__file__).parents[2] / "pql/validation/expectations/pql").iterdir()
)


def test_every_check_has_a_default_policy_it_allows() -> None:
    for check in CHECKS.values():
        assert check.default in check.allowed, check.name


def test_defaults_apply_when_the_settings_name_no_policy(settings: Settings) -> None:
    policies = check_policies(settings)
    assert policies["events.duplicate_rate"] == "fail"
    assert policies["events.known_names"] == "warn"
    assert policies["output.pql_routed"] == "quarantine"
    assert set(policies) == set(CHECKS)


def test_a_policy_in_the_settings_overrides_the_default() -> None:
    settings = load_settings(None, validation={"policies": {"features.value_ranges": "fail"}})
    assert check_policies(settings)["features.value_ranges"] == "fail"


def test_an_unknown_check_name_is_a_config_error_listing_the_known_ones() -> None:
    settings = load_settings(None, validation={"policies": {"events.duplicates": "warn"}})
    with pytest.raises(ConfigError, match=r"unknown check 'events.duplicates'.*events.duplicate_rate"):
        check_policies(settings)


def test_quarantine_for_a_check_on_aggregates_is_a_config_error() -> None:
    settings = load_settings(None, validation={"policies": {"events.volume_spike": "quarantine"}})
    with pytest.raises(
        ConfigError, match=r"events.volume_spike: 'quarantine' is not possible.*'fail' or 'warn'"
    ):
        check_policies(settings)


def test_required_columns_can_only_fail() -> None:
    settings = load_settings(None, validation={"policies": {"features.required_columns": "warn"}})
    with pytest.raises(ConfigError, match="use 'fail'"):
        check_policies(settings)


def test_the_suites_use_exactly_the_registered_checks() -> None:
    used = {
        check for stage in STAGES for batch in load_suite(stage).batches.values() for check in batch.checks
    }
    assert used == set(CHECKS)


def test_each_check_belongs_to_the_suite_of_its_stage() -> None:
    for stage in STAGES:
        for batch in load_suite(stage).batches.values():
            assert {CHECKS[check].stage for check in batch.checks} == {stage}, batch.suite_name


def test_checks_that_can_quarantine_run_only_on_a_stages_own_rows() -> None:
    for stage in STAGES:
        for batch in load_suite(stage).batches.values():
            for check in batch.checks:
                if "quarantine" in CHECKS[check].allowed:
                    assert batch.rows, f"{check} in {batch.suite_name}"


@pytest.mark.parametrize("stage", STAGES)
def test_every_expectation_of_a_suite_file_is_a_valid_gx_expectation(stage: str) -> None:
    for batch in load_suite(stage).batches.values():
        suite = batch.gx_suite()
        assert len(suite.expectations) == len(batch.expectations) > 0


def test_every_numeric_feature_is_range_checked_or_explicitly_unbounded(settings) -> None:
    from pql.features.catalog import feature_specs
    from pql.validation.frames import feature_column_sets

    column_sets = feature_column_sets(feature_specs(settings), load_suite("features").extra["column_sets"])
    checked = {column for columns in column_sets.values() for column in columns}
    numeric = {spec.name for spec in feature_specs(settings) if spec.kind == "numeric"}
    assert numeric == checked

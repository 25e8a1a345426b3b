"""validate_features, validate_scores and validate_output: pass on good frames; fail, warn or
quarantine as configured on bad ones; kept + quarantined rows always equal the input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from gate_worlds import features_frame, output_rows, scores_frame

from pql.config import TIERS, Settings, load_settings
from pql.features.gate import validate_features
from pql.validation import frames, validate_output, validate_scores


def with_policy(check: str, policy: str) -> Settings:
    return load_settings(None, validation={"policies": {check: policy}})


def test_good_features_pass(settings: Settings) -> None:
    result = validate_features(features_frame(settings), settings)
    assert result.status == "passed", [c for c in result.checks if c.status != "passed"]
    assert len(result.kept) == 20
    assert result.quarantined.empty


def test_a_negative_count_is_quarantined_with_its_reason(settings: Settings) -> None:
    features = features_frame(settings)
    features.loc[3, "count_events_7d"] = -4
    result = validate_features(features, settings)
    check = result.check("features.value_ranges")
    assert (check.status, check.rows) == ("quarantined", 1)
    assert check.failures[0].examples == (
        "account_id=acc_3 as_of=2026-03-02T00:00:00 min_non_negative=-4 min_non_negative_in=count_events_7d",
    )
    assert result.quarantined["account_id"].tolist() == ["acc_3"]
    assert result.quarantined["row_number"].tolist() == [3]
    assert result.quarantined["reason"].iloc[0] == (
        "features.value_ranges: expect_column_values_to_be_between(min_non_negative) "
        "min_non_negative=-4 min_non_negative_in=count_events_7d"
    )
    assert "min_non_negative" not in result.kept.columns
    assert "acc_3" not in set(result.kept["account_id"])
    assert not result.failed


def test_a_share_above_one_is_quarantined(settings: Settings) -> None:
    features = features_frame(settings)
    features.loc[0, "share_users_active_28d"] = 1.5
    assert validate_features(features, settings).quarantined["account_id"].tolist() == ["acc_0"]


def test_a_row_failing_two_checks_is_quarantined_once_with_both_reasons(settings: Settings) -> None:
    features = features_frame(settings)
    features.loc[5, ["count_users", "days_tenure"]] = [-1, -2]
    features.loc[5, "plan"] = "platinum"
    result = validate_features(features, settings)
    assert len(result.quarantined) == 1
    reasons = result.quarantined["reason"].iloc[0].split("; ")
    assert [reason.split(":")[0] for reason in reasons] == ["features.plan_known", "features.value_ranges"]
    assert reasons[1].endswith("min_non_negative=-2 min_non_negative_in=days_tenure")


def test_each_column_of_a_range_set_is_checked(settings: Settings) -> None:
    for column in ("count_users", "days_since_last_event", "employees", "ratio_momentum_7d_vs_prior_21d"):
        features = features_frame(settings)
        features.loc[2, column] = -0.5
        assert validate_features(features, settings).quarantined["row_number"].tolist() == [2], column


@pytest.mark.parametrize("bad_rows", [[0], [1, 7, 19], list(range(20))])
def test_kept_and_quarantined_rows_add_up_to_the_input(settings: Settings, bad_rows: list[int]) -> None:
    features = features_frame(settings)
    features.loc[bad_rows, "count_events_28d"] = -1
    result = validate_features(features, settings)
    assert len(result.kept) + len(result.quarantined) == len(features)
    assert sorted([*result.kept["account_id"], *result.quarantined["account_id"]]) == sorted(
        features["account_id"]
    )
    assert result.quarantined["row_number"].tolist() == bad_rows


def test_value_ranges_set_to_warn_keep_every_row(settings: Settings) -> None:
    features = features_frame(settings)
    features.loc[3, "count_events_7d"] = -4
    result = validate_features(features, with_policy("features.value_ranges", "warn"))
    assert result.check("features.value_ranges").status == "warned"
    assert len(result.kept) == 20 and result.quarantined.empty


def test_value_ranges_set_to_fail_fail_the_stage(settings: Settings) -> None:
    features = features_frame(settings)
    features.loc[3, "count_events_7d"] = -4
    assert validate_features(features, with_policy("features.value_ranges", "fail")).failed


def test_a_duplicate_account_and_as_of_fails(settings: Settings) -> None:
    features = features_frame(settings)
    features = pd.concat([features, features.iloc[[2]]], ignore_index=True)
    check = validate_features(features, settings).check("features.unique_key")
    assert (check.status, check.rows) == ("failed", 2)


def test_a_missing_id_is_quarantined(settings: Settings) -> None:
    features = features_frame(settings)
    features.loc[4, "account_id"] = None
    result = validate_features(features, settings)
    assert result.check("features.ids_not_null").status == "quarantined"
    assert result.quarantined["row_number"].tolist() == [4]


def test_a_count_column_turned_null_warns_on_its_null_share(settings: Settings) -> None:
    features = features_frame(settings)
    features["count_users"] = np.nan
    check = validate_features(features, settings).check("features.null_rates")
    assert (check.status, check.rows) == ("warned", 1)
    assert check.failures[0].examples == ("column=count_users null_share=1 max_null_share=0",)


def test_a_feature_the_model_left_out_is_not_held_to_a_null_limit(settings: Settings) -> None:
    features = features_frame(settings)
    features[["employees", "industry", "country"]] = None
    used = [column for column in features.columns if column not in {"employees", "industry", "country"}]

    assert validate_features(features, settings).check("features.null_rates").status == "warned"
    assert validate_features(features, settings, used).check("features.null_rates").status == "passed"


def test_nulls_where_a_feature_is_undefined_are_fine(settings: Settings) -> None:
    features = features_frame(settings)
    features[["days_since_last_event", "days_in_trial", "ratio_momentum_7d_vs_prior_21d"]] = np.nan
    features.loc[:9, "industry"] = None
    assert validate_features(features, settings).check("features.null_rates").status == "passed"


def test_a_missing_model_column_fails_and_skips_the_row_checks(settings: Settings) -> None:
    result = validate_features(features_frame(settings).drop(columns=["count_events_7d"]), settings)
    assert result.check("features.required_columns").status == "failed"
    assert result.check("features.value_ranges").status == "skipped"
    assert result.kept is None


def test_good_scores_pass(settings: Settings) -> None:
    features = features_frame(settings, n=200)
    result = validate_scores(scores_frame(features, settings), features, settings)
    assert result.status == "passed", [c for c in result.checks if c.status != "passed"]


def test_a_score_out_of_range_fails(settings: Settings) -> None:
    features = features_frame(settings)
    scores = scores_frame(features, settings)
    scores.loc[2, "score"] = 104.0
    check = validate_scores(scores, features, settings).check("scores.range")
    assert (check.status, check.rows) == ("failed", 1)
    assert check.failures[0].examples == ("account_id=acc_2 score=104",)


def test_an_eligible_account_without_a_score_fails(settings: Settings) -> None:
    features = features_frame(settings)
    scores = scores_frame(features, settings).iloc[1:]
    check = validate_scores(scores, features, settings).check("scores.one_per_eligible_account")
    assert (check.status, check.rows) == ("failed", 1)
    assert (
        check.failures[0]
        .examples[0]
        .startswith("account_id=acc_0 is_eligible=True has_features=True score_rows=0")
    )


def test_an_account_scored_twice_fails(settings: Settings) -> None:
    features = features_frame(settings)
    scores = scores_frame(features, settings)
    scores = pd.concat([scores, scores.iloc[[5]]], ignore_index=True)
    assert (
        validate_scores(scores, features, settings).check("scores.one_per_eligible_account").status
        == "failed"
    )


def test_a_score_for_an_account_without_features_fails(settings: Settings) -> None:
    features = features_frame(settings)
    scores = scores_frame(features, settings)
    scores.loc[len(scores)] = ["acc_stranger", 0.5, 60.0, "low"]
    check = validate_scores(scores, features, settings).check("scores.one_per_eligible_account")
    assert "account_id=acc_stranger" in check.failures[0].examples[0]


def test_ineligible_accounts_need_no_score(settings: Settings) -> None:
    features = features_frame(settings)
    features.loc[:4, "is_eligible"] = False
    scores = scores_frame(features, settings)
    scores = scores[scores["account_id"].isin(features.loc[features["is_eligible"], "account_id"])]
    assert (
        validate_scores(scores, features, settings).check("scores.one_per_eligible_account").status
        == "passed"
    )


def _with_paid(features: pd.DataFrame, rows: slice) -> pd.DataFrame:
    """`features` with the given rows on a paid plan, so ineligible."""
    features.loc[rows, ["plan", "is_eligible"]] = ["paid", False]
    return features


def test_ineligible_accounts_scored_without_a_tier_pass(settings: Settings) -> None:
    features = _with_paid(features_frame(settings, n=200), slice(0, 99))
    scores = scores_frame(features, settings)
    assert scores["tier"].isna().sum() == 100
    result = validate_scores(scores, features, settings)
    assert result.status == "passed", [c for c in result.checks if c.status != "passed"]


def test_an_eligible_account_without_a_tier_fails(settings: Settings) -> None:
    features = _with_paid(features_frame(settings), slice(0, 4))
    scores = scores_frame(features, settings)
    scores.loc[7, "tier"] = None
    check = validate_scores(scores, features, settings).check("scores.tier_eligibility")
    assert (check.status, check.rows) == ("failed", 1)
    assert check.failures[0].examples == ("account_id=acc_7 is_eligible=True tier=null",)


def test_an_ineligible_account_with_a_tier_fails(settings: Settings) -> None:
    features = _with_paid(features_frame(settings), slice(0, 4))
    scores = scores_frame(features, settings)
    scores.loc[2, "tier"] = "high"
    check = validate_scores(scores, features, settings).check("scores.tier_eligibility")
    assert (check.status, check.rows) == ("failed", 1)
    assert check.failures[0].examples == ("account_id=acc_2 is_eligible=False tier=high",)


def test_tier_shares_count_eligible_accounts_only(settings: Settings) -> None:
    features = _with_paid(features_frame(settings, n=200), slice(0, 99))
    cutoffs = settings.scoring.tier_quantiles
    shares = frames.tier_shares(
        scores_frame(features, settings), features, TIERS, cutoffs, relative=0.25, accounts=2
    )
    assert shares["observed_share"].tolist() == pytest.approx([0.01, 0.10, 0.30])


def test_an_unknown_tier_fails(settings: Settings) -> None:
    features = features_frame(settings)
    scores = scores_frame(features, settings)
    scores.loc[0, "tier"] = "hot"
    assert validate_scores(scores, features, settings).check("scores.tier_known").status == "failed"


def test_tier_shares_far_from_the_cut_offs_warn(settings: Settings) -> None:
    features = features_frame(settings, n=200)
    scores = scores_frame(features, settings)
    scores.loc[:59, "tier"] = "very_high"  # 30% where 1% is the cut-off
    check = validate_scores(scores, features, settings).check("scores.tier_distribution")
    assert check.status == "warned"
    assert check.failures[0].examples[0].startswith("tier=very_high observed_share=0.3 expected_share=0.01")


def test_tier_shares_of_a_tiny_population_are_within_tolerance(settings: Settings) -> None:
    features = features_frame(settings, n=7)
    result = validate_scores(scores_frame(features, settings), features, settings)
    assert result.check("scores.tier_distribution").status == "passed"


def test_under_the_threshold_policy_a_tier_below_its_probability_warns(settings: Settings) -> None:
    threshold = load_settings(None, scoring={"tier_policy": "threshold"})
    features = features_frame(threshold)
    scores = scores_frame(features, threshold)
    assert validate_scores(scores, features, threshold).status == "passed"
    scores.loc[scores["probability"] < 0.1, "tier"] = "high"
    check = validate_scores(scores, features, threshold).check("scores.tier_distribution")
    assert check.status == "warned"
    assert check.failures[0].examples[0].startswith("tier=high lower=0.25 upper=0.5 misplaced=")


def test_good_output_rows_pass(settings: Settings) -> None:
    result = validate_output(output_rows(), settings)
    assert result.status == "passed", [c for c in result.checks if c.status != "passed"]


@pytest.mark.parametrize(
    ("column", "value", "check"),
    [
        ("routed_to", None, "output.pql_routed"),
        ("routed_to", "  ", "output.pql_routed"),
        ("reasons_json", "[]", "output.pql_reasons"),
        ("reasons_json", None, "output.pql_reasons"),
        ("playbook", None, "output.pql_playbook"),
    ],
)
def test_a_pql_that_sales_cannot_work_is_quarantined(
    settings: Settings, column: str, value, check: str
) -> None:
    rows = output_rows()
    rows.loc[1, column] = value
    result = validate_output(rows, settings)
    assert result.check(check).status == "quarantined"
    assert result.quarantined["account_id"].tolist() == ["acc_1"]
    assert result.quarantined["reason"].iloc[0].startswith(check)
    assert len(result.kept) == len(rows) - 1


def test_a_non_pql_needs_no_route_reasons_or_playbook(settings: Settings) -> None:
    rows = output_rows()
    assert rows.loc[5, ["routed_to", "playbook"]].isna().all() and rows.loc[5, "reasons_json"] == "[]"
    assert validate_output(rows, settings).status == "passed"


def test_duplicate_output_accounts_fail(settings: Settings) -> None:
    rows = output_rows()
    rows.loc[2, "account_id"] = "acc_0"
    check = validate_output(rows, settings).check("output.unique_accounts")
    assert (check.status, check.rows) == ("failed", 2)


def test_output_without_a_playbook_column_fails(settings: Settings) -> None:
    result = validate_output(output_rows().drop(columns=["playbook"]), settings)
    assert result.check("output.required_columns").status == "failed"
    assert result.failed

"""Training runs: evidence against baselines, and the refusal (with a points fallback) on too little data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from model_frames import WINDOW_END, Trained, fast_settings, training_frame

from pql.config import Settings, load_settings
from pql.db import DataError
from pql.models.registry import (
    MODEL_FILE,
    TOO_LITTLE_DATA,
    champion_version,
    load_scoring_model,
    read_metadata,
)
from pql.models.report import verdict_sentences
from pql.models.training import TooLittleDataError, data_fingerprint, train_on_frame, verdict


def test_every_baseline_is_judged_on_the_same_holdout_with_a_verdict(trained: Trained) -> None:
    metrics = read_metadata(trained.root, trained.outcome.version)["metrics"]
    assert set(metrics["comparison"]) == {"points", "logreg", "most_active"}
    for row in metrics["comparison"].values():
        low, high = row["pr_auc_gap_ci"]
        assert low <= high
        assert row["verdict"] in {"beats", "does_not_beat", "not_clearly_better"}
    assert set(trained.outcome.metrics) >= {"pr_auc", "pr_auc_points", "pr_auc_logreg", "pr_auc_most_active"}


def test_the_verdict_needs_the_whole_interval_above_zero_to_call_it_a_win() -> None:
    assert verdict(0.01, 0.05, 0.03) == "beats"
    assert verdict(-0.01, 0.05, 0.02) == "not_clearly_better"
    assert verdict(-0.05, 0.01, -0.02) == "does_not_beat"


def test_the_report_says_plainly_when_the_model_does_not_beat_a_baseline() -> None:
    metrics = {
        "comparison": {
            "logreg": {"pr_auc_gap": -0.02, "pr_auc_gap_ci": [-0.04, 0.0], "verdict": "does_not_beat"},
            "points": {"pr_auc_gap": 0.05, "pr_auc_gap_ci": [0.02, 0.08], "verdict": "beats"},
        }
    }
    sentences = [text for _, text in verdict_sentences(metrics)]
    assert sentences[0].startswith(
        "The model does NOT beat the logistic regression baseline on PR-AUC: -0.0200"
    )
    assert sentences[1].startswith("The model beats the decayed points baseline")


def test_too_few_conversions_refuses_training_and_falls_back_to_points(model_settings: Settings) -> None:
    sparse = training_frame(model_settings, base_logit=-9.0, seed=1)
    assert 0 < sparse["label"].sum() < model_settings.model.min_conversions
    with pytest.raises(
        TooLittleDataError, match=r"only \d+ converting accounts .* model\.min_conversions"
    ) as raised:
        train_on_frame(sparse, model_settings, window_end=WINDOW_END)
    outcome = raised.value.outcome
    assert outcome.status == TOO_LITTLE_DATA and outcome.promoted
    scoring = load_scoring_model(model_settings)
    assert scoring.is_fallback and scoring.version == outcome.version
    meta = read_metadata(model_settings.model_registry_path, outcome.version)
    assert meta["status"] == TOO_LITTLE_DATA and "min_conversions" in meta["reason"]
    assert len(scoring.predict_proba(sparse)) == len(sparse)


def test_the_refusal_is_a_data_error_for_the_command_line(model_settings: Settings) -> None:
    sparse = training_frame(model_settings, base_logit=-9.0, seed=1)
    with pytest.raises(DataError):
        train_on_frame(sparse, model_settings, window_end=WINDOW_END)


def test_too_few_snapshots_for_an_out_of_time_split_also_falls_back(model_settings: Settings) -> None:
    short = training_frame(model_settings, snapshots=4)
    with pytest.raises(TooLittleDataError, match="horizon") as raised:
        train_on_frame(short, model_settings, window_end=WINDOW_END)
    assert load_scoring_model(model_settings).version == raised.value.outcome.version


def test_the_minimum_counts_converting_accounts_not_positive_rows(model_settings: Settings) -> None:
    frame = training_frame(model_settings)
    converters = frame.loc[frame["label"] == 1, "account_id"].unique()
    strict = fast_settings(model_settings.state_dir, min_conversions=len(converters) + 1)
    assert frame["label"].sum() > len(converters) + 1
    with pytest.raises(TooLittleDataError) as raised:
        train_on_frame(frame, strict, window_end=WINDOW_END)
    message = str(raised.value)
    assert (
        f"only {len(converters)} converting accounts ({int(frame['label'].sum())} positive snapshot rows)"
        in (message)
    )
    assert "1 more" in message and "features.lookback_days" in message


def test_features_with_no_value_or_one_value_are_left_out_with_their_reason(model_settings: Settings) -> None:
    frame = training_frame(model_settings)
    frame["days_in_trial"] = np.nan
    frame["days_left_in_trial"] = np.nan
    frame["employees"] = np.nan
    frame["count_view_pricing_7d"] = 0
    frame["count_view_pricing_28d"] = 0
    frame["industry"] = "software"

    outcome = train_on_frame(frame, model_settings, window_end=WINDOW_END)

    features = read_metadata(model_settings.model_registry_path, outcome.version)["features"]
    left_out = features["left_out"]
    assert left_out["days_in_trial"].startswith("no account was ever in a trial")
    assert left_out["employees"].startswith("the accounts table has no value")
    assert left_out["count_view_pricing_28d"].startswith("no account did 'view_pricing'")
    assert left_out["industry"].startswith("the same value (software)")
    assert not set(left_out) & {*features["numeric"], *features["categorical"]}
    scoring = load_scoring_model(model_settings)
    assert len(scoring.predict_proba(frame.drop(columns=list(left_out)))) == len(frame)


def test_every_rolling_origin_fold_trains_when_a_column_is_empty_in_its_early_rows(
    model_settings: Settings,
) -> None:
    frame = training_frame(model_settings, snapshots=30)
    early = frame["as_of"] < sorted(frame["as_of"].unique())[8]
    frame.loc[early, "ratio_momentum_7d_vs_prior_21d"] = np.nan

    outcome = train_on_frame(frame, model_settings, window_end=WINDOW_END)

    folds = read_metadata(model_settings.model_registry_path, outcome.version)["metrics"]["folds"]
    assert len(folds) >= 2 and all("model" in fold["pr_auc"] for fold in folds)


def test_families_switched_off_in_the_settings_never_reach_the_model(model_settings: Settings) -> None:
    settings = load_settings(
        None,
        state_dir=model_settings.state_dir,
        model=model_settings.model.model_dump(),
        features={"exclude": ["fit", "count_events_1d"]},
    )
    outcome = train_on_frame(training_frame(settings), settings, window_end=WINDOW_END)

    features = read_metadata(settings.model_registry_path, outcome.version)["features"]
    assert {"employees", "industry", "country", "count_events_1d"} <= set(features["left_out"])
    assert features["left_out"]["industry"] == "switched off in features.exclude (family fit)"
    assert "employees" not in features["numeric"] and "industry" not in features["categorical"]


def test_too_little_data_keeps_a_trained_champion(trained: Trained) -> None:
    strict = fast_settings(trained.settings.state_dir, min_conversions=10**6)
    with pytest.raises(TooLittleDataError) as raised:
        train_on_frame(training_frame(strict, accounts=50), strict, window_end=WINDOW_END)
    assert not raised.value.outcome.promoted
    assert champion_version(trained.root) == trained.outcome.version
    assert not load_scoring_model(strict).is_fallback
    meta = read_metadata(trained.root, raised.value.outcome.version)
    assert f"trained champion {trained.outcome.version} keeps scoring" in meta["promotion"]["reason"]


def test_a_training_set_without_a_model_column_is_refused_by_name(model_settings: Settings) -> None:
    broken = training_frame(model_settings, accounts=20).drop(columns=["days_tenure"])
    with pytest.raises(DataError, match="days_tenure"):
        train_on_frame(broken, model_settings, window_end=WINDOW_END)


def test_the_same_data_gives_the_same_fingerprint_and_version_suffix(
    retrained: tuple[Trained, Trained], frame: pd.DataFrame
) -> None:
    first, second = retrained
    assert first.outcome.version != second.outcome.version
    assert first.outcome.version[-8:] == second.outcome.version[-8:]
    columns = ["count_events_28d", "plan"]
    changed = frame.copy()
    changed.loc[0, "count_events_28d"] += 1
    assert data_fingerprint(frame, columns) == data_fingerprint(frame.copy(), columns)
    assert data_fingerprint(changed, columns) != data_fingerprint(frame, columns)


def test_a_champion_that_learned_from_the_whole_holdout_is_not_compared_and_stays(
    trained: Trained, frame: pd.DataFrame
) -> None:
    earlier = frame[frame["as_of"] < sorted(frame["as_of"].unique())[10]]
    outcome = train_on_frame(earlier, trained.settings, window_end=WINDOW_END)
    assert not outcome.promoted
    assert "no fair comparison" in outcome.reason
    assert champion_version(trained.root) == trained.outcome.version


def test_a_champion_that_no_longer_loads_is_replaced_with_the_reason(
    trained: Trained, frame: pd.DataFrame
) -> None:
    (trained.outcome.path / MODEL_FILE).write_bytes(b"changed after it was written")
    outcome = train_on_frame(frame, trained.settings, window_end=WINDOW_END)
    assert outcome.promoted
    assert "cannot be used" in outcome.reason and "sha256" in outcome.reason
    assert load_scoring_model(trained.settings).version == outcome.version

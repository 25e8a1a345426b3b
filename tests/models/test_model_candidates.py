"""The model family is chosen on folds inside the training window, never on the final holdout."""

from __future__ import annotations

import numpy as np
import pandas as pd
from model_frames import WINDOW_END, fast_settings, training_frame

from pql.config import Settings
from pql.models.backtest import out_of_time_split
from pql.models.candidates import choose_candidate
from pql.models.registry import load_scoring_model, read_metadata
from pql.models.training import train_on_frame


def _both(settings: Settings) -> Settings:
    return fast_settings(settings.state_dir, candidates=["gradient_boosting", "logistic_regression"])


def _linear_world(settings: Settings) -> pd.DataFrame:
    """Few accounts whose conversions add up small linear effects: the logistic regression's home ground."""
    frame = training_frame(settings, accounts=150, snapshots=30, seed=2)
    rng = np.random.default_rng(2)
    logit = (
        -5.0
        + 0.12 * frame["count_events_28d"]
        + 0.15 * frame["count_invite_teammate_28d"]
        + 0.03 * frame["days_tenure"]
        - 0.03 * frame["days_since_last_event"]
    )
    frame["label"] = (rng.random(len(frame)) < 1 / (1 + np.exp(-logit))).astype(int)
    return frame


def _threshold_world(settings: Settings) -> pd.DataFrame:
    """Conversions driven by interactions and thresholds: the trees' home ground."""
    return training_frame(settings, accounts=600, snapshots=30, seed=5)


def test_the_choice_never_reads_the_holdout(model_settings: Settings) -> None:
    settings = _both(model_settings)
    frame = _linear_world(settings)
    split = out_of_time_split(frame["as_of"], settings.horizon_days)
    train = frame[split.train_rows(frame)]
    scrambled = frame.copy()
    held_out = split.test_rows(frame)
    scrambled.loc[held_out, "label"] = 1 - scrambled.loc[held_out, "label"]

    assert choose_candidate(train, settings) == choose_candidate(scrambled[split.train_rows(frame)], settings)
    assert all(
        pd.Timestamp(fold["test_to"]) < split.test_start for fold in choose_candidate(train, settings).folds
    )


def test_a_linear_signal_picks_the_logistic_regression(model_settings: Settings) -> None:
    settings = _both(model_settings)
    frame = _linear_world(settings)
    train = frame[frame["as_of"] < sorted(frame["as_of"].unique())[22]]

    choice = choose_candidate(train, settings)

    assert choice.chosen == "logistic_regression"
    assert "best mean PR-AUC" in choice.reason and len(choice.folds) >= 2


def test_interactions_and_thresholds_pick_the_gradient_boosted_trees(model_settings: Settings) -> None:
    settings = _both(model_settings)
    frame = _threshold_world(settings)
    train = frame[frame["as_of"] < sorted(frame["as_of"].unique())[22]]

    assert choose_candidate(train, settings).chosen == "gradient_boosting"


def test_too_few_snapshots_to_compare_keep_the_default_and_say_so(model_settings: Settings) -> None:
    settings = _both(model_settings)
    frame = training_frame(settings, snapshots=5)

    choice = choose_candidate(frame, settings)

    assert choice.chosen == "gradient_boosting" and "kept the default" in choice.reason


def test_the_registered_model_records_the_winner_and_scores_with_it(model_settings: Settings) -> None:
    settings = _both(model_settings)
    frame = _linear_world(settings)

    outcome = train_on_frame(frame, settings, window_end=WINDOW_END)

    candidate = read_metadata(settings.model_registry_path, outcome.version)["model"]["candidate"]
    assert candidate["chosen"] == "logistic_regression"
    assert "logistic regression" in outcome.metrics["model_choice"]
    assert "Model family" in (outcome.path / "report.html").read_text()
    probabilities = load_scoring_model(settings).predict_proba(frame)
    assert np.all((probabilities > 0) & (probabilities < 1))

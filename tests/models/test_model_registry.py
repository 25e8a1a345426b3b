"""The registry: what a version holds, checks before unpickling, champion pointer, promote and rollback."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from model_frames import Trained, Tripwire, fast_settings

from pql.config import load_settings
from pql.features.catalog import model_columns
from pql.models.registry import (
    DEFAULT_FALLBACK_VERSION,
    METADATA_FILE,
    MODEL_FILE,
    REPORT_FILE,
    RegistryError,
    champion_version,
    list_versions,
    load_model,
    load_scoring_model,
    new_version,
    promote,
    read_metadata,
    rollback,
    sha256_of,
)


def edit_metadata(trained: Trained, **changes: object) -> None:
    path = trained.outcome.path / METADATA_FILE
    meta = json.loads(path.read_text())
    meta.update(changes)
    path.write_text(json.dumps(meta))


def test_a_version_folder_holds_the_model_its_metadata_and_its_report(trained: Trained) -> None:
    assert {p.name for p in trained.outcome.path.iterdir()} == {MODEL_FILE, METADATA_FILE, REPORT_FILE}
    assert trained.outcome.path.parent == trained.root


def test_metadata_records_the_evidence_of_the_model(trained: Trained, frame: pd.DataFrame) -> None:
    meta = read_metadata(trained.root, trained.outcome.version)
    numeric, categorical = model_columns(trained.settings)
    assert meta["sha256"] == sha256_of(trained.outcome.path / MODEL_FILE)
    assert meta["features"]["numeric"] == numeric and meta["features"]["categorical"] == categorical
    assert set(meta["features"]["dtypes"]) == {*numeric, *categorical}
    assert meta["training"]["as_of_dates"][0] == pd.Timestamp(frame["as_of"].min()).isoformat()
    assert meta["training"]["horizon_days"] == 30
    assert meta["training"]["conversions"] == int(frame["label"].sum())
    assert len(meta["training"]["fingerprint"]) == 64
    assert set(meta["metrics"]["holdout"]) == {"model", "points", "logreg", "most_active"}
    assert {"scikit-learn", "joblib", "numpy", "pandas", "python"} <= set(meta["libraries"])
    assert meta["metrics"]["calibration"]["before"]["brier"] > 0


def test_the_champion_loads_for_scoring_with_its_references(trained: Trained, frame: pd.DataFrame) -> None:
    model = load_scoring_model(trained.settings)
    assert model.version == trained.outcome.version and not model.is_fallback
    p = model.predict_proba(frame.head(50))
    fit = model.predict_fit_proba(frame.head(50))
    assert p.shape == fit.shape == (50,)
    assert np.all((p > 0) & (p < 1)) and np.all((fit > 0) & (fit < 1))
    assert set(model.reference_values) == {*model.numeric_columns, *model.categorical_columns}
    assert len(model.training_distribution["probability"]) == 11


def test_a_tampered_model_file_is_refused_before_it_is_unpickled(trained: Trained, tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    joblib.dump(Tripwire(marker), trained.outcome.path / MODEL_FILE)
    with pytest.raises(RegistryError, match="does not match the sha256"):
        load_scoring_model(trained.settings)
    assert not marker.exists()


def test_a_feature_list_mismatch_is_refused_naming_the_columns(trained: Trained) -> None:
    fewer_events = load_settings(
        None, state_dir=trained.settings.state_dir, key_events=["invite_teammate", "view_pricing"]
    )
    with pytest.raises(RegistryError, match="count_export_report_7d") as raised:
        load_model(trained.root, trained.outcome.version, fewer_events)
    assert "Retrain with `pql train`" in str(raised.value)


def test_a_model_saved_under_other_library_versions_is_refused(trained: Trained) -> None:
    meta = read_metadata(trained.root, trained.outcome.version)
    edit_metadata(trained, libraries={**meta["libraries"], "scikit-learn": "0.24.2"})
    with pytest.raises(RegistryError, match=r"scikit-learn 0\.24\.2 \(installed") as raised:
        load_model(trained.root, trained.outcome.version, trained.settings)
    assert "pin scikit-learn==0.24.2" in str(raised.value)


def test_without_a_champion_scoring_uses_the_points_baseline(tmp_path: Path) -> None:
    model = load_scoring_model(fast_settings(tmp_path / "empty"))
    assert model.is_fallback and model.version == DEFAULT_FALLBACK_VERSION
    assert "run `pql train`" in model.metadata["reason"].lower()
    frame = pd.DataFrame({column: [0.0, 4.0] for column in model.numeric_columns})
    p = model.predict_proba(frame)
    assert p[1] > p[0]


def test_an_unknown_version_is_a_clear_error(trained: Trained) -> None:
    with pytest.raises(RegistryError, match="No model version 20990101T000000Z-deadbeef"):
        load_model(trained.root, "20990101T000000Z-deadbeef", trained.settings)


def test_versions_sort_by_creation_time() -> None:
    older = new_version(datetime(2025, 1, 1, 23, 59, 59), "f" * 64)
    newer = new_version(datetime(2025, 1, 2, 0, 0, 0), "0" * 64)
    assert sorted([newer, older]) == [older, newer]


def test_retraining_on_the_same_data_keeps_the_champion_and_records_why(
    retrained: tuple[Trained, Trained],
) -> None:
    champion, challenger = retrained
    assert not challenger.outcome.promoted
    assert champion_version(champion.root) == champion.outcome.version
    meta = read_metadata(challenger.root, challenger.outcome.version)
    assert meta["promotion"]["promoted"] is False
    assert "not better by the promotion margin" in meta["promotion"]["reason"]
    assert meta["promotion"]["compared_on"]["champion"] == champion.outcome.version


def test_promote_then_rollback_restores_the_previous_champion(retrained: tuple[Trained, Trained]) -> None:
    champion, challenger = retrained
    settings = challenger.settings
    promote(challenger.root, challenger.outcome.version, settings, reason="analyst says so")
    assert load_scoring_model(settings).version == challenger.outcome.version
    assert rollback(challenger.root, settings) == champion.outcome.version
    assert load_scoring_model(settings).version == champion.outcome.version
    assert [row["is_champion"] for row in list_versions(challenger.root)] == [True, False]


def test_rollback_needs_an_earlier_champion(trained: Trained) -> None:
    with pytest.raises(RegistryError, match="only champion so far"):
        rollback(trained.root, trained.settings)


def test_a_tampered_version_cannot_be_promoted(trained: Trained) -> None:
    (trained.outcome.path / MODEL_FILE).write_bytes(b"not what the registry wrote")
    with pytest.raises(RegistryError, match="sha256"):
        promote(trained.root, trained.outcome.version, trained.settings, reason="x")

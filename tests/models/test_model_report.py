"""report.html: self-contained, every plot embedded, and it renders in a real headless browser."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
from headless_chromium import decoded_images
from model_frames import WINDOW_END, Trained, fast_settings

from pql.models.registry import REPORT_FILE, read_metadata
from pql.models.training import train_on_frame

EXPECTED_PLOTS = {
    "ROC curve",
    "Precision-recall curve",
    "Gain and lift chart",
    "Calibration curve",
    "Score distribution",
    "Permutation importance",
}


def report_html(trained: Trained) -> str:
    return (trained.outcome.path / REPORT_FILE).read_text(encoding="utf-8")


def test_the_report_needs_nothing_outside_the_file(trained: Trained) -> None:
    html = report_html(trained)
    assert not re.search(r"""(src|href)=["'](?!data:)""", html)
    assert "<link" not in html and "<script" not in html and "url(" not in html
    assert len(re.findall(r'<img alt="[^"]+" src="data:image/png;base64,', html)) == len(EXPECTED_PLOTS)


def test_the_report_shows_the_model_against_every_baseline(trained: Trained) -> None:
    html = report_html(trained)
    for label in ("decayed points", "logistic regression", "most active (events in 28 days)"):
        assert f'<th class="">{label}</th>' in html
    assert "Does the model beat the baselines?" in html
    assert trained.outcome.version in html


@pytest.mark.browser
def test_the_report_renders_in_headless_chromium_with_every_image_decoded(
    trained: Trained, tmp_path: Path
) -> None:
    images, dom = decoded_images(report_html(trained), tmp_path)
    assert {image["alt"] for image in images} == EXPECTED_PLOTS
    undecoded = [image["alt"] for image in images if not image["complete"] or image["width"] <= 0]
    assert undecoded == []
    assert "<title>PQL model " in dom


def test_the_report_names_the_label_and_counts_every_labels_converters_by_path(
    frame: pd.DataFrame, tmp_path: Path
) -> None:
    """Won deals (the label) were all opportunities created in the horizon; even-numbered winners also
    went paid then; ten accounts that never won went paid on their own."""
    rows = frame.copy()
    number = rows["account_id"].str[-5:].astype(int)
    won = rows["label"].astype(bool)
    winners = set(rows.loc[won, "account_id"])
    even = {account for account in winners if int(account[-5:]) % 2 == 0}
    alone = sorted(set(rows["account_id"]) - winners)[:10]
    self_serve = (won & (number % 2 == 0)) | (
        rows["account_id"].isin(alone) & (rows["as_of"] == rows["as_of"].min())
    )
    rows = rows.assign(
        label_converted_to_paid=self_serve.astype("Int64"),
        label_opportunity_created=won.astype("Int64"),
        label_closed_won=won.astype("Int64"),
        label_converted_or_won=(won | self_serve).astype("Int64"),
    )
    settings = fast_settings(tmp_path / ".pql")
    settings = settings.model_copy(
        update={"features": settings.features.model_copy(update={"label": "closed_won"})}
    )

    outcome = train_on_frame(rows, settings, window_end=WINDOW_END, created=datetime(2025, 5, 8, 12))

    meta = read_metadata(settings.model_registry_path, outcome.version)
    assert meta["training"]["label"] == "closed_won"
    paths = meta["training"]["paths"]
    assert paths["opportunities"] is True
    n_won, n_even = len(winners), len(even)
    assert paths["labels"] == {
        "converted_to_paid": {
            "converting_accounts": n_even + 10,
            "self_serve_only": 10,
            "opportunity_only": 0,
            "both": n_even,
        },
        "opportunity_created": {
            "converting_accounts": n_won,
            "self_serve_only": 0,
            "opportunity_only": n_won - n_even,
            "both": n_even,
        },
        "closed_won": {
            "converting_accounts": n_won,
            "self_serve_only": 0,
            "opportunity_only": n_won - n_even,
            "both": n_even,
        },
        "converted_or_won": {
            "converting_accounts": n_won + 10,
            "self_serve_only": 10,
            "opportunity_only": n_won - n_even,
            "both": n_even,
        },
    }
    html = (outcome.path / REPORT_FILE).read_text(encoding="utf-8")
    assert "A deal won (an opportunity closed won) within 30 days" in html
    assert "closed_won (trained on)" in html and "Converters by path" in html


def test_a_report_without_recorded_paths_says_so(trained: Trained) -> None:
    html = report_html(trained)

    assert "paths were not recorded for this version" in html
    assert "Conversion to a paid plan (self-serve) within" in html

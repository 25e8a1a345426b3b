"""report.html: self-contained, every plot embedded, and it renders in a real headless browser."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from headless_chromium import decoded_images
from model_frames import Trained

from pql.models.registry import REPORT_FILE

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

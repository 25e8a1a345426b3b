"""report.html: self-contained, every plot embedded, and it renders in a real headless browser."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from model_frames import Trained

from models.registry import REPORT_FILE

EXPECTED_PLOTS = {
    "ROC curve",
    "Precision-recall curve",
    "Gain and lift chart",
    "Calibration curve",
    "Score distribution",
    "Permutation importance",
}
# Runs after the page (and its images) loaded; the DOM dump then carries what the browser decoded.
PROBE = """<script>
window.addEventListener("load", () => {
  const seen = Array.from(document.images).map(
    i => ({alt: i.alt, complete: i.complete, width: i.naturalWidth}));
  const out = document.createElement("pre");
  out.id = "image-probe";
  out.textContent = JSON.stringify(seen);
  document.body.appendChild(out);
});
</script>"""
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--virtual-time-budget=15000",
)


def chromium_binary() -> str | None:
    return next(
        (path for name in ("chromium", "chromium-browser", "google-chrome") if (path := shutil.which(name))),
        None,
    )


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
    binary = chromium_binary()
    if binary is None:
        pytest.skip("no Chromium binary on PATH: install the Debian package `chromium` (.ci/run does)")
    page = tmp_path / "probed-report.html"
    page.write_text(report_html(trained).replace("</body>", PROBE + "</body>"), encoding="utf-8")
    result = subprocess.run(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    probe = re.search(r'<pre id="image-probe">(.*?)</pre>', result.stdout, re.DOTALL)
    assert probe is not None, "the page did not finish loading in Chromium"
    images = json.loads(probe.group(1).replace("&quot;", '"'))
    assert {image["alt"] for image in images} == EXPECTED_PLOTS
    undecoded = [image["alt"] for image in images if not image["complete"] or image["width"] <= 0]
    assert undecoded == []
    assert "<title>PQL model " in result.stdout

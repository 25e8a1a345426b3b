"""Browser tests' one helper: load a page in headless Chromium and read back how its images decoded."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

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
FLAGS = (
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


def decoded_images(html: str, folder: Path) -> tuple[list[dict[str, object]], str]:
    """(each image's alt, complete and naturalWidth as Chromium decoded them, the rendered DOM) for a
    page; skips the test when no Chromium is installed."""
    binary = chromium_binary()
    if binary is None:
        pytest.skip("no Chromium binary on PATH: install the Debian package `chromium` (.ci/run does)")
    page = folder / "probed-page.html"
    page.write_text(html.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    result = subprocess.run(
        [binary, *FLAGS, f"--user-data-dir={folder / 'chromium-profile'}", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    probe = re.search(r'<pre id="image-probe">(.*?)</pre>', result.stdout, re.DOTALL)
    assert probe is not None, "the page did not finish loading in Chromium"
    return json.loads(probe.group(1).replace("&quot;", '"')), result.stdout

"""The feature reference (`docs/features.md`), rendered from the catalog so it cannot drift from the code.

python -m pql.features.reference          # rewrite docs/features.md for the built-in default settings
python -m pql.features.reference --check  # exit 1 when docs/features.md is out of date
"""

from __future__ import annotations

import argparse
import sys
from itertools import groupby
from pathlib import Path

from pql.config import Settings
from pql.features.catalog import CONVENTIONS, feature_specs
from pql.features.labels import LABEL_NOTES

REFERENCE_PATH = Path(__file__).resolve().parents[1] / "docs" / "features.md"

FAMILY_TITLES = {
    "activity": "Activity",
    "people": "People",
    "breadth": "Breadth",
    "key_events": "Key events",
    "recency": "Recency",
    "momentum": "Momentum",
    "lifecycle": "Lifecycle",
    "trial": "Trial",
    "fit": "Fit",
    "attributes": "Your attributes",
}


def default_settings() -> Settings:
    """The built-in defaults, whatever the environment says: the committed reference describes these."""
    return Settings.model_construct()


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_reference(settings: Settings) -> str:
    """The Markdown reference of every feature, label and convention for `settings`."""
    keys = ", ".join(f"`{event.display}`" for event in settings.key_events)
    lines = [
        "# Feature reference",
        "",
        "<!-- Generated from features/catalog.py by `python -m pql.features.reference`; do not edit. -->",
        "",
        "One row per account and snapshot `as_of` (every account created before `as_of`), built in the "
        "database by one SQL statement for any number of snapshots (`pql.features.builder.build_features`). "
        f"Key events in this reference (setting `key_events`): {keys}.",
        "",
        "## Conventions",
        "",
    ]
    for title, text in CONVENTIONS:
        lines += [f"- **{title}.** {text}"]
    lines += ["", "## Features", ""]
    specs = feature_specs(settings)
    for family, members in groupby(specs, key=lambda spec: spec.family):
        lines += [
            f"### {FAMILY_TITLES[family]}",
            "",
            "| feature | kind | window | unit | reason group | definition |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| `{s.name}` | {s.kind} | `{s.window}` | {s.unit} | {s.group} | {_cell(s.definition)} |"
            for s in members
        ]
        lines.append("")
    lines += ["## Labels, eligibility and training snapshots", ""]
    lines += [f"- **{title}.** {text}" for title, text in LABEL_NOTES]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pql.features.reference", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--check", action="store_true", help="fail when the reference is out of date")
    args = parser.parse_args(argv)
    text = render_reference(default_settings())
    if args.check:
        current = REFERENCE_PATH.read_text(encoding="utf-8") if REFERENCE_PATH.exists() else ""
        if current != text:
            print(
                f"{REFERENCE_PATH} is out of date: run `python -m pql.features.reference`.", file=sys.stderr
            )
            return 1
        return 0
    REFERENCE_PATH.write_text(text, encoding="utf-8")
    print(f"wrote {REFERENCE_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

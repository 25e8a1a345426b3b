"""`pql models list --json` and `pql models show --json`: the registry's facts as one JSON document on
stdout, the warnings on stderr."""

from __future__ import annotations

import json
import re
from pathlib import Path

from model_frames import Trained
from test_model_commands import invoke

from pql.models.registry import UNSIGNED, read_metadata


def test_list_json_holds_every_version_the_table_shows(retrained: tuple[Trained, Trained]) -> None:
    champion, challenger = retrained
    state_dir = champion.settings.state_dir
    text, document = invoke(state_dir, "models", "list"), invoke(state_dir, "models", "list", "--json")
    assert text.exit_code == 0 and document.exit_code == 0, text.output + document.output
    found = json.loads(document.stdout)
    versions = [row["version"] for row in found["versions"]]
    assert versions == sorted([champion.outcome.version, challenger.outcome.version])
    assert re.findall(r"\d{8}T\d{6}Z-\w+", text.stdout) == versions
    assert found["champion"] == champion.outcome.version
    assert [row["is_champion"] for row in found["versions"]] == [
        version == champion.outcome.version for version in versions
    ]
    for row in found["versions"]:
        assert isinstance(row["pr_auc"], float) and f"{row['pr_auc']:.3f}" in text.stdout
        assert row["signature"] == UNSIGNED and row["status"] == "trained"


def test_list_json_sends_the_unsigned_warning_to_stderr(trained: Trained) -> None:
    result = invoke(trained.settings.state_dir, "models", "list", "--json")
    json.loads(result.stdout)
    assert "registry is unsigned" in result.stderr and "registry is unsigned" not in result.stdout


def test_list_json_of_an_empty_registry_is_an_empty_list_with_a_note(tmp_path: Path) -> None:
    result = invoke(tmp_path / ".pql", "models", "list", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["versions"] == []
    assert "run `pql train`" in result.stderr


def test_show_json_carries_the_window_metrics_and_verdicts_the_text_shows(trained: Trained) -> None:
    state_dir, version = trained.settings.state_dir, trained.outcome.version
    text, document = invoke(state_dir, "models", "show"), invoke(state_dir, "models", "show", "--json")
    assert text.exit_code == 0 and document.exit_code == 0, text.output + document.output
    found = json.loads(document.stdout)
    meta = read_metadata(trained.settings.model_registry_path, version)
    assert found["version"] == version and found["is_champion"] is True
    assert found["rows"] == meta["training"]["rows"] and f"  rows       {found['rows']} (" in text.stdout
    assert found["snapshots"]["count"] == len(meta["training"]["as_of_dates"])
    assert found["snapshots"]["first"][:10] in text.stdout
    assert found["metrics"]["holdout"]["model"]["pr_auc"] == meta["metrics"]["holdout"]["model"]["pr_auc"]
    assert f"{found['metrics']['holdout']['model']['pr_auc']:.3f}" in text.stdout
    assert found["verdicts"] and all(sentence[:40] in text.stdout for sentence in found["verdicts"])
    assert found["promotion"]["promoted"] is True
    assert found["report"].endswith(f"{version}/report.html")


def test_show_json_of_an_unknown_version_keeps_exit_code_1_and_an_empty_stdout(trained: Trained) -> None:
    result = invoke(trained.settings.state_dir, "models", "show", "20990101T000000Z-deadbeef", "--json")
    assert result.exit_code == 1
    assert result.stdout == "" and "20990101T000000Z-deadbeef" in result.stderr

"""What the registry refuses to load: unsigned or tampered versions when a key is set, entries that
resolve outside the registry, and a lost registry once trained models have scored."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import joblib
import pytest
from model_frames import SIGNING_KEY, Trained, Tripwire, fast_settings

from pql.models.registry import (
    BAD_SIGNATURE,
    CHAMPION_FILE,
    DEFAULT_FALLBACK_VERSION,
    METADATA_FILE,
    MODEL_FILE,
    SIGNED,
    UNSIGNED,
    UNVERIFIED,
    RegistryError,
    list_versions,
    load_scoring_model,
    promote,
    read_metadata,
    sha256_of,
    signing_key,
    unsigned_warning,
)

OTHER_KEY = "a7" * 32


def metadata_of(trained: Trained) -> dict:
    return json.loads((trained.outcome.path / METADATA_FILE).read_text())


def write_metadata(trained: Trained, meta: dict) -> None:
    (trained.outcome.path / METADATA_FILE).write_text(json.dumps(meta, indent=2))


def forge_model(trained: Trained, marker: Path) -> None:
    """Replace the pickle by one that runs code, and record its sha256 as an attacker with write access
    to the registry would."""
    joblib.dump(Tripwire(marker), trained.outcome.path / MODEL_FILE)
    meta = metadata_of(trained)
    meta["sha256"] = sha256_of(trained.outcome.path / MODEL_FILE)
    write_metadata(trained, meta)


def test_a_signed_model_loads_without_warnings_and_its_metadata_holds_no_key(signed: Trained) -> None:
    text = (signed.outcome.path / METADATA_FILE).read_text()
    assert json.loads(text)["signature"]["algorithm"] == "hmac-sha256"
    assert SIGNING_KEY not in text
    model = load_scoring_model(signed.settings)
    assert model.version == signed.outcome.version and not model.is_fallback
    assert model.warnings == []


def test_an_unsigned_registry_loads_with_a_warning_naming_the_fix(trained: Trained) -> None:
    model = load_scoring_model(trained.settings)
    assert model.version == trained.outcome.version
    assert model.warnings == [unsigned_warning(trained.root)]
    assert f"anyone who can write {trained.root} can run code as pql" in model.warnings[0]
    assert "set PQL_MODEL__SIGNING_KEY" in model.warnings[0]


def test_a_forged_pickle_with_a_forged_checksum_is_refused_and_its_code_never_runs(
    signed: Trained, tmp_path: Path
) -> None:
    marker = tmp_path / "forged-code-ran"
    forge_model(signed, marker)
    with pytest.raises(RegistryError, match="signature does not verify") as raised:
        load_scoring_model(signed.settings)
    assert signed.outcome.version in str(raised.value)
    assert "Restore the version's files" in str(raised.value) and "retrain" in str(raised.value)
    with pytest.raises(RegistryError, match="signature does not verify"):
        promote(signed.root, signed.outcome.version, signed.settings, reason="attacker")
    assert not marker.exists()


def test_a_forged_pickle_with_its_signature_removed_is_refused(signed: Trained, tmp_path: Path) -> None:
    marker = tmp_path / "forged-code-ran"
    forge_model(signed, marker)
    meta = metadata_of(signed)
    del meta["signature"]
    write_metadata(signed, meta)
    with pytest.raises(RegistryError, match=r"it is not signed, and model\.signing_key"):
        load_scoring_model(signed.settings)
    assert not marker.exists()


def test_a_model_signed_with_another_key_is_refused(signed: Trained) -> None:
    other = fast_settings(signed.settings.state_dir, signing_key=OTHER_KEY)
    with pytest.raises(RegistryError, match="does not verify with the current signing key"):
        load_scoring_model(other)


def test_an_unsigned_model_is_refused_once_a_key_is_set(trained: Trained) -> None:
    keyed = fast_settings(trained.settings.state_dir, signing_key=SIGNING_KEY)
    with pytest.raises(RegistryError, match=f"Refusing to load model {trained.outcome.version}: it is not"):
        load_scoring_model(keyed)


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda meta: meta.update(sha256="0" * 64), id="sha256"),
        pytest.param(lambda meta: meta.update(version="20990101T000000Z-deadbeef"), id="version"),
        pytest.param(lambda meta: meta["reference_values"].update(employees=1e9), id="reference_values"),
        pytest.param(lambda meta: meta["training"].update(base_rate=0.99), id="training"),
    ],
)
def test_an_edit_to_signed_metadata_is_refused(signed: Trained, edit) -> None:
    meta = metadata_of(signed)
    edit(meta)
    write_metadata(signed, meta)
    with pytest.raises(RegistryError, match="signature does not verify"):
        load_scoring_model(signed.settings)


def test_list_says_whether_a_signed_version_verifies_with_the_current_key(signed: Trained) -> None:
    key = signing_key(signed.settings)
    assert [row["signature"] for row in list_versions(signed.root, key)] == [SIGNED]
    assert [row["signature"] for row in list_versions(signed.root)] == [UNVERIFIED]
    assert [row["signature"] for row in list_versions(signed.root, OTHER_KEY.encode())] == [BAD_SIGNATURE]


def test_list_says_an_unsigned_version_is_unsigned(trained: Trained) -> None:
    assert [row["signature"] for row in list_versions(trained.root, SIGNING_KEY.encode())] == [UNSIGNED]


def outside_copy(trained: Trained, where: Path, marker: Path) -> Path:
    """A version folder outside the registry whose pickle runs code, with a matching checksum."""
    folder = where / trained.outcome.version
    shutil.copytree(trained.outcome.path, folder)
    joblib.dump(Tripwire(marker), folder / MODEL_FILE)
    meta = json.loads((folder / METADATA_FILE).read_text())
    meta["sha256"] = sha256_of(folder / MODEL_FILE)
    (folder / METADATA_FILE).write_text(json.dumps(meta))
    return folder


def point_champion_at(trained: Trained, entry: str) -> None:
    path = trained.root / CHAMPION_FILE
    state = json.loads(path.read_text())
    state["champion"] = entry
    state["stack"].append(entry)
    path.write_text(json.dumps(state))


@pytest.mark.parametrize("spelling", ["relative", "absolute"])
def test_a_champion_entry_outside_the_registry_is_refused(
    trained: Trained, tmp_path: Path, spelling: str
) -> None:
    marker = tmp_path / "outside-code-ran"
    folder = outside_copy(trained, tmp_path / "elsewhere", marker)
    entry = f"../../elsewhere/{folder.name}" if spelling == "relative" else str(folder)
    assert (trained.root / entry).resolve() == folder.resolve()
    point_champion_at(trained, entry)
    with pytest.raises(RegistryError, match="not a registry version name") as raised:
        load_scoring_model(trained.settings)
    assert "could point outside" in str(raised.value)
    assert not marker.exists()


@pytest.mark.parametrize("linked", ["version folder", "model file"])
def test_a_symbolic_link_out_of_the_registry_is_refused(
    trained: Trained, tmp_path: Path, linked: str
) -> None:
    marker = tmp_path / "outside-code-ran"
    folder = outside_copy(trained, tmp_path / "elsewhere", marker)
    if linked == "version folder":
        shutil.rmtree(trained.outcome.path)
        trained.outcome.path.symlink_to(folder, target_is_directory=True)
    else:
        (trained.outcome.path / MODEL_FILE).unlink()
        (trained.outcome.path / MODEL_FILE).symlink_to(folder / MODEL_FILE)
        meta = metadata_of(trained)
        meta["sha256"] = sha256_of(folder / MODEL_FILE)
        write_metadata(trained, meta)
    with pytest.raises(RegistryError, match="outside the registry"):
        load_scoring_model(trained.settings)
    assert not marker.exists()


def test_show_refuses_a_version_name_that_climbs_out(trained: Trained) -> None:
    with pytest.raises(RegistryError, match="not a registry version name"):
        read_metadata(trained.root, f"../{trained.root.parent.name}/models/{trained.outcome.version}")


def test_a_lost_registry_fails_scoring_once_a_trained_model_has_scored(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path / ".pql")
    with pytest.raises(RegistryError, match="No champion model in") as raised:
        load_scoring_model(settings, scored_before="20250508T120000Z-0123abcd")
    message = str(raised.value)
    assert "20250508T120000Z-0123abcd" in message and "Restore it" in message
    assert 'model.fallback = "points"' in message


def test_a_lost_registry_scores_with_the_points_baseline_when_opted_in(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path / ".pql", fallback="points")
    model = load_scoring_model(settings, scored_before="20250508T120000Z-0123abcd")
    assert model.is_fallback and model.version == DEFAULT_FALLBACK_VERSION
    assert "20250508T120000Z-0123abcd" in model.metadata["reason"]


def test_a_new_deployment_without_a_registry_scores_with_the_points_baseline(tmp_path: Path) -> None:
    model = load_scoring_model(fast_settings(tmp_path / ".pql"), scored_before=None)
    assert model.is_fallback and model.version == DEFAULT_FALLBACK_VERSION


def test_an_unreadable_champion_file_is_an_error_not_a_fallback(trained: Trained) -> None:
    path = trained.root / CHAMPION_FILE
    path.unlink()
    path.mkdir()  # unreadable as a file even for root, unlike a chmod
    with pytest.raises(RegistryError, match="Cannot read the model registry's"):
        load_scoring_model(trained.settings)

"""The registry on a second filesystem: fsspec's memory filesystem and a `file://` URL in another
folder hold versions, the champion pointer and its log exactly as a local folder does."""

from __future__ import annotations

import importlib.util
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import fsspec
import joblib
import pandas as pd
import pytest
import typer
from model_frames import WINDOW_END, Tripwire, fast_settings
from typer.testing import CliRunner

from pql.commands.models import register
from pql.config import ConfigError, Settings, load_settings
from pql.models.registry import (
    CHAMPION_FILE,
    METADATA_FILE,
    MODEL_FILE,
    REPORT_FILE,
    RegistryError,
    champion_state,
    list_versions,
    load_scoring_model,
    promote,
    read_metadata,
    rollback,
)
from pql.models.storage import open_registry
from pql.models.training import TrainOutcome, train_on_frame

FILESYSTEMS = ["memory", "file-url"]
TRAINED_AT = datetime(2025, 5, 8, 12, 0)
RETRAINED_AT = datetime(2025, 5, 9, 12, 0)


def registry_url(kind: str, folder: Path) -> str:
    """A fresh registry URL: a unique place in this process's memory filesystem, or a `file://` URL
    to a folder outside the state directory."""
    if kind == "memory":
        return f"memory://pql-{uuid.uuid4().hex}/models"
    return (folder / "elsewhere" / "models").as_uri()


def settings_on(url: str, state_dir: Path) -> Settings:
    """The model tests' fast settings, with the registry at `url`."""
    fast = fast_settings(state_dir)
    return load_settings(None, state_dir=state_dir, registry_path=url, model=fast.model.model_dump())


@dataclass(frozen=True)
class Remote:
    """A registry at a URL after two trainings on the same data: the champion and a challenger."""

    settings: Settings
    champion: TrainOutcome
    challenger: TrainOutcome

    @property
    def url(self) -> str:
        return str(self.settings.model_registry_path)

    def write(self, *parts: str, data: bytes) -> None:
        fs, path = fsspec.core.url_to_fs("/".join([self.url, *parts]))
        fs.pipe_file(path, data)

    def read(self, *parts: str) -> bytes:
        fs, path = fsspec.core.url_to_fs("/".join([self.url, *parts]))
        return fs.cat_file(path)


@pytest.fixture(scope="module", params=FILESYSTEMS)
def _pristine_remote(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, frame: pd.DataFrame
) -> Remote:
    root = tmp_path_factory.mktemp(request.param)
    settings = settings_on(registry_url(request.param, root), root / ".pql")
    first = train_on_frame(frame, settings, window_end=WINDOW_END, created=TRAINED_AT)
    second = train_on_frame(frame, settings, window_end=WINDOW_END, created=RETRAINED_AT)
    return Remote(settings, first, second)


@pytest.fixture
def remote(_pristine_remote: Remote, tmp_path: Path) -> Remote:
    """A private copy of the registry on the same filesystem (tests may tamper with it)."""
    kind = "memory" if _pristine_remote.url.startswith("memory://") else "file-url"
    url = registry_url(kind, tmp_path)
    fs, source = fsspec.core.url_to_fs(_pristine_remote.url)
    _, target = fsspec.core.url_to_fs(url)
    fs.cp(source, target, recursive=True)
    return Remote(settings_on(url, tmp_path / ".pql"), _pristine_remote.champion, _pristine_remote.challenger)


def test_training_writes_each_version_and_the_champion_to_the_filesystem_the_url_names(
    _pristine_remote: Remote,
) -> None:
    remote = _pristine_remote
    assert remote.champion.path == f"{remote.url}/{remote.champion.version}"
    fs, root = fsspec.core.url_to_fs(remote.url)
    for outcome in (remote.champion, remote.challenger):
        names = {Path(name).name for name in fs.ls(f"{root}/{outcome.version}", detail=False)}
        assert names == {MODEL_FILE, METADATA_FILE, REPORT_FILE}
    assert json.loads(remote.read(CHAMPION_FILE))["champion"] == remote.champion.version
    assert not (remote.settings.state_dir / "models").exists()


def test_versions_are_listed_from_the_url_with_the_champion_marked(remote: Remote) -> None:
    rows = list_versions(remote.url)
    assert [row["version"] for row in rows] == [remote.champion.version, remote.challenger.version]
    assert [row["is_champion"] for row in rows] == [True, False]


def test_the_champion_loads_from_the_url_with_its_checksum_verified(
    remote: Remote, frame: pd.DataFrame
) -> None:
    model = load_scoring_model(remote.settings)
    assert model.version == remote.champion.version and not model.is_fallback
    assert model.predict_proba(frame.head(20)).shape == (20,)
    assert read_metadata(remote.url, model.version)["sha256"] == model.metadata["sha256"]


def test_a_tampered_model_file_on_the_url_is_refused_before_it_is_unpickled(
    remote: Remote, tmp_path: Path
) -> None:
    marker = tmp_path / "unpickled"
    forged = tmp_path / "forged.joblib"
    joblib.dump(Tripwire(marker), forged)
    remote.write(remote.champion.version, MODEL_FILE, data=forged.read_bytes())
    with pytest.raises(RegistryError, match="does not match the sha256") as raised:
        load_scoring_model(remote.settings)
    assert f"{remote.url}/{remote.champion.version}/{MODEL_FILE}" in str(raised.value)
    assert not marker.exists()


def test_promote_then_rollback_rewrite_the_champion_file_on_the_url(remote: Remote) -> None:
    settings, first, second = remote.settings, remote.champion, remote.challenger
    promote(remote.url, second.version, settings, reason="analyst says so")
    assert load_scoring_model(settings).version == second.version
    assert rollback(remote.url, settings) == first.version
    state = champion_state(remote.url)
    assert state["champion"] == first.version and state["stack"] == [first.version]
    assert [entry["action"] for entry in state["log"]] == ["auto-promote", "promote", "rollback"]
    assert load_scoring_model(settings).version == first.version


def test_a_champion_file_rewrite_leaves_no_temporary_file_behind(remote: Remote) -> None:
    promote(remote.url, remote.challenger.version, remote.settings, reason="analyst says so")
    store = open_registry(remote.url)
    assert store.folders() == sorted([remote.champion.version, remote.challenger.version])
    fs, root = fsspec.core.url_to_fs(remote.url)
    assert sorted(Path(name).name for name in fs.ls(root, detail=False) if fs.isfile(name)) == sorted(
        [CHAMPION_FILE, *([".registry.lock"] if remote.url.startswith("file://") else [])]
    )


def test_the_model_commands_read_and_promote_on_the_url(remote: Remote) -> None:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """pql"""

    register(app)
    env = {"PQL_STATE_DIR": str(remote.settings.state_dir), "PQL_REGISTRY_PATH": remote.url}
    listed = CliRunner().invoke(app, ["models", "list"], env=env)
    assert listed.exit_code == 0, listed.output
    assert remote.challenger.version in listed.output
    promoted = CliRunner().invoke(app, ["models", "promote", remote.challenger.version], env=env)
    assert promoted.exit_code == 0, promoted.output
    assert champion_state(remote.url)["champion"] == remote.challenger.version


@pytest.mark.parametrize(
    ("url", "package"), [("s3://bucket/models", "s3fs"), ("gs://bucket/models", "gcsfs")]
)
def test_a_url_whose_filesystem_package_is_missing_is_a_configuration_error_naming_it(
    url: str, package: str
) -> None:
    if importlib.util.find_spec(package) is not None:
        pytest.skip(f"{package} is installed here")
    with pytest.raises(ConfigError, match=f"needs the {package} package: pip install {package}") as raised:
        load_settings(None, registry_path=url)
    assert len(str(raised.value).splitlines()) == 1


def test_an_unknown_protocol_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match=r"unknown fsspec protocol nosuch://"):
        load_settings(None, registry_path="nosuch://bucket/models")


def test_a_plain_path_stays_a_local_folder(tmp_path: Path) -> None:
    settings = load_settings(None, registry_path=str(tmp_path / "models"))
    assert settings.model_registry_path == tmp_path / "models"
    assert open_registry(settings.model_registry_path).is_local

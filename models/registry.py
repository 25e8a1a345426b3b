"""The model registry: one folder per version, a champion pointer, and loading that checks first.

    <registry>/<version>/model.joblib   the fitted estimators (a pickle: loaded only after the checks)
    <registry>/<version>/metadata.json  the evidence: window, features, metrics, libraries, sha256
    <registry>/<version>/report.html    the evaluation report
    <registry>/champion.json            the champion, the promotion stack (for rollback) and a log

A version is `YYYYMMDDTHHMMSSZ-<data fingerprint>`: sorting the names sorts them by creation time.
Before unpickling, loading verifies the file's sha256, the feature list against the current catalog
and the library versions (major.minor) it was saved with; any difference is a RegistryError saying
what differs and what to do.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import shutil
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

from features.catalog import feature_specs
from models.encoded import EncodedModel, encoded_model
from models.points import DEFAULT_BASE_RATE, fit_points
from pql.config import Settings
from pql.db import DataError

MODEL_FILE = "model.joblib"
METADATA_FILE = "metadata.json"
REPORT_FILE = "report.html"
CHAMPION_FILE = "champion.json"
CHECKED_LIBRARIES = ("scikit-learn", "joblib", "numpy", "pandas")
TOO_LITTLE_DATA = "too_little_data"
TRAINED = "trained"
DEFAULT_FALLBACK_VERSION = "points-default"


class RegistryError(DataError):
    """A registry entry that cannot be used as asked; the message names the difference and the fix."""


def library_versions() -> dict[str, str]:
    versions = {name: installed_version(name) for name in CHECKED_LIBRARIES}
    versions["python"] = platform.python_version()
    return versions


def _major_minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def new_version(created: datetime, fingerprint: str) -> str:
    """A sortable version name: the UTC creation time, then the first 8 hex digits of the data fingerprint."""
    return f"{created:%Y%m%dT%H%M%SZ}-{fingerprint[:8]}"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def jsonable(value: Any) -> Any:
    """Plain JSON types: NaN/inf become null, numpy scalars and timestamps become numbers and ISO text."""
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return [jsonable(item) for item in value.tolist()]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, pd.Timestamp | datetime | date):
        return value.isoformat()
    if isinstance(value, Path):
        return value.as_posix()
    return value


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write through a temporary file and rename, so readers never see half a file."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(jsonable(payload), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def save_version(
    root: Path, version: str, artifact: dict[str, Any], metadata: dict[str, Any], report_html: str
) -> Path:
    """Write the three files into `<root>/<version>/` all at once (a folder renamed into place)."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / version
    if final.exists():
        raise RegistryError(
            f"Model version {version} already exists in {root}; train again to get a new one."
        )
    staging = root / f".incoming-{version}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    joblib.dump(artifact, staging / MODEL_FILE, compress=3)
    complete = {
        **metadata,
        "version": version,
        "libraries": library_versions(),
        "sha256": sha256_of(staging / MODEL_FILE),
    }
    _write_json(staging / METADATA_FILE, complete)
    (staging / REPORT_FILE).write_text(report_html, encoding="utf-8")
    os.replace(staging, final)
    return final


def read_metadata(root: Path, version: str) -> dict[str, Any]:
    path = root / version / METADATA_FILE
    if not path.is_file():
        raise RegistryError(
            f"No model version {version} in {root}. `pql models list` shows the versions there."
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise RegistryError(
            f"{path} is not valid JSON ({exc}); restore it or retrain with `pql train`."
        ) from exc


def list_versions(root: Path) -> list[dict[str, Any]]:
    """Every complete version, oldest first, with the fields worth a glance."""
    if not root.is_dir():
        return []
    champion = champion_version(root)
    rows = []
    folders = (p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    for folder in sorted(p for p in folders if (p / METADATA_FILE).is_file()):
        meta = read_metadata(root, folder.name)
        holdout = meta.get("metrics", {}).get("holdout", {})
        rows.append(
            {
                "version": folder.name,
                "created": meta.get("created"),
                "status": meta.get("status"),
                "is_champion": folder.name == champion,
                "data_end": meta.get("training", {}).get("data_end"),
                "pr_auc": holdout.get("model", {}).get("pr_auc"),
                "pr_auc_points": holdout.get("points", {}).get("pr_auc"),
                "promoted": meta.get("promotion", {}).get("promoted"),
                "reason": meta.get("promotion", {}).get("reason"),
            }
        )
    return rows


def _check_checksum(root: Path, version: str, meta: dict[str, Any]) -> None:
    path = root / version / MODEL_FILE
    if not path.is_file():
        raise RegistryError(f"{path} is missing; restore it from backup or retrain with `pql train`.")
    recorded, found = meta.get("sha256"), sha256_of(path)
    if recorded != found:
        raise RegistryError(
            f"Refusing to load model {version}: {path} does not match the sha256 in its metadata.json "
            f"(recorded {recorded}, found {found}). The file changed after the registry wrote it. "
            "Restore the original file or retrain with `pql train`; never load a pickle you did not write."
        )


def _check_features(version: str, meta: dict[str, Any], settings: Settings) -> None:
    """The model scores with its own column list: every column must still be built, of the same kind."""
    kinds = {spec.name: spec.kind for spec in feature_specs(settings)}
    trained = meta.get("features", {})
    trained_numeric, trained_categorical = trained.get("numeric", []), trained.get("categorical", [])
    if meta.get("is_fallback"):
        absent = sorted(set(trained_numeric) - set(kinds))
        if absent:
            raise RegistryError(
                f"Refusing to load model {version}: its points rules need {', '.join(absent)}, which the "
                "current features do not produce. Restore the key_events it was built with or retrain."
            )
        return
    wanted = {
        **dict.fromkeys(trained_numeric, "numeric"),
        **dict.fromkeys(trained_categorical, "categorical"),
    }
    gone = [column for column in wanted if column not in kinds]
    changed = [column for column, kind in wanted.items() if column in kinds and kinds[column] != kind]
    if not gone and not changed:
        return
    detail = []
    if gone:
        detail.append(f"trained on but no longer produced: {', '.join(gone)}")
    if changed:
        detail.append(f"now of another kind (numeric/categorical): {', '.join(changed)}")
    raise RegistryError(
        f"Refusing to load model {version}: its feature list differs from the current feature catalog "
        f"({'; '.join(detail)}). Retrain with `pql train`, or restore the settings (key_events, "
        "features.attributes) it was trained with."
    )


def _check_libraries(version: str, meta: dict[str, Any]) -> None:
    saved = meta.get("libraries", {})
    current = library_versions()
    different = [
        f"{name} {saved.get(name)} (installed {current[name]})"
        for name in CHECKED_LIBRARIES
        if _major_minor(str(saved.get(name))) != _major_minor(current[name])
    ]
    if different:
        raise RegistryError(
            f"Refusing to load model {version}: it was saved with {', '.join(different)}. Pickles are only "
            "safe to load under the same major.minor versions: retrain with `pql train`, or pin "
            + ", ".join(f"{name}=={saved.get(name)}" for name in CHECKED_LIBRARIES if name in saved)
            + "."
        )


def verified_metadata(root: Path, version: str, settings: Settings) -> dict[str, Any]:
    """The version's metadata once its checksum, feature list and library versions all check out."""
    meta = read_metadata(root, version)
    _check_checksum(root, version, meta)
    _check_features(version, meta, settings)
    _check_libraries(version, meta)
    return meta


@dataclass
class LoadedModel:
    """What scoring uses: probabilities, fit probabilities and the training references of one version."""

    version: str
    metadata: dict[str, Any]
    is_fallback: bool
    numeric_columns: list[str]
    categorical_columns: list[str]
    reference_values: dict[str, object]
    training_distribution: dict[str, list[float]]
    conversion: Any = field(repr=False)
    fit: Any = field(default=None, repr=False)

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        """Probability of converting within the horizon, one per row."""
        if features.empty:
            return np.zeros(0)
        return np.asarray(self.conversion.predict_proba(features)[:, 1], dtype=np.float64)

    def encoded(self) -> EncodedModel | None:
        """The conversion model split into encoding and scoring encoded rows; None for the points fallback."""
        return encoded_model(self.conversion)

    def predict_fit_proba(self, features: pd.DataFrame) -> np.ndarray:
        """Probability from firmographics alone; without a fit model, the training base rate for everyone."""
        if self.fit is None:
            base_rate = self.metadata.get("training", {}).get("base_rate") or DEFAULT_BASE_RATE
            return np.full(len(features), float(base_rate))
        if features.empty:
            return np.zeros(0)
        return np.asarray(self.fit.predict_proba(features)[:, 1], dtype=np.float64)


def load_model(root: Path, version: str, settings: Settings) -> LoadedModel:
    """Verify, then unpickle, one version."""
    meta = verified_metadata(root, version, settings)
    artifact = joblib.load(root / version / MODEL_FILE)
    return LoadedModel(
        version=version,
        metadata=meta,
        is_fallback=bool(meta.get("is_fallback")),
        numeric_columns=list(meta["features"]["numeric"]),
        categorical_columns=list(meta["features"]["categorical"]),
        reference_values=dict(meta.get("reference_values", {})),
        training_distribution={k: list(v) for k, v in meta.get("training_distribution", {}).items()},
        conversion=artifact["conversion"],
        fit=artifact.get("fit"),
    )


def default_points_model(settings: Settings, reason: str) -> LoadedModel:
    """The points baseline from the settings alone (configured rules, else defaults): no registry entry."""
    points = fit_points(settings, None)
    columns = points.input_columns
    return LoadedModel(
        version=DEFAULT_FALLBACK_VERSION,
        metadata={"status": "no_model", "is_fallback": True, "reason": reason, "points": points.describe()},
        is_fallback=True,
        numeric_columns=columns,
        categorical_columns=[],
        reference_values=dict.fromkeys(columns, 0.0),
        training_distribution={},
        conversion=points,
    )


def _empty_state() -> dict[str, Any]:
    return {"champion": None, "stack": [], "log": []}


def _broken_champion_file(path: Path, problem: str) -> RegistryError:
    # `pql models promote` reads the file too, so it must be restored or moved aside first.
    return RegistryError(
        f"{path} {problem}. Restore it from a backup, or move it aside and run `pql models promote VERSION` "
        "(`pql models list` shows the versions; the promotion history in the file is lost)."
    )


def _champion_shape_problem(state: Any) -> str | None:
    """What makes a parsed champion.json unusable, or None: it must be an object with `champion`
    (a version or null), `stack` (versions) and `log` (entries)."""
    if not isinstance(state, dict):
        return f"holds a JSON {type(state).__name__}, not an object with champion, stack and log"
    champion, stack, log = state.get("champion"), state.get("stack", []), state.get("log", [])
    if champion is not None and not isinstance(champion, str):
        return f"names the champion as {champion!r}, not a version string"
    if not isinstance(stack, list) or not all(isinstance(version, str) for version in stack):
        return "has a stack that is not a list of versions"
    if not isinstance(log, list):
        return "has a log that is not a list"
    return None


def champion_state(root: Path) -> dict[str, Any]:
    """The champion record of the registry (empty when there is none yet)."""
    path = root / CHAMPION_FILE
    if not path.is_file():
        return _empty_state()
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _broken_champion_file(path, f"is not valid JSON ({exc})") from exc
    problem = _champion_shape_problem(state)
    if problem:
        raise _broken_champion_file(path, problem)
    return {**_empty_state(), **state}


def champion_version(root: Path) -> str | None:
    return champion_state(root).get("champion")


def _log(state: dict[str, Any], action: str, version: str | None, reason: str, at: datetime | None) -> None:
    moment = at or datetime.now(UTC).replace(tzinfo=None)
    state["log"].append({"at": moment.isoformat(), "action": action, "version": version, "reason": reason})


def promote(
    root: Path,
    version: str,
    settings: Settings,
    *,
    reason: str,
    action: str = "promote",
    at: datetime | None = None,
) -> None:
    """Make `version` the champion, after checking it loads under the current settings and libraries."""
    verified_metadata(root, version, settings)
    state = champion_state(root)
    if state.get("champion") == version:
        raise RegistryError(f"Model {version} is already the champion.")
    state["stack"].append(version)
    state["champion"] = version
    _log(state, action, version, reason, at)
    _write_json(root / CHAMPION_FILE, state)


def rollback(
    root: Path, settings: Settings, *, reason: str = "manual rollback", at: datetime | None = None
) -> str:
    """Undo the latest promotion: the previous champion (checked to load) is champion again. Returns it."""
    state = champion_state(root)
    if len(state["stack"]) < 2:
        raise RegistryError(
            f"Nothing to roll back to in {root}: "
            + (
                "there is no champion."
                if not state["stack"]
                else f"{state['champion']} is the only champion so far."
            )
            + " Use `pql models promote VERSION` to choose one."
        )
    verified_metadata(root, state["stack"][-2], settings)
    withdrawn = state["stack"].pop()
    state["champion"] = state["stack"][-1]
    _log(state, "rollback", state["champion"], f"{reason} (withdrew {withdrawn})", at)
    _write_json(root / CHAMPION_FILE, state)
    return state["champion"]


def load_scoring_model(settings: Settings) -> LoadedModel:
    """The champion, verified; the points baseline (is_fallback=True) when there is no champion yet.

    A champion marked too-little-data is itself a points baseline and loads as one. A champion that
    fails verification raises: scoring never silently swaps models.
    """
    root = settings.model_registry_path
    version = champion_version(root)
    if version is None:
        return default_points_model(
            settings, f"no champion model in {root}: scoring with the points baseline. Run `pql train`."
        )
    return load_model(root, version, settings)

"""The model registry: one folder per version, a champion pointer, and loading that checks first.

The registry is a folder on any fsspec filesystem (a local path, `file://`, `memory://`, `s3://`,
`gs://`): every file is read and written through `models.storage`. Functions take the registry as a
local Path, a URL, or an opened `RegistryStorage`.

    <registry>/<version>/model.joblib   the fitted estimators (a pickle: loaded only after the checks)
    <registry>/<version>/metadata.json  the evidence: window, features, metrics, libraries, sha256
    <registry>/<version>/report.html    the evaluation report
    <registry>/champion.json            the champion, the promotion stack (for rollback) and a log

A version is `YYYYMMDDTHHMMSSZ-<data fingerprint>`: sorting the names sorts them by creation time.
Only names of that form, in folders that resolve inside the registry, are ever read.

With `model.signing_key` set, every version is signed: an HMAC-SHA256, under that key, of its metadata
and the exact bytes of its model file, stored in the metadata (the key never is). The sha256 alone only
catches accidents: whoever can write the folder can rewrite it too. The key lives outside the registry,
so a forged pickle cannot carry a valid signature.

Before unpickling, loading verifies the signature (when a key is set: unsigned or tampered versions are
refused), the file's sha256, the feature list against the current catalog and the library versions
(major.minor) it was saved with; any difference is a RegistryError saying what differs and what to do.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import math
import platform
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

from pql.config import Settings
from pql.db import DataError
from pql.features.catalog import feature_specs
from pql.models.artifact_names import earlier_module_names
from pql.models.encoded import EncodedModel, encoded_model
from pql.models.points import DEFAULT_BASE_RATE, fit_points
from pql.models.registry_lock import registry_lock
from pql.models.storage import RegistryLocation, RegistryStorage, open_registry

Registry = RegistryLocation | RegistryStorage
"""A registry as these functions take it: a local folder, an fsspec URL, or its opened storage."""

MODEL_FILE = "model.joblib"
METADATA_FILE = "metadata.json"
REPORT_FILE = "report.html"
CHAMPION_FILE = "champion.json"
CHECKED_LIBRARIES = ("scikit-learn", "joblib", "numpy", "pandas")
TOO_LITTLE_DATA = "too_little_data"
TRAINED = "trained"
DEFAULT_FALLBACK_VERSION = "points-default"
SIGNATURE_FIELD = "signature"
SIGNATURE_ALGORITHM = "hmac-sha256"
# Bumped if what is signed ever changes, so an old signature can never verify a new layout.
_SIGNED_LAYOUT = b"pql-model-signature-v1\n"
SIGNED = "signed"
UNSIGNED = "unsigned"
UNVERIFIED = "signed, no key to verify"
BAD_SIGNATURE = "signature does not verify"
MISSING_FILE = "model file missing"
_VERSION_NAME = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$")


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


def _location(root: Registry) -> RegistryLocation:
    return root.location if isinstance(root, RegistryStorage) else root


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


def signing_key(settings: Settings) -> bytes | None:
    """The configured signing key as bytes, or None when the registry is unsigned."""
    key = settings.model.signing_key
    return None if key is None else key.get_secret_value().encode("utf-8")


def unsigned_warning(root: Registry) -> str:
    """The line every load of an unsigned registry prints and logs."""
    return (
        f"registry is unsigned: anyone who can write {_location(root)} can run code as pql; "
        "set PQL_MODEL__SIGNING_KEY"
    )


def _canonical(meta: dict[str, Any]) -> bytes:
    """The metadata as signed: every field but the signature, in one fixed JSON spelling."""
    unsigned = {key: value for key, value in meta.items() if key != SIGNATURE_FIELD}
    return json.dumps(
        jsonable(unsigned), sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def signature_of(model_bytes: bytes, meta: dict[str, Any], key: bytes) -> str:
    """HMAC-SHA256 under `key` of the metadata (all but its signature) and the model file's exact bytes."""
    described = _canonical(meta)
    mac = hmac.new(key, digestmod=hashlib.sha256)
    # Lengths first, so no bytes can move between the metadata and the file and keep the signature.
    mac.update(_SIGNED_LAYOUT + f"{len(described)} {len(model_bytes)}\n".encode("ascii"))
    mac.update(described)
    mac.update(model_bytes)
    return mac.hexdigest()


def signature_status(model_bytes: bytes, meta: dict[str, Any], key: bytes | None) -> str:
    """SIGNED (verifies under `key`), UNSIGNED, UNVERIFIED (signed, but no key given) or BAD_SIGNATURE."""
    recorded = meta.get(SIGNATURE_FIELD)
    if not isinstance(recorded, dict) or not recorded.get("hmac"):
        return UNSIGNED
    if key is None:
        return UNVERIFIED
    if recorded.get("algorithm") != SIGNATURE_ALGORITHM:
        return BAD_SIGNATURE
    expected = signature_of(model_bytes, meta, key)
    return SIGNED if hmac.compare_digest(expected, str(recorded["hmac"])) else BAD_SIGNATURE


def _json_bytes(payload: dict[str, Any]) -> bytes:
    return (json.dumps(jsonable(payload), indent=2, allow_nan=False) + "\n").encode("utf-8")


def save_version(
    root: Registry,
    version: str,
    artifact: dict[str, Any],
    metadata: dict[str, Any],
    report_html: str,
    *,
    key: bytes | None = None,
) -> RegistryLocation:
    """Write the three files into `<root>/<version>/` all at once (a folder renamed into place; on an
    object store, the metadata last), the metadata signed under `key` when one is given. Returns the
    version's folder."""
    store = open_registry(root)
    version_folder(store, version)
    if store.exists(version):
        raise RegistryError(
            f"Model version {version} already exists in {store.location}; train again to get a new one."
        )
    buffer = io.BytesIO()
    joblib.dump(artifact, buffer, compress=3)
    model_bytes = buffer.getvalue()
    complete = {
        **metadata,
        "version": version,
        "libraries": library_versions(),
        "sha256": hashlib.sha256(model_bytes).hexdigest(),
    }
    complete.pop(SIGNATURE_FIELD, None)
    if key is not None:
        complete[SIGNATURE_FIELD] = {
            "algorithm": SIGNATURE_ALGORITHM,
            "hmac": signature_of(model_bytes, complete, key),
        }
    files = {
        MODEL_FILE: model_bytes,
        METADATA_FILE: _json_bytes(complete),
        REPORT_FILE: report_html.encode("utf-8"),
    }
    store.write_folder(version, files, last=METADATA_FILE)
    return store.where(version)


def _inside(root: Path, path: Path) -> bool:
    return path.resolve().is_relative_to(root.resolve())


def version_folder(root: Registry, version: str) -> RegistryLocation:
    """`<root>/<version>`, once the name is one the registry generates and (on a local filesystem)
    the folder resolves inside the registry; anything else (`../elsewhere`, an absolute path, a
    symlink out) is refused."""
    store = open_registry(root)
    if not isinstance(version, str) or not _VERSION_NAME.match(version):
        raise RegistryError(
            f"Refusing model version {version!r}: not a registry version name (YYYYMMDDTHHMMSSZ-<8 hex "
            f"digits>), so it could point outside {store.location}. Check {store.where(CHAMPION_FILE)} and "
            "`pql models list`; promote a listed version with `pql models promote VERSION`."
        )
    local_root = store.local_path()
    if local_root is not None:
        for parts in ((version,), (version, METADATA_FILE), (version, MODEL_FILE)):
            path = Path(local_root, *parts)
            if path.exists() and not _inside(local_root, path):
                raise RegistryError(
                    f"Refusing model version {version}: {store.where(*parts)} resolves to {path.resolve()}, "
                    f"outside the registry {local_root.resolve()} (a symbolic link). Replace the link with "
                    "the version's own files, or retrain with `pql train`."
                )
    return store.where(version)


def read_metadata(root: Registry, version: str) -> dict[str, Any]:
    store = open_registry(root)
    version_folder(store, version)
    try:
        text = store.read_text(version, METADATA_FILE)
    except (FileNotFoundError, IsADirectoryError):
        raise RegistryError(
            f"No model version {version} in {store.location}. `pql models list` shows the versions there."
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RegistryError(
            f"{store.where(version, METADATA_FILE)} is not valid JSON ({exc}); restore it or retrain with "
            "`pql train`."
        ) from exc


def version_signature(root: Registry, version: str, meta: dict[str, Any], key: bytes | None) -> str:
    """The version's signature status (`signature_status`), or MISSING_FILE without its model file."""
    store = open_registry(root)
    version_folder(store, version)
    try:
        model_bytes = store.read_bytes(version, MODEL_FILE)
    except (FileNotFoundError, IsADirectoryError):
        return MISSING_FILE
    return signature_status(model_bytes, meta, key)


def list_versions(root: Registry, key: bytes | None = None) -> list[dict[str, Any]]:
    """Every complete version, oldest first, with the fields worth a glance (the signature checked
    under `key`)."""
    store = open_registry(root)
    if not store.is_dir():
        return []
    champion = champion_version(store)
    names = [name for name in store.folders() if _VERSION_NAME.match(name)]
    rows = []
    for name in (name for name in names if store.is_file(name, METADATA_FILE)):
        meta = read_metadata(store, name)
        holdout = meta.get("metrics", {}).get("holdout", {})
        rows.append(
            {
                "version": name,
                "created": meta.get("created"),
                "status": meta.get("status"),
                "is_champion": name == champion,
                "data_end": meta.get("training", {}).get("data_end"),
                "pr_auc": holdout.get("model", {}).get("pr_auc"),
                "pr_auc_points": holdout.get("points", {}).get("pr_auc"),
                "promoted": meta.get("promotion", {}).get("promoted"),
                "reason": meta.get("promotion", {}).get("reason"),
                "signature": version_signature(store, name, meta, key),
            }
        )
    return rows


def _model_bytes(store: RegistryStorage, version: str) -> bytes:
    """The model file's bytes, read once: what is verified is exactly what is unpickled."""
    version_folder(store, version)
    try:
        return store.read_bytes(version, MODEL_FILE)
    except (FileNotFoundError, IsADirectoryError):
        raise RegistryError(
            f"{store.where(version, MODEL_FILE)} is missing; restore it from backup or retrain with "
            "`pql train`."
        ) from None


def _check_signature(version: str, meta: dict[str, Any], model_bytes: bytes, key: bytes | None) -> None:
    """With a key, only versions it signed load: the signature covers the pickle and its metadata."""
    if key is None:
        return
    status = signature_status(model_bytes, meta, key)
    if status == UNSIGNED:
        raise RegistryError(
            f"Refusing to load model {version}: it is not signed, and model.signing_key "
            "(PQL_MODEL__SIGNING_KEY) is set, so only signed models load. Retrain with `pql train` to "
            "register a signed version, or restore this version's files from a backup that was signed."
        )
    if status != SIGNED:
        raise RegistryError(
            f"Refusing to load model {version}: its signature does not verify with the current signing "
            f"key: {MODEL_FILE} or {METADATA_FILE} changed after the registry signed them (or another "
            "key signed them). Restore the version's files from backup (or the key that signed them), or "
            "retrain with `pql train`; never load a pickle you did not write."
        )


def _check_checksum(store: RegistryStorage, version: str, meta: dict[str, Any], model_bytes: bytes) -> None:
    path = store.where(version, MODEL_FILE)
    recorded, found = meta.get("sha256"), hashlib.sha256(model_bytes).hexdigest()
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


def _verified(root: Registry, version: str, settings: Settings) -> tuple[dict[str, Any], bytes]:
    """The version's metadata and model bytes once its signature (with a key), checksum, feature list
    and library versions all check out."""
    store = open_registry(root)
    meta = read_metadata(store, version)
    model_bytes = _model_bytes(store, version)
    _check_signature(version, meta, model_bytes, signing_key(settings))
    _check_checksum(store, version, meta, model_bytes)
    _check_features(version, meta, settings)
    _check_libraries(version, meta)
    return meta, model_bytes


def verified_metadata(root: Registry, version: str, settings: Settings) -> dict[str, Any]:
    """The version's metadata once its signature (with a key), checksum, feature list and library
    versions all check out."""
    return _verified(root, version, settings)[0]


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
    # What every run that scores with it must say (an unsigned registry).
    warnings: list[str] = field(default_factory=list)

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


def load_model(root: Registry, version: str, settings: Settings) -> LoadedModel:
    """Verify, then unpickle, one version."""
    meta, model_bytes = _verified(root, version, settings)
    with earlier_module_names():
        artifact = joblib.load(io.BytesIO(model_bytes))
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
        warnings=[] if signing_key(settings) else [unsigned_warning(root)],
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


def _broken_champion_file(path: RegistryLocation, problem: str) -> RegistryError:
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


def champion_state(root: Registry) -> dict[str, Any]:
    """The champion record of the registry (empty when there is none yet)."""
    store = open_registry(root)
    path = store.where(CHAMPION_FILE)
    try:
        text = store.read_bytes(CHAMPION_FILE).decode("utf-8")
    except FileNotFoundError:
        return _empty_state()
    except OSError as exc:
        # Unreadable is not absent: scoring must not fall back to the points baseline over it.
        raise RegistryError(
            f"Cannot read the model registry's {path} ({exc.strerror or exc}); give the user running pql "
            "read access to the registry, or restore it."
        ) from exc
    try:
        state = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _broken_champion_file(path, f"is not valid JSON ({exc})") from exc
    problem = _champion_shape_problem(state)
    if problem:
        raise _broken_champion_file(path, problem)
    return {**_empty_state(), **state}


def champion_version(root: Registry) -> str | None:
    return champion_state(root).get("champion")


def _log(state: dict[str, Any], action: str, version: str | None, reason: str, at: datetime | None) -> None:
    moment = at or datetime.now(UTC).replace(tzinfo=None)
    state["log"].append({"at": moment.isoformat(), "action": action, "version": version, "reason": reason})


def promote(
    root: Registry,
    version: str,
    settings: Settings,
    *,
    reason: str,
    action: str = "promote",
    at: datetime | None = None,
) -> None:
    """Make `version` the champion, after checking it loads under the current settings and libraries;
    under the registry lock, so no other promotion, rollback or training interleaves."""
    store = open_registry(root)
    with registry_lock(settings, store, holder=f"pql {action} {version}"):
        verified_metadata(store, version, settings)
        state = champion_state(store)
        if state.get("champion") == version:
            raise RegistryError(f"Model {version} is already the champion.")
        state["stack"].append(version)
        state["champion"] = version
        _log(state, action, version, reason, at)
        store.write_atomic(CHAMPION_FILE, _json_bytes(state))


def rollback(
    root: Registry, settings: Settings, *, reason: str = "manual rollback", at: datetime | None = None
) -> str:
    """Undo the latest promotion: the previous champion (checked to load) is champion again. Returns it.
    Under the registry lock, like `promote`."""
    store = open_registry(root)
    with registry_lock(settings, store, holder="pql rollback"):
        return _rollback(store, settings, reason, at)


def _rollback(store: RegistryStorage, settings: Settings, reason: str, at: datetime | None) -> str:
    state = champion_state(store)
    if len(state["stack"]) < 2:
        raise RegistryError(
            f"Nothing to roll back to in {store.location}: "
            + (
                "there is no champion."
                if not state["stack"]
                else f"{state['champion']} is the only champion so far."
            )
            + " Use `pql models promote VERSION` to choose one."
        )
    verified_metadata(store, state["stack"][-2], settings)
    withdrawn = state["stack"].pop()
    state["champion"] = state["stack"][-1]
    _log(state, "rollback", state["champion"], f"{reason} (withdrew {withdrawn})", at)
    store.write_atomic(CHAMPION_FILE, _json_bytes(state))
    return state["champion"]


def load_scoring_model(settings: Settings, *, scored_before: str | None = None) -> LoadedModel:
    """The champion, verified; the points baseline (is_fallback=True) when there is no champion yet.

    A champion marked too-little-data is itself a points baseline and loads as one. A champion that
    fails verification raises: scoring never silently swaps models. `scored_before` is the trained
    model earlier runs scored with (from the CRM's ledger): with it, a missing champion means the
    registry was lost, which raises unless `model.fallback = "points"`.
    """
    root = settings.model_registry_path
    version = champion_version(root)
    if version is not None:
        return load_model(root, version, settings)
    if scored_before is None:
        return default_points_model(
            settings, f"no champion model in {root}: scoring with the points baseline. Run `pql train`."
        )
    if settings.model.fallback == "fail":
        raise RegistryError(
            f"No champion model in {root}, but earlier runs scored with trained model {scored_before} "
            "(pql_runs): the registry was deleted, moved or emptied. Restore it (or point registry_path "
            "at it) or retrain with `pql train`; to score with the points baseline meanwhile, set "
            'model.fallback = "points" (PQL_MODEL__FALLBACK=points).'
        )
    return default_points_model(
        settings,
        f"no champion model in {root} although earlier runs scored with {scored_before}: scoring with "
        'the points baseline as model.fallback = "points" allows. Restore the registry or run `pql train`.',
    )

"""`train_and_register`: build the training set, backtest the model against baselines, register it.

One run: training set (features + labels, built in the database) -> out-of-time split -> model,
fit-only model and baselines fitted on the training snapshots -> metrics with bootstrap intervals on
the holdout -> rolling-origin folds -> champion/challenger decision on the same holdout -> registry
entry (model.joblib, metadata.json, report.html) -> promotion when the rule says so.

Too little data (fewer than `model.min_conversions` conversions, or no honest out-of-time split)
registers a points-baseline entry marked `too_little_data` and raises TooLittleDataError.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sklearn.inspection import permutation_importance
from sklearn.pipeline import Pipeline

from pql.config import Settings
from pql.db import DataError
from pql.features.catalog import feature_specs, model_columns
from pql.features.labels import converters_by_path
from pql.features.training import data_end, training_set
from pql.models.backtest import TimeSplit, out_of_time_split, rolling_origin_splits
from pql.models.baselines import BASELINE_NAMES, fit_baselines
from pql.models.calibration import CalibratedFit, calibrated_fit
from pql.models.candidates import CANDIDATE_NAMES, DEFAULT_CANDIDATE, PipelineFactory, choose_candidate
from pql.models.champion import HoldoutScore, promotion_decision
from pql.models.columns import ColumnChoice, usable_columns
from pql.models.encoded import encoded_model
from pql.models.metrics import (
    bootstrap_intervals,
    calibration_error,
    calibration_table,
    holdout_of,
    point_metrics,
)
from pql.models.pipeline import BOOSTER_PARAMS, missing_columns, model_pipeline
from pql.models.points import fit_points
from pql.models.registry import (
    TOO_LITTLE_DATA,
    TRAINED,
    RegistryError,
    champion_version,
    library_versions,
    load_scoring_model,
    new_version,
    promote,
    read_metadata,
    save_version,
    signing_key,
)
from pql.models.report import ReportData, render_fallback_report, render_report
from pql.progress import Progress
from pql.progress import report as report_progress
from pql.schema import SourceTables

FIT_GROUPS = ("company_size", "industry", "country")
PERMUTATION_ROWS = 3_000
PERMUTATION_REPEATS = 3
KEY_COLUMNS = ("account_id", "as_of", "label")
# What a training run does, in order: the units of its progress (see `train_and_register`).
TRAIN_STEPS = (
    "training set",
    "candidate models",
    "model and baselines",
    "holdout metrics",
    "rolling-origin folds",
    "champion comparison",
    "report and registry",
)


@dataclass(frozen=True)
class TrainOutcome:
    """What a training run registered and decided."""

    version: str
    path: Path
    status: str
    promoted: bool
    reason: str
    metrics: dict[str, Any] = field(default_factory=dict)


class TooLittleDataError(DataError):
    """Training refused for lack of data; a points-baseline entry was registered (see `outcome`)."""

    def __init__(self, message: str, outcome: TrainOutcome) -> None:
        super().__init__(message)
        self.outcome = outcome


def train_and_register(
    engine: sa.Engine,
    tables: SourceTables,
    settings: Settings,
    end: datetime | None = None,
    *,
    created: datetime | None = None,
    progress: Progress | None = None,
) -> TrainOutcome:
    """Train on the source database's history up to `end` (default: the end of observed data) and register.

    `progress` is told each of TRAIN_STEPS as it starts (done = the steps finished), then the end."""
    started = time.perf_counter()
    _step(progress, "training set")
    observed = data_end(engine, tables)
    window_end = observed if end is None else min(end, observed)
    frame = training_set(engine, tables, settings, end)
    timings = {"training_set_s": time.perf_counter() - started}
    return train_on_frame(
        frame, settings, window_end=window_end, created=created, timings=timings, progress=progress
    )


def _step(progress: Progress | None, name: str, detail: str = "") -> None:
    step = f"{name} ({detail})" if detail else name
    report_progress(progress, TRAIN_STEPS.index(name), len(TRAIN_STEPS), step)


def _folds_of(progress: Progress | None, name: str) -> Progress | None:
    """A callback for the folds of step `name`: they show in the step's text, not as steps of their own."""
    if progress is None:
        return None

    def folds(done: int, total: int | None, step: str = "") -> None:
        _step(progress, name, f"{done}/{total} folds")

    return folds


def data_fingerprint(frame: pd.DataFrame, columns: Sequence[str]) -> str:
    """sha256 of the rows (keys, model columns, label) in their order: same data, same fingerprint."""
    hashed = pd.util.hash_pandas_object(frame[[*KEY_COLUMNS, *columns]], index=False)
    return hashlib.sha256(hashed.to_numpy().tobytes()).hexdigest()


def fit_columns(settings: Settings, choice: ColumnChoice) -> tuple[list[str], list[str]]:
    """The firmographic columns among the model's behind the fit-only probability."""
    groups = {spec.name: spec.group for spec in feature_specs(settings)}
    numeric, categorical = choice.numeric, choice.categorical
    return (
        [c for c in numeric if groups.get(c) in FIT_GROUPS],
        [c for c in categorical if groups.get(c) in FIT_GROUPS],
    )


def reference_values(
    frame: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str]
) -> dict[str, object]:
    """Population reference per column: the median of a numeric column, the most common category."""
    values: dict[str, object] = {}
    for column in numeric:
        median = pd.to_numeric(frame[column], errors="coerce").median()
        values[column] = None if pd.isna(median) else float(median)
    for column in categorical:
        mode = frame[column].dropna().mode()
        values[column] = None if mode.empty else str(mode.iloc[0])
    return values


def decile_edges(values: np.ndarray) -> list[float]:
    finite = values[np.isfinite(values)]
    return [] if finite.size == 0 else [float(q) for q in np.quantile(finite, np.linspace(0, 1, 11))]


def training_distribution(
    frame: pd.DataFrame, numeric: Sequence[str], probability: np.ndarray
) -> dict[str, list[float]]:
    """Decile edges per numeric feature (training rows) and of `probability` (predicted on the holdout)."""
    edges = {
        column: decile_edges(pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float))
        for column in numeric
    }
    edges["probability"] = decile_edges(np.asarray(probability, dtype=float))
    return {column: values for column, values in edges.items() if values}


def _window(frame: pd.DataFrame, settings: Settings, window_end: datetime) -> dict[str, Any]:
    dates = sorted(pd.Timestamp(d) for d in frame["as_of"].unique())
    rows, conversions = len(frame), int(frame["label"].sum()) if len(frame) else 0
    converting = int(frame.loc[frame["label"] == 1, "account_id"].nunique()) if rows else 0
    return {
        "data_end": window_end,
        "as_of_dates": [d.isoformat() for d in dates],
        "horizon_days": settings.horizon_days,
        "label": settings.features.label,
        "rows": rows,
        "accounts": int(frame["account_id"].nunique()) if rows else 0,
        "conversions": conversions,
        "converting_accounts": converting,
        "base_rate": conversions / rows if rows else None,
        "paths": converters_by_path(frame),
    }


def _settings_used(settings: Settings) -> dict[str, Any]:
    model = settings.model
    return {
        "seed": model.seed,
        "top_k": model.top_k,
        "min_conversions": model.min_conversions,
        "promotion_margin_pr_auc": model.promotion_margin_pr_auc,
        "bootstrap_rounds": model.bootstrap_rounds,
        "key_events": [event.model_dump(exclude_defaults=True) for event in settings.key_events],
        "snapshot_every_days": settings.features.snapshot_every_days,
        "lookback_days": settings.features.lookback_days,
    }


def _summary(metrics: dict[str, Any]) -> dict[str, Any]:
    holdout = metrics["holdout"]
    model = holdout["model"]
    summary = {
        key: model[key] for key in ("pr_auc", "roc_auc", "brier", "lift_top_10pct", "capture_top_10pct")
    }
    summary.update({f"pr_auc_{name}": holdout[name]["pr_auc"] for name in BASELINE_NAMES})
    return summary


def _choice_line(candidate: dict[str, Any]) -> str:
    return f"{CANDIDATE_NAMES[candidate['chosen']]}: {candidate['reason']}"


def too_few_converters(window: dict[str, Any], settings: Settings) -> str:
    """The refusal for too few converting accounts: both counts, and what would make training possible."""
    dates = window["as_of_dates"]
    span = f"{dates[0][:10]} … {dates[-1][:10]}, " if dates else ""
    converting, needed = window["converting_accounts"], settings.model.min_conversions
    return (
        f"only {converting} converting accounts ({window['conversions']} positive snapshot rows) in the "
        f"training window ({span}{len(dates)} snapshots, {window['rows']} rows); at least {needed} "
        f"converting accounts are needed (model.min_conversions): {needed - converting} more, from a "
        f"longer history (features.lookback_days, now {settings.features.lookback_days} days) or more "
        "data loaded"
    )


SAME_MODEL = "is_the_model"


def verdict(low: float, high: float, gap: float) -> str:
    """'beats' when the whole 95% interval of the PR-AUC gap is above zero, 'does_not_beat' when the gap
    is not positive, 'not_clearly_better' otherwise."""
    if gap <= 0:
        return "does_not_beat"
    return "beats" if low > 0 else "not_clearly_better"


@dataclass
class _Fitted:
    model: CalibratedFit
    fit: CalibratedFit | None
    baselines: dict[str, Any]
    columns: ColumnChoice


def _fit_all(
    train: pd.DataFrame,
    settings: Settings,
    timings: dict[str, float],
    make_model: PipelineFactory,
    *,
    with_fit_model: bool = True,
) -> _Fitted:
    """The model (and its fit-only sibling, unless told not to) and every baseline, fitted on `train`
    over the candidate columns that carry information in `train`."""
    choice = usable_columns(train, *model_columns(settings), settings)
    numeric, categorical = choice.numeric, choice.categorical
    seed = settings.model.seed
    started = time.perf_counter()
    model = calibrated_fit(train, make_model, numeric, categorical, seed)
    fit_numeric, fit_categorical = fit_columns(settings, choice)
    fit = (
        calibrated_fit(train, model_pipeline, fit_numeric, fit_categorical, seed)
        if with_fit_model and (fit_numeric or fit_categorical)
        else None
    )
    timings["fit_s"] = timings.get("fit_s", 0.0) + time.perf_counter() - started
    started = time.perf_counter()
    baselines = fit_baselines(train, settings, numeric, categorical)
    timings["baselines_s"] = timings.get("baselines_s", 0.0) + time.perf_counter() - started
    return _Fitted(model, fit, baselines, choice)


def _probabilities(fitted: _Fitted, rows: pd.DataFrame) -> dict[str, np.ndarray]:
    scored = {"model": fitted.model.estimator.predict_proba(rows)[:, 1]}
    scored.update({name: estimator.predict_proba(rows)[:, 1] for name, estimator in fitted.baselines.items()})
    return scored


def _holdout_metrics(
    test: pd.DataFrame,
    probabilities: dict[str, np.ndarray],
    uncalibrated: np.ndarray,
    settings: Settings,
    same_as: Sequence[str] = (),
) -> dict[str, Any]:
    """Holdout metrics of every scorer, and the model's verdict against each baseline (`same_as`: the
    baselines the model is, fitted the same way, so no verdict is drawn)."""
    holdout = holdout_of(test)
    model = settings.model
    points = {name: point_metrics(holdout, p, model.top_k) for name, p in probabilities.items()}
    boot = bootstrap_intervals(
        holdout,
        probabilities,
        top_k=model.top_k,
        rounds=model.bootstrap_rounds,
        seed=model.seed,
        reference="model",
    )
    for name in points:
        points[name]["ci"] = boot.intervals[name]
    comparison = {}
    for name in BASELINE_NAMES:
        gap = points["model"]["pr_auc"] - points[name]["pr_auc"]
        low, high = boot.pr_auc_gap[name]
        comparison[name] = {
            "pr_auc_gap": gap,
            "pr_auc_gap_ci": [low, high],
            "verdict": SAME_MODEL if name in same_as else verdict(low, high, gap),
        }
    label = holdout.label
    before = calibration_table(label, uncalibrated)
    after = calibration_table(label, probabilities["model"])
    return {
        "holdout": points,
        "comparison": comparison,
        "bootstrap_rounds": boot.rounds,
        "calibration": {
            "before": {
                "brier": float(np.mean((uncalibrated - label) ** 2)),
                "ece": calibration_error(before),
                "table": before.to_dict(orient="records"),
            },
            "after": {
                "brier": points["model"]["brier"],
                "ece": calibration_error(after),
                "table": after.to_dict(orient="records"),
            },
        },
    }


def _importance(
    base: Pipeline, test: pd.DataFrame, settings: Settings, columns: ColumnChoice
) -> pd.DataFrame:
    """Permutation importance (drop in PR-AUC) of each model column on a sample of holdout rows.

    For the booster, shuffles its encoded input: every encoding is per column, so shuffling an encoded
    column is shuffling the raw one (and cheaper). Other pipelines (one column may become several) get
    their raw columns shuffled. The calibration map is monotone, so it cannot change PR-AUC.
    """
    sample = (
        test
        if len(test) <= PERMUTATION_ROWS
        else test.sample(PERMUTATION_ROWS, random_state=settings.model.seed)
    )
    if sample["label"].nunique() < 2:
        sample = test
    if encoded_model(base) is not None:
        estimator, rows = base[-1], base[:-1].transform(sample)
        names = list(base.named_steps["columns"].get_feature_names_out())
    else:
        estimator, rows = base, sample[columns.columns]
        names = columns.columns
    result = permutation_importance(
        estimator,
        rows,
        sample["label"].to_numpy(),
        scoring="average_precision",
        n_repeats=PERMUTATION_REPEATS,
        random_state=settings.model.seed,
    )
    frame = pd.DataFrame(
        {
            "feature": names,
            "importance_mean": result.importances_mean,
            "importance_std": result.importances_std,
        }
    )
    return frame.sort_values("importance_mean", ascending=False, kind="stable").reset_index(drop=True)


def _fold_metrics(
    frame: pd.DataFrame,
    main: TimeSplit,
    settings: Settings,
    main_pr: dict[str, float],
    make_model: PipelineFactory,
    progress: Progress | None = None,
) -> list[dict]:
    """PR-AUC of every scorer per rolling-origin fold (the main split's numbers reused); `progress` is
    told the folds done, of all of them."""
    folds = []
    splits = rolling_origin_splits(frame["as_of"], settings.horizon_days)
    for done, split in enumerate(splits):
        report_progress(progress, done, len(splits))
        row = split.describe()
        if split == main:
            row["pr_auc"] = main_pr
            folds.append(row)
            continue
        train, test = frame[split.train_rows(frame)], frame[split.test_rows(frame)]
        if train["label"].nunique() < 2 or test["label"].nunique() < 2:
            continue
        probabilities = _probabilities(_fit_all(train, settings, {}, make_model, with_fit_model=False), test)
        holdout = holdout_of(test)
        row["pr_auc"] = {
            name: point_metrics(holdout, p, settings.model.top_k)["pr_auc"]
            for name, p in probabilities.items()
        }
        folds.append(row)
    report_progress(progress, len(splits), len(splits))
    return folds


def _champion_comparison(
    test: pd.DataFrame, challenger: np.ndarray, settings: Settings
) -> tuple[bool, str, dict[str, Any]]:
    """Decide promotion against what scoring uses now, on holdout rows the champion never learned from."""
    try:
        current = load_scoring_model(settings)
    except RegistryError as exc:
        return True, f"the current champion cannot be used ({exc}); promoted in its place", {}
    label_end = current.metadata.get("training", {}).get("label_end")
    usable = np.ones(len(test), dtype=bool)
    if label_end:
        usable = (test["as_of"] >= pd.Timestamp(label_end)).to_numpy()
    if not usable.any():
        return (
            False,
            f"champion {current.version} learned from labels up to {label_end}, which covers this whole "
            "holdout: no fair comparison; kept as challenger (promote it by hand if it should score)",
            {"champion": current.version},
        )
    rows = test.loc[usable]
    holdout = holdout_of(rows)
    mine = point_metrics(holdout, challenger[usable], settings.model.top_k)
    theirs = point_metrics(holdout, current.predict_proba(rows), settings.model.top_k)
    name = (
        "the points baseline scoring uses without a champion"
        if current.metadata.get("status") == "no_model"
        else f"champion {current.version}"
    )
    decision = promotion_decision(
        HoldoutScore(mine["pr_auc"], mine["brier"]),
        HoldoutScore(theirs["pr_auc"], theirs["brier"]),
        margin=settings.model.promotion_margin_pr_auc,
        champion_name=name,
    )
    compared = {
        "champion": current.version,
        "rows": int(usable.sum()),
        "from": pd.Timestamp(rows["as_of"].min()).isoformat(),
        "challenger": {"pr_auc": mine["pr_auc"], "brier": mine["brier"]},
        "champion_metrics": {"pr_auc": theirs["pr_auc"], "brier": theirs["brier"]},
    }
    return decision.promote, decision.reason, compared


def _register_too_little_data(
    frame: pd.DataFrame, settings: Settings, meta: dict[str, Any], problem: str, timings: dict[str, float]
) -> NoReturn:
    """Register the points baseline marked too_little_data (champion only if no trained one) and refuse."""
    root = settings.model_registry_path
    points = fit_points(settings, frame if len(frame) and frame["label"].nunique() == 2 else None)
    columns = points.input_columns
    present = frame if not missing_columns(frame, columns) and len(frame) else None
    champion = champion_version(root)
    champion_is_fallback = champion is not None and bool(read_metadata(root, champion).get("is_fallback"))
    if champion is None or champion_is_fallback:
        promoted, decision = True, "no trained champion: scoring uses these points rules (fallback)"
    else:
        promoted, decision = (
            False,
            f"trained champion {champion} keeps scoring; this entry only records the refusal",
        )
    meta.update(
        {
            "status": TOO_LITTLE_DATA,
            "is_fallback": True,
            "reason": problem,
            "model": {"kind": "points", **points.describe()},
            "points": points.describe(),
            "features": {"numeric": columns, "categorical": [], "dtypes": dict.fromkeys(columns, "float64")},
            "reference_values": reference_values(present, columns, [])
            if present is not None
            else dict.fromkeys(columns, 0.0),
            "training_distribution": training_distribution(
                present, columns, points.predict_proba(present)[:, 1]
            )
            if present is not None
            else {},
            "metrics": {},
            "promotion": {"promoted": promoted, "reason": decision},
            "timings_s": timings,
        }
    )
    if len(frame):
        meta["training"]["label_end"] = (
            pd.Timestamp(frame["as_of"].max()) + pd.Timedelta(days=settings.horizon_days)
        ).isoformat()
    version = meta["version"]
    path = save_version(
        root,
        version,
        {"conversion": points, "fit": None},
        meta,
        render_fallback_report(meta),
        key=signing_key(settings),
    )
    if promoted:
        promote(root, version, settings, reason=decision, action="fallback")
    outcome = TrainOutcome(version, path, TOO_LITTLE_DATA, promoted, decision)
    raise TooLittleDataError(
        f"Training refused: {problem}. Registered {version} marked too_little_data ({decision}). "
        "Load more history, raise features.lookback_days, or lower model.min_conversions.",
        outcome,
    )


def train_on_frame(
    frame: pd.DataFrame,
    settings: Settings,
    *,
    window_end: datetime,
    created: datetime | None = None,
    timings: dict[str, float] | None = None,
    progress: Progress | None = None,
) -> TrainOutcome:
    """Everything after the training set is built (see the module docstring).

    `frame` is what `features.training.training_set` returns; `window_end` the end of data it saw.
    `progress` is told the steps after the training set (TRAIN_STEPS) as they start, then the end; a
    refusal for too little data ends it early.
    """
    started = time.perf_counter()
    timings = dict(timings or {})
    numeric, categorical = model_columns(settings)
    absent = missing_columns(frame, [*KEY_COLUMNS, *numeric, *categorical])
    if absent:
        raise DataError(
            f"The training set ({len(frame)} rows) lacks {', '.join(absent)}. Build it with "
            "`pql train` (features.training.training_set) under the same settings."
        )
    created = created or datetime.now(UTC).replace(tzinfo=None)
    fingerprint = data_fingerprint(frame, [*numeric, *categorical])
    meta: dict[str, Any] = {
        "version": new_version(created, fingerprint),
        "created": created,
        "training": {**_window(frame, settings, window_end), "fingerprint": fingerprint},
        "settings": _settings_used(settings),
        "libraries": library_versions(),
    }
    converting = meta["training"]["converting_accounts"]
    if converting < settings.model.min_conversions:
        _register_too_little_data(
            frame, settings, meta, too_few_converters(meta["training"], settings), timings
        )
    try:
        split = out_of_time_split(frame["as_of"], settings.horizon_days)
    except DataError as exc:
        _register_too_little_data(frame, settings, meta, str(exc).rstrip("."), timings)
    train, test = frame[split.train_rows(frame)], frame[split.test_rows(frame)]
    for part, rows in (("training snapshots", train), ("holdout snapshots", test)):
        if rows["label"].nunique() < 2:
            conversions = int(rows["label"].sum())
            problem = f"the {part} of the out-of-time split ({len(rows)} rows) hold {conversions} conversions"
            _register_too_little_data(frame, settings, meta, problem, timings)

    if not usable_columns(train, numeric, categorical, settings).columns:
        problem = (
            f"no candidate feature takes more than one value in the {len(train)} training rows, so there "
            "is nothing to learn from (see `pql inspect` for what the source holds)"
        )
        _register_too_little_data(frame, settings, meta, problem, timings)

    clock = time.perf_counter()
    _step(progress, "candidate models")
    candidate = choose_candidate(train, settings, _folds_of(progress, "candidate models"))
    timings["candidates_s"] = time.perf_counter() - clock
    _step(progress, "model and baselines")
    fitted = _fit_all(train, settings, timings, candidate.make_pipeline)
    numeric, categorical = fitted.columns.numeric, fitted.columns.categorical
    clock = time.perf_counter()
    _step(progress, "holdout metrics")
    probabilities = _probabilities(fitted, test)
    uncalibrated = fitted.model.base.predict_proba(test)[:, 1]
    same_as = ["logreg"] if candidate.chosen == "logistic_regression" else []
    metrics = _holdout_metrics(test, probabilities, uncalibrated, settings, same_as)
    metrics["calibration"]["method"] = fitted.model.calibration["method"]
    importance = _importance(fitted.model.base, test, settings, fitted.columns)
    timings["evaluation_s"] = time.perf_counter() - clock
    clock = time.perf_counter()
    _step(progress, "rolling-origin folds")
    metrics["folds"] = _fold_metrics(
        frame,
        split,
        settings,
        {name: metrics["holdout"][name]["pr_auc"] for name in probabilities},
        candidate.make_pipeline,
        _folds_of(progress, "rolling-origin folds"),
    )
    timings["folds_s"] = time.perf_counter() - clock
    _step(progress, "champion comparison")
    promoted, reason, compared = _champion_comparison(test, probabilities["model"], settings)

    fit_numeric, fit_categorical = fit_columns(settings, fitted.columns)
    meta["training"].update({"split": split.describe(), "label_end": split.train_label_end.isoformat()})
    meta.update(
        {
            "status": TRAINED,
            "is_fallback": False,
            "model": {
                "kind": f"{CANDIDATE_NAMES[candidate.chosen]} in a Pipeline, sigmoid-calibrated on a later "
                "slice",
                "candidate": candidate.describe(),
                "booster_params": BOOSTER_PARAMS if candidate.chosen == DEFAULT_CANDIDATE else None,
                "calibration": fitted.model.calibration,
                "fit_model_calibration": fitted.fit.calibration if fitted.fit else None,
            },
            "features": {
                "numeric": numeric,
                "categorical": categorical,
                "dtypes": {column: str(frame[column].dtype) for column in [*numeric, *categorical]},
                "fit": {"numeric": fit_numeric, "categorical": fit_categorical},
                "left_out": fitted.columns.left_out,
            },
            "metrics": metrics,
            "importance": importance.to_dict(orient="records"),
            "points": fitted.baselines["points"].describe(),
            "reference_values": reference_values(train, numeric, categorical),
            "training_distribution": training_distribution(train, numeric, probabilities["model"]),
            "promotion": {"promoted": promoted, "reason": reason, "compared_on": compared},
        }
    )
    clock = time.perf_counter()
    _step(progress, "report and registry")
    data = ReportData(holdout_of(test), probabilities, uncalibrated, importance)
    report = render_report(meta, data)
    timings["report_s"] = time.perf_counter() - clock
    timings["total_s"] = timings.get("training_set_s", 0.0) + time.perf_counter() - started
    meta["timings_s"] = timings
    root = settings.model_registry_path
    artifact = {"conversion": fitted.model.estimator, "fit": fitted.fit.estimator if fitted.fit else None}
    path = save_version(root, meta["version"], artifact, meta, report, key=signing_key(settings))
    if promoted:
        promote(root, meta["version"], settings, reason=reason, action="auto-promote")
    report_progress(progress, len(TRAIN_STEPS), len(TRAIN_STEPS), "registered")
    summary = {**_summary(metrics), "model_choice": _choice_line(candidate.describe())}
    return TrainOutcome(meta["version"], path, TRAINED, promoted, reason, summary)

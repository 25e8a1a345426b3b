"""The model family is chosen by the data: candidates compared on rolling-origin folds inside the
training window, never on the final holdout (which stays for the honest comparison with baselines).

A gradient-boosted pipeline wins on rich data; a regularised logistic regression often wins on small or
sparse data (few converters, few informative columns). Each fold fits every candidate on the fold's
training snapshots over the columns that carry information there, the way the final model is fitted
(early stopping and calibration on the fold's latest snapshots), and scores PR-AUC on its later test
block. Folds are weighted by their training rows (the latest folds train on most, like the final
model), and another family replaces the default only when its weighted mean PR-AUC is better by
`model.promotion_margin_pr_auc`: a switch needs evidence, a tie keeps the default. When no fold inside
the window can compare them (too few snapshots, or one class only), the default is kept and the report
says so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score

from pql.config import Settings
from pql.db import DataError
from pql.features.catalog import model_columns
from pql.models.backtest import rolling_origin_splits
from pql.models.baselines import logistic_pipeline
from pql.models.calibration import calibrated_fit
from pql.models.columns import usable_columns
from pql.models.pipeline import model_pipeline
from pql.progress import Progress, report

PipelineFactory = Callable[[Sequence[str], Sequence[str], int], Any]
DEFAULT_CANDIDATE = "gradient_boosting"
CANDIDATES: dict[str, PipelineFactory] = {
    "gradient_boosting": model_pipeline,
    "logistic_regression": logistic_pipeline,
}
CANDIDATE_NAMES = {
    "gradient_boosting": "gradient-boosted trees",
    "logistic_regression": "regularised logistic regression",
}


@dataclass(frozen=True)
class CandidateChoice:
    """The winning candidate, why, and each candidate's PR-AUC per inner fold."""

    chosen: str
    reason: str
    folds: list[dict[str, Any]] = field(default_factory=list)

    @property
    def make_pipeline(self) -> PipelineFactory:
        return CANDIDATES[self.chosen]

    def describe(self) -> dict[str, Any]:
        return {"chosen": self.chosen, "reason": self.reason, "folds": self.folds}


def _fold_scores(train: pd.DataFrame, test: pd.DataFrame, settings: Settings) -> dict[str, float]:
    """Each candidate fitted exactly as the final model will be (`calibrated_fit`), scored on `test`."""
    choice = usable_columns(train, *model_columns(settings), settings)
    scores = {}
    for name in settings.model.candidates:
        fitted = calibrated_fit(
            train, CANDIDATES[name], choice.numeric, choice.categorical, settings.model.seed
        )
        probability = fitted.estimator.predict_proba(test)[:, 1]
        scores[name] = float(average_precision_score(test["label"].to_numpy(), probability))
    return scores


def choose_candidate(
    train: pd.DataFrame, settings: Settings, progress: Progress | None = None
) -> CandidateChoice:
    """Compare every candidate on rolling-origin folds of `train` (the training part of the main split);
    `progress` is told the folds done, of all of them."""
    candidates = list(dict.fromkeys(settings.model.candidates))
    if len(candidates) == 1:
        return CandidateChoice(candidates[0], "the only family in model.candidates")
    default = DEFAULT_CANDIDATE if DEFAULT_CANDIDATE in candidates else candidates[0]
    try:
        splits = rolling_origin_splits(train["as_of"], settings.horizon_days)
    except DataError:
        splits = []
    folds = []
    for done, split in enumerate(splits):
        report(progress, done, len(splits))
        fold_train, fold_test = train[split.train_rows(train)], train[split.test_rows(train)]
        if fold_train["label"].nunique() < 2 or fold_test["label"].nunique() < 2:
            continue
        scores = _fold_scores(fold_train, fold_test, settings)
        folds.append({**split.describe(), "train_rows": len(fold_train), "pr_auc": scores})
    report(progress, len(splits), len(splits))
    if not folds:
        return CandidateChoice(
            default,
            f"no fold inside the training window had converters on both sides to compare the candidates "
            f"({len(splits)} possible); kept the default, {CANDIDATE_NAMES[default]}",
        )
    weights = [fold["train_rows"] for fold in folds]
    means = {
        name: float(np.average([fold["pr_auc"][name] for fold in folds], weights=weights))
        for name in candidates
    }
    margin = settings.model.promotion_margin_pr_auc
    best = max(means, key=lambda name: means[name])
    chosen = best if means[best] >= means[default] + margin else default
    others = ", ".join(
        f"{means[name]:.3f} for {CANDIDATE_NAMES[name]}" for name in candidates if name != chosen
    )
    over = f"over {len(folds)} rolling-origin fold(s) inside the training window, weighted by training rows"
    if chosen == best:
        best_mean = f"the best mean PR-AUC, {means[chosen]:.3f}"
        reason = f"{CANDIDATE_NAMES[chosen]} had {best_mean}, {over} (against {others})"
    else:
        reason = (
            f"{CANDIDATE_NAMES[best]} was not better than the default by the margin {margin} "
            f"({means[best]:.3f} against {means[default]:.3f}, {over}); kept {CANDIDATE_NAMES[default]}"
        )
    return CandidateChoice(chosen, reason, folds)

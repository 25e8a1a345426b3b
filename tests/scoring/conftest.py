"""A real, small scikit-learn model trained on a synthetic feature frame shaped like the builder's."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from rich.console import Console
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder
from threadpoolctl import threadpool_limits

from pql.commands import pqls
from pql.config import Settings
from pql.features.catalog import key_event_columns, model_columns
from pql.models.encoded import EncodedModel, encoded_model

AS_OF = datetime(2024, 6, 3)
FIT_COLUMNS = (["employees"], ["industry", "country"])
INDUSTRIES = ["software", "retail", "finance", "health", "education"]
COUNTRIES = ["US", "DE", "FR", "GB", "BR"]


def synthetic_features(settings: Settings, n: int, seed: int) -> pd.DataFrame:
    """Accounts on free and trial plans whose activity, team and firmographics drive conversion."""
    rng = np.random.default_rng(seed)
    numeric, _ = model_columns(settings)
    activity = rng.lognormal(0.0, 1.0, n)
    users = 1 + rng.poisson(2.0 * activity)
    events_28d = rng.poisson(25 * activity)
    events_7d = rng.binomial(events_28d, 0.3)
    plan = np.where(rng.random(n) < 0.3, "trial", "free")
    in_trial = plan == "trial"
    days_in_trial = np.where(in_trial, rng.uniform(0, 14, n), np.nan)
    frame = {
        "account_id": [f"acc-{seed}-{i:05d}" for i in range(n)],
        "as_of": AS_OF,
        "plan": plan,
        "is_eligible": True,
        "count_events_1d": rng.binomial(events_7d, 0.15),
        "count_events_7d": events_7d,
        "count_events_28d": events_28d,
        "count_active_days_7d": np.minimum(7, rng.poisson(2 * activity)),
        "count_active_days_28d": np.minimum(28, rng.poisson(7 * activity)),
        "count_users": users,
        "count_active_users_7d": rng.binomial(users, np.clip(0.3 * activity, 0, 1)),
        "count_active_users_28d": rng.binomial(users, np.clip(0.5 * activity, 0, 1)),
        "count_new_users_14d": rng.binomial(users, 0.1),
        "count_new_users_28d": rng.binomial(users, 0.2),
        "count_distinct_event_types_28d": np.minimum(12, rng.poisson(3 * activity)),
        "days_since_last_event": np.where(events_28d > 0, rng.uniform(0, 7, n), rng.uniform(28, 90, n)),
        "days_since_last_key_event": rng.uniform(0, 60, n),
        "ratio_momentum_7d_vs_prior_21d": rng.lognormal(0, 0.5, n),
        "days_tenure": rng.uniform(1, 365, n),
        "days_in_trial": days_in_trial,
        "days_left_in_trial": np.where(in_trial, 14 - days_in_trial, np.nan),
        "employees": np.where(rng.random(n) < 0.1, np.nan, np.round(rng.lognormal(3, 1.2, n))),
        "industry": rng.choice(INDUSTRIES, n),
        "country": rng.choice(COUNTRIES, n),
    }
    for key in key_event_columns(settings):
        rate = 2.0 if key.event.name == "hit_usage_limit" else 0.8
        frame[key.column(28)] = rng.poisson(rate * activity)
        frame[key.column(7)] = rng.binomial(frame[key.column(28)], 0.35)
    features = pd.DataFrame(frame)
    features["share_users_active_28d"] = features["count_active_users_28d"] / features["count_users"]
    missing = [c for c in numeric if c not in features]
    assert not missing, f"synthetic frame lacks catalog features {missing}"
    return features


def synthetic_labels(features: pd.DataFrame, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    log_odds = (
        -4.0
        + 0.9 * np.sqrt(features["count_active_users_7d"])
        + 0.5 * np.minimum(features["count_hit_usage_limit_7d"], 4)
        + 0.8 * (features["count_view_pricing_7d"] > 0)
        + 0.35 * np.log1p(features["employees"].fillna(10))
        + 0.6 * features["industry"].eq("software")
        - 0.04 * features["days_since_last_event"]
        + 0.5 * features["plan"].eq("trial")
    )
    return (rng.random(len(features)) < 1 / (1 + np.exp(-log_odds))).astype(int)


def _pipeline(numeric: list[str], categorical: list[str]) -> Pipeline:
    encoder = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan)
    columns = ColumnTransformer([("categorical", encoder, categorical), ("numeric", "passthrough", numeric)])
    booster = HistGradientBoostingClassifier(
        max_iter=80, learning_rate=0.1, categorical_features=list(range(len(categorical))), random_state=0
    )
    return Pipeline([("columns", columns), ("booster", booster)])


@dataclass
class TrainedModel:
    """A fitted conversion pipeline and fit pipeline, exposed the way `models.registry.LoadedModel` is."""

    conversion: Pipeline
    fit: Pipeline
    numeric_columns: list[str]
    categorical_columns: list[str]
    reference_values: dict[str, object]
    version: str = "test-model-1"
    is_fallback: bool = False
    fit_columns: tuple[list[str], list[str]] = field(default=FIT_COLUMNS)

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        if features.empty:
            return np.zeros(0)
        return self.conversion.predict_proba(features[self.numeric_columns + self.categorical_columns])[:, 1]

    def encoded(self) -> EncodedModel | None:
        return encoded_model(self.conversion)

    def predict_fit_proba(self, features: pd.DataFrame) -> np.ndarray:
        if features.empty:
            return np.zeros(0)
        return self.fit.predict_proba(features[self.fit_columns[0] + self.fit_columns[1]])[:, 1]


def train_model(settings: Settings, rows: int = 4000, seed: int = 7) -> TrainedModel:
    numeric, categorical = model_columns(settings)
    train = synthetic_features(settings, rows, seed)
    label = synthetic_labels(train, seed)
    conversion = _pipeline(numeric, categorical).fit(train, label)
    fit = _pipeline(*FIT_COLUMNS).fit(train, label)
    reference: dict[str, object] = {c: float(train[c].median()) for c in numeric}
    reference |= {c: train[c].mode().iloc[0] for c in categorical}
    return TrainedModel(conversion, fit, numeric, categorical, reference)


@pytest.fixture(scope="session", autouse=True)
def _one_thread_per_model() -> Iterator[None]:
    """Small models predict fastest on one thread; OpenMP spinning only slows them on a busy machine."""
    with threadpool_limits(1):
        yield


@pytest.fixture(scope="session")
def model_settings() -> Settings:
    """Default settings, ignoring any PQL_* variable of the developer's shell."""
    names = [k for k in os.environ if k.startswith("PQL_") and k != "PQL_TEST_POSTGRES_URL"]
    saved = {k: os.environ.pop(k) for k in names}
    try:
        return Settings()
    finally:
        os.environ.update(saved)


@pytest.fixture(scope="session")
def trained_model(model_settings: Settings) -> TrainedModel:
    return train_model(model_settings)


@pytest.fixture(scope="session")
def scoring_features(model_settings: Settings) -> pd.DataFrame:
    """400 accounts the model has never seen."""
    return synthetic_features(model_settings, 400, seed=11)


@pytest.fixture(scope="session")
def paid_features(scoring_features: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """`scoring_features` with every fourth account on a paid plan, so ineligible as the feature
    builder marks it, and the mask of those accounts."""
    paid = np.arange(len(scoring_features)) % 4 == 0
    plan = np.where(paid, "paid", scoring_features["plan"])
    return scoring_features.assign(plan=plan, is_eligible=~paid), paid


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> typer.Typer:
    """A CLI with only `pql pqls`, printing to a 160-column terminal so reasons stay on one line."""
    monkeypatch.setattr(pqls, "console", Console(width=160))
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """pql"""

    pqls.register(app)
    return app


@pytest.fixture
def databases(tmp_path: Path) -> tuple[str, str]:
    """Separate source and CRM databases named in ./pql.toml (the test's working directory)."""
    source, crm = f"duckdb:///{tmp_path / 'source.duckdb'}", f"sqlite:///{tmp_path / 'crm.sqlite'}"
    Path("pql.toml").write_text(f'source_url = "{source}"\ncrm_url = "{crm}"\n', encoding="utf-8")
    return source, crm

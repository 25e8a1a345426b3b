"""One run's rows for the CRM: scores, reasons and the PQL rules put together (pure, no I/O)."""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from pql.config import Settings
from pql.scoring.model_protocol import ScoringModel
from pql.scoring.reasons import reasons_frame
from pql.scoring.rules import apply_pql_rules
from pql.scoring.scores import score_frame
from pql.scoring.talking_points import pql_talking_points


def pql_rows(
    features: pd.DataFrame,
    model: ScoringModel,
    crm: pd.DataFrame,
    previous: pd.DataFrame,
    settings: Settings,
    as_of: datetime,
) -> pd.DataFrame:
    """Every scored account with score, tier, grade, reasons, PQL flag, routing, playbook and, for a
    PQL, its talking point (an ineligible account has no tier, grade or reasons, and an
    `ineligible_reason`).

    `features` from `features.builder.build_features` for one `as_of`; `crm` from
    `scoring.crm.crm_snapshot`; `previous` from `scoring.writeback.previous_scores`.
    The result is what `scoring.writeback.write_run` takes (plus pql_status, which it ignores).
    """
    scored = score_frame(features, model, settings)
    reasons = reasons_frame(features, model, settings, probability=scored["probability"].to_numpy())
    # Both frames follow the features' row order.
    scored = scored.assign(**{name: reasons[name].to_numpy() for name in ("reasons_json", "reasons_text")})
    rows = apply_pql_rules(scored, crm, previous, settings, as_of)
    return rows.assign(talking_point=pql_talking_points(rows, settings))

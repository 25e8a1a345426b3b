"""Why an account scores what it scores, measured on the model itself.

For each feature group (a signal a rep recognises: team activity, usage limits, recency, ...) the
group's columns are set to the population reference values the model was trained with (median or
mode) and the account is scored again. The drop in probability is the group's impact: positive when
the account's own values raise its score, negative when they lower it. Each group costs one
prediction over all accounts at once; rows already at the reference are not re-scored (their impact
is exactly zero). A pipeline model encodes the accounts once and answers every group from the encoded
rows (`models.encoded`); any other model is asked through `predict_proba` on modified frames.

Every eligible account gets up to 3 raising and 2 lowering reasons. A group whose neutralisation
changes the account's odds by less than MIN_LOG_ODDS (1%) is noise and left out; the threshold is on
the odds rather than on probability points so that accounts near 0 or 1 still get their reasons.
Ineligible accounts (on a paid plan) are not measured at all and get none: sales never works them.

- `reasons_json`: a list, raising reasons first (largest first), then lowering ones (most negative
  first); each `{"group", "direction": "up"|"down", "impact_points", "feature", "value",
  "percentile"}`. `impact_points` is the probability drop, in points, when the group is neutralised;
  `feature` is the group's most telling feature for this account (the one where it stands furthest
  from the middle of the accounts on its plan), `value` the account's value of it and `percentile`
  (0-100, null for a category) its standing among the eligible accounts on the same plan in this run.
- `reasons_text`: one line per reason in the same order, "+ " or "- " then the phrase.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from scipy.special import logit

from pql.config import Settings
from pql.db import DataError
from pql.features.catalog import KeyEventColumns, feature_specs, key_event_columns
from pql.scoring.model_protocol import ScoringModel
from pql.scoring.phrases import configured_phrases, peer_shares, rendered
from pql.scoring.scores import eligible_rows, require_model_columns

RAISING = 3
LOWERING = 2
MIN_LOG_ODDS = 0.01
_EPS = 1e-12
# Through frames, re-score only the rows that differ from the reference when they are at most this share.
SUBSET_SHARE = 0.7
UP, DOWN = "up", "down"


def reason_groups(model: ScoringModel, settings: Settings) -> dict[str, list[str]]:
    """Reason group -> the model columns in it, in catalog order (a column the catalog does not know
    is a group of its own)."""
    group_of = {spec.name: spec.group for spec in feature_specs(settings)}
    groups: dict[str, list[str]] = {}
    for column in [*model.numeric_columns, *model.categorical_columns]:
        groups.setdefault(group_of.get(column, column), []).append(column)
    return groups


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _differs(features: pd.DataFrame, columns: Sequence[str], reference: dict[str, object]) -> np.ndarray:
    """Rows where any of `columns` is not at its reference value (missing equals missing)."""
    differs = np.zeros(len(features), dtype=bool)
    for column in columns:
        values, ref = features[column], reference[column]
        if _is_missing(ref):
            differs |= values.notna().to_numpy()
        else:
            differs |= (values.isna() | values.ne(ref)).to_numpy(dtype=bool)
    return differs


def _neutralised(
    features: pd.DataFrame, columns: Sequence[str], reference: dict[str, object]
) -> pd.DataFrame:
    return features.assign(**{c: np.nan if _is_missing(reference[c]) else reference[c] for c in columns})


def _what_if(
    frame: pd.DataFrame, model: ScoringModel, reference: dict[str, object]
) -> Callable[[np.ndarray, Sequence[str]], np.ndarray]:
    """predict(rows, columns): the model's probability for the `rows` (a mask) of `frame` with `columns`
    set to their reference values. Encodes the frame once when the model can be split (models.encoded)."""
    encoded = model.encoded()
    if encoded is None:

        def through_frames(rows: np.ndarray, columns: Sequence[str]) -> np.ndarray:
            # Selecting most rows of a frame costs more than scoring the few extra ones.
            if rows.sum() > SUBSET_SHARE * len(frame):
                return model.predict_proba(_neutralised(frame, columns, reference))[rows]
            return model.predict_proba(_neutralised(frame[rows], columns, reference))

        return through_frames
    matrix = encoded.matrix(frame)
    reference_row = encoded.encoded_row({c: reference[c] for c in encoded.positions})

    def through_matrix(rows: np.ndarray, columns: Sequence[str]) -> np.ndarray:
        changed = matrix[rows]
        at = encoded.columns_at(columns)
        changed[:, at] = reference_row[at]
        return encoded.predict_proba(changed)

    return through_matrix


@dataclass(frozen=True)
class _WhatIfs:
    """The rows reasons are measured on, their probability, and the what-if predictor over them."""

    frame: pd.DataFrame
    probability: np.ndarray
    reference: dict[str, object]
    predict: Callable[[np.ndarray, Sequence[str]], np.ndarray] | None

    def impacts(self, rows: np.ndarray, columns: Sequence[str]) -> np.ndarray:
        """Probability drop of `rows` (a mask) when `columns` go to their reference values; exactly 0
        for rows already there."""
        drop = np.zeros(int(rows.sum()))
        differs = _differs(self.frame, columns, self.reference)
        changed = differs[rows]
        if changed.any() and self.predict is not None:
            chosen = rows & differs
            drop[changed] = self.probability[chosen] - self.predict(chosen, columns)
        return drop


def _what_ifs(
    features: pd.DataFrame,
    model: ScoringModel,
    groups: dict[str, list[str]],
    probability: np.ndarray | None,
    measured: np.ndarray,
) -> _WhatIfs:
    """What-ifs over `features`; only the `measured` rows are ever predicted (the others get a zero
    probability unless `probability` gives theirs)."""
    reference = model.reference_values
    unknown = [c for columns in groups.values() for c in columns if c not in reference]
    if unknown:
        raise DataError(
            f"model {model.version} has no reference value for {', '.join(unknown)}, so reasons cannot "
            "be measured for them. Retrain the model to record its reference values."
        )
    # Only what the model (and a partitioned model, by account_id) reads: cheaper copies per group.
    kept = [c for c in ("account_id", *model.numeric_columns, *model.categorical_columns) if c in features]
    frame = features[kept].reset_index(drop=True)
    if probability is None:
        probability = np.zeros(len(frame))
        if measured.any():  # a model may refuse to predict no rows at all
            probability[measured] = model.predict_proba(frame[measured])
    probability = np.asarray(probability, dtype=float)
    predict = None
    if measured.all():
        predict = _what_if(frame, model, reference)
    elif measured.any():
        # Questions only ever concern measured rows: the others are never encoded nor predicted.
        inner = _what_if(frame[measured].reset_index(drop=True), model, reference)

        def predict(rows: np.ndarray, columns: Sequence[str]) -> np.ndarray:
            return inner(rows[measured], columns)

    return _WhatIfs(frame, probability, reference, predict)


def group_impacts(
    features: pd.DataFrame,
    model: ScoringModel,
    groups: dict[str, list[str]],
    probability: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(probability per row, impact per row and group): probability minus the probability with the
    group neutralised to its reference values. Pass `probability` when it is already known."""
    return eligible_impacts(features, model, groups, np.ones(len(features), dtype=bool), probability)


def _group_impacts(what_ifs: _WhatIfs, groups: dict[str, list[str]], measured: np.ndarray) -> np.ndarray:
    impacts = np.zeros((len(what_ifs.frame), len(groups)))
    if measured.any():
        for j, columns in enumerate(groups.values()):
            impacts[measured, j] = what_ifs.impacts(measured, columns)
    return impacts


def column_impacts(
    what_ifs: _WhatIfs, rows: np.ndarray, columns: Sequence[str], up: np.ndarray
) -> np.ndarray:
    """For `rows` (indices, ascending) and each of `columns` alone: the impact in the reason's direction
    (positive when neutralising that column alone moves the score the way the reason says)."""
    mask = np.zeros(len(what_ifs.frame), dtype=bool)
    mask[rows] = True
    sign = np.where(up, 1.0, -1.0)
    return np.column_stack([what_ifs.impacts(mask, [column]) * sign for column in columns])


def eligible_impacts(
    features: pd.DataFrame,
    model: ScoringModel,
    groups: dict[str, list[str]],
    eligible: np.ndarray,
    probability: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """`group_impacts` of the `eligible` rows only; the other rows get a zero impact in every group
    (so no reason) and, unless `probability` gives theirs, a zero probability."""
    what_ifs = _what_ifs(features, model, groups, probability, eligible)
    return what_ifs.probability, _group_impacts(what_ifs, groups, eligible)


def top_reasons(probability: np.ndarray, impacts: np.ndarray) -> np.ndarray:
    """Per row, group indices of the top 3 raising then top 2 lowering reasons; -1 where there is none.

    Within a row, ordering by probability drop and by log-odds drop is the same; the log-odds only
    decide what is too small to mention.
    """
    p = np.clip(probability, _EPS, 1 - _EPS)[:, None]
    log_odds = logit(p) - logit(np.clip(p - impacts, _EPS, 1 - _EPS))
    slots = np.full((len(impacts), RAISING + LOWERING), -1, dtype=np.int64)
    up = np.argsort(-impacts, axis=1, kind="stable")[:, :RAISING]
    down = np.argsort(impacts, axis=1, kind="stable")[:, :LOWERING]
    up_odds = np.take_along_axis(log_odds, up, axis=1)
    down_odds = np.take_along_axis(log_odds, down, axis=1)
    slots[:, : up.shape[1]] = np.where(up_odds > MIN_LOG_ODDS, up, -1)
    slots[:, RAISING : RAISING + down.shape[1]] = np.where(down_odds < -MIN_LOG_ODDS, down, -1)
    return slots


def _json_numbers(values: np.ndarray, decimals: int) -> pa.StringArray:
    """JSON number literals ('null' for missing) for a float array, formatted in one vectorised cast."""
    rounded = np.round(np.asarray(values, dtype=float), decimals)
    return pc.cast(pa.array(rounded, from_pandas=True), pa.string()).fill_null("null")


def _json_strings(values: np.ndarray) -> pa.StringArray:
    """JSON string literals ('null' for missing), each distinct value encoded once."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    encoded = pa.array([encode_basestring(str(value)) for value in uniques] + ["null"], pa.string())
    return encoded.take(np.where(codes < 0, len(uniques), codes))


def _concat(*parts: str | pa.Array) -> pa.Array:
    """Element-wise concatenation of string arrays and constants (no part may be null)."""
    return pc.binary_join_element_wise(*(pa.scalar(p) if isinstance(p, str) else p for p in parts), "")


def _either(flags: np.ndarray, yes: str, no: str) -> pa.Array:
    return pa.array([no, yes], pa.string()).take(flags.astype(np.int8))


def _column_values(features: pd.DataFrame, column: str, numeric: bool) -> np.ndarray:
    if numeric:
        return pd.to_numeric(features[column], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    return features[column].astype(object).to_numpy()


@dataclass(frozen=True)
class _Peers:
    """Each account's plan, as names (for phrases) and as codes (for fast comparisons)."""

    names: np.ndarray
    codes: np.ndarray

    @classmethod
    def of(cls, features: pd.DataFrame, eligible: np.ndarray) -> _Peers:
        """Peers among the eligible accounts: an ineligible one gets code -1, which no plan has."""
        plans = features["plan"] if "plan" in features else pd.Series("all", index=features.index)
        codes, names = pd.factorize(plans, use_na_sentinel=False)
        return cls(np.asarray(names, dtype=object)[codes], np.where(eligible, codes, -1))


def _evidence(
    features: pd.DataFrame,
    columns: Sequence[str],
    numeric: set[str],
    rows: np.ndarray,
    peers: _Peers,
    key_events: Sequence[KeyEventColumns],
    phrases: dict[str, str],
    moved: np.ndarray | None,
) -> tuple[list[str], np.ndarray, pa.Array]:
    """For `rows`: the distinct phrases and each row's phrase index, and the JSON fields of its
    headline feature: the group's feature that alone moved the score most the reason's way (`moved`,
    rows x columns), so the number quoted is the one that moved it; where no single feature did (the
    group acts only together), the feature where the account stands furthest from its peers."""
    extremeness = np.full((len(rows), len(columns)), -0.5)
    values, shares = [], []
    for k, column in enumerate(columns):
        every = _column_values(features, column, column in numeric)
        values.append(every)
        if column in numeric:
            top, bottom = peer_shares(every, peers.codes, rows)
            middle = ((1 - top) + bottom) / 2
            extremeness[:, k] = np.where(np.isnan(middle), -1.0, np.abs(middle - 0.5))
        else:
            top = bottom = middle = np.full(len(rows), np.nan)
        shares.append((top, bottom, middle))
    headline = np.argmax(extremeness, axis=1)
    if moved is not None:
        alone = moved.max(axis=1) > 0
        headline = np.where(alone, np.argmax(moved, axis=1), headline)
    distinct: list[str] = []
    code = np.zeros(len(rows), dtype=np.int64)
    percentile = np.full(len(rows), np.nan)
    shown = pa.array(["null"] * len(rows), pa.string())
    for k, column in enumerate(columns):
        pick = headline == k
        if pick.any():
            picked_values = values[k][rows[pick]]
            literal = _json_numbers(picked_values, 4) if column in numeric else _json_strings(picked_values)
            shown = pc.replace_with_mask(shown, pa.array(pick), literal)
            top, bottom, middle = (share[pick] for share in shares[k])
            said, codes = rendered(
                column, picked_values, peers.names[rows[pick]], top, bottom, key_events, phrases
            )
            code[pick] = codes + len(distinct)
            distinct += said
            percentile[pick] = middle * 100
    fields = [
        ',"feature":"',
        pa.array(list(columns), pa.string()).take(headline),
        '","value":',
        shown,
        ',"percentile":',
        _json_numbers(percentile, 1),
    ]
    return distinct, code, fields


def _per_row(rows: np.ndarray, slots: np.ndarray, pieces: pa.Array, n: int, separator: str) -> pa.Array:
    """Per row 0..n-1 (each with at least one piece), its pieces in slot order joined by `separator`."""
    order = np.lexsort((slots, rows))
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(np.bincount(rows, minlength=n), out=offsets[1:])
    return pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), pieces.take(order)), separator)


def reasons_frame(
    features: pd.DataFrame,
    model: ScoringModel,
    settings: Settings,
    *,
    probability: np.ndarray | None = None,
) -> pd.DataFrame:
    """account_id, reasons_json, reasons_text: up to 3 raising and 2 lowering reasons per eligible
    account; an ineligible one (`is_eligible` false) gets "[]" and "" without being measured.

    `probability`, when given, is the model's probability for the same rows (from `score_frame`),
    which saves one prediction. Strings are built column-wise with Arrow, never account by account.
    """
    require_model_columns(features, model)
    frame = features.reset_index(drop=True)
    n = len(frame)
    groups = reason_groups(model, settings)
    eligible = eligible_rows(frame)
    what_ifs = _what_ifs(frame, model, groups, probability, eligible)
    probability, impacts = what_ifs.probability, _group_impacts(what_ifs, groups, eligible)
    slots = top_reasons(probability, impacts)
    filled = slots >= 0
    # A row's first piece opens its JSON list and its last closes it; rows without reasons get "[]".
    first = filled & (np.cumsum(filled, axis=1) == 1)
    last = filled & (np.cumsum(filled[:, ::-1], axis=1)[:, ::-1] == 1)
    peers = _Peers.of(frame, eligible)
    numeric = set(model.numeric_columns)
    key_events = key_event_columns(settings)
    phrases = configured_phrases(settings)
    rows, places, texts, fragments = [], [], [], []
    for j, (group, columns) in enumerate(groups.items()):
        chosen, place = np.nonzero(slots == j)
        if len(chosen) == 0:
            continue
        up = place < RAISING
        moved = column_impacts(what_ifs, chosen, columns, up) if len(columns) > 1 else None
        distinct, code, fields = _evidence(frame, columns, numeric, chosen, peers, key_events, phrases, moved)
        signed = [f"{sign}{phrase}" for sign in ("- ", "+ ") for phrase in distinct]
        rows.append(chosen)
        places.append(place)
        texts.append(pa.array(signed, pa.string()).take(code + len(distinct) * up))
        fragments.append(
            _concat(
                _either(first[chosen, place], "[", ""),
                f'{{"group":"{group}","direction":"',
                _either(up, UP, DOWN),
                '","impact_points":',
                _json_numbers(impacts[chosen, j] * 100, 2),
                *fields,
                "}",
                _either(last[chosen, place], "]", ""),
            )
        )
    empty = np.flatnonzero(~filled.any(axis=1))
    rows.append(empty)
    places.append(np.zeros(len(empty), dtype=np.int64))
    texts.append(pa.array([""], pa.string()).take(np.zeros(len(empty), dtype=np.int64)))
    fragments.append(pa.array(["[]"], pa.string()).take(np.zeros(len(empty), dtype=np.int64)))
    all_rows, all_places = np.concatenate(rows), np.concatenate(places)
    return pd.DataFrame(
        {
            "account_id": frame["account_id"],
            "reasons_json": _per_row(all_rows, all_places, pa.concat_arrays(fragments), n, ",").to_pandas(),
            "reasons_text": _per_row(all_rows, all_places, pa.concat_arrays(texts), n, "\n").to_pandas(),
        }
    )

"""Talking points: a short talk track per reason group, filled with the values of the account's top
raising reason, configurable group by group, and safe to render."""

from __future__ import annotations

import json
from datetime import datetime

import pandas as pd
import pytest
import sqlalchemy as sa

from pql.config import ConfigError, load_settings
from pql.db import create_engine
from pql.features.catalog import KEY_EVENT_GROUPS, feature_specs
from pql.schema import create_tables, output_tables
from pql.scoring.rows import pql_rows
from pql.scoring.talking_points import DEFAULT_TALKING_POINTS, talk_tracks, talking_point
from pql.scoring.writeback import pql_list, write_run

AS_OF = datetime(2024, 6, 3)

USAGE_LIMIT = {
    "group": "usage_limits",
    "direction": "up",
    "impact_points": 6.1,
    "feature": "count_hit_usage_limit_7d",
    "value": 3,
    "percentile": 96.2,
}
USAGE_LIMIT_LINE = "+ hit the usage limit 3 times in the last 7 days (top 5% of free accounts)"


def reason(group: str, value: object, *, direction: str = "up", percentile: float | None = 50.0) -> dict:
    return {
        "group": group,
        "direction": direction,
        "impact_points": 2.0 if direction == "up" else -2.0,
        "feature": group,
        "value": value,
        "percentile": percentile,
    }


def say(reasons: list[tuple[dict, str]], **settings: object) -> str | None:
    """The talking point of an account with these (reasons_json entry, reasons_text line) pairs."""
    tracks = talk_tracks(load_settings(None, **settings))
    return talking_point(
        json.dumps([entry for entry, _ in reasons]), "\n".join(line for _, line in reasons), tracks
    )


def test_every_built_in_reason_group_has_a_default_talk_track() -> None:
    settings = load_settings(None)
    built_in = {spec.group for spec in feature_specs(settings) if spec.family != "attributes"}
    built_in |= set(KEY_EVENT_GROUPS.values())
    assert built_in - set(DEFAULT_TALKING_POINTS) == set()


def test_every_default_talk_track_is_a_valid_setting() -> None:
    settings = load_settings(None, scoring={"talking_points": DEFAULT_TALKING_POINTS})
    assert settings.scoring.talking_points == DEFAULT_TALKING_POINTS


def test_the_top_raising_reason_is_said_with_its_values() -> None:
    assert say([(USAGE_LIMIT, USAGE_LIMIT_LINE)]) == (
        "hit the usage limit 3 times: offer the plan that lifts it, before it stops their work"
    )


def test_a_configured_track_overrides_the_default_and_can_quote_every_value() -> None:
    track = "{times} ({value}, percentile {percentile}, {event}): {reason}. Offer the Team plan."
    said = say([(USAGE_LIMIT, USAGE_LIMIT_LINE)], scoring={"talking_points": {"usage_limits": track}})
    assert said == (
        "3 times (3, percentile 96, hit_usage_limit): hit the usage limit 3 times in the last 7 days "
        "(top 5% of free accounts). Offer the Team plan."
    )


def test_a_configured_track_leaves_the_other_groups_their_defaults() -> None:
    tracks = talk_tracks(load_settings(None, scoring={"talking_points": {"usage_limits": "offer Team"}}))
    assert tracks["usage_limits"].template == "offer Team"
    assert tracks["pricing_interest"].template == DEFAULT_TALKING_POINTS["pricing_interest"]


def test_an_unknown_placeholder_is_a_config_error_naming_the_key() -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(None, scoring={"talking_points": {"usage_limits": "hit the seat limit {seats} times"}})
    message = str(error.value)
    assert "'scoring.talking_points.usage_limits'" in message
    assert "unknown placeholder {seats}" in message and "{times}" in message


@pytest.mark.parametrize("template", ["{value.__class__}", "{value[0]}", "{value:>10}", "{value!r}", "{}"])
def test_a_placeholder_with_attribute_index_format_or_conversion_is_rejected(template: str) -> None:
    with pytest.raises(ConfigError, match=r"scoring\.talking_points\.usage_limits"):
        load_settings(None, scoring={"talking_points": {"usage_limits": template}})


def test_an_unbalanced_brace_is_a_config_error_saying_how_to_write_one() -> None:
    with pytest.raises(ConfigError, match=r"write a literal brace twice"):
        load_settings(None, scoring={"talking_points": {"usage_limits": "limit {times"}})


def test_a_track_for_a_group_the_settings_do_not_have_is_a_config_error() -> None:
    settings = load_settings(None, scoring={"talking_points": {"usage_limit": "offer Team"}})
    with pytest.raises(ConfigError, match=r"'usage_limit' is no reason group.*usage_limits"):
        talk_tracks(settings)


def test_a_value_is_quoted_as_text_and_never_read_as_a_template() -> None:
    industry = reason("industry", "{reason.__class__} {{x}}", percentile=None)
    said = say([(industry, "+ in the {reason.__class__} {{x}} industry")])
    assert said is not None and said.startswith("in {reason.__class__} {{x}}, like many accounts that buy")


def test_a_lowering_reason_is_never_the_talking_point() -> None:
    recency = reason("recency", 12.0, direction="down")
    said = say([(recency, "- no activity for 12 days"), (USAGE_LIMIT, USAGE_LIMIT_LINE)])
    assert said is not None and said.startswith("hit the usage limit 3 times")


def test_a_reason_with_nothing_to_talk_about_passes_to_the_next() -> None:
    not_in_trial = reason("trial", None, percentile=None)
    never_exported = reason("exports", 0)
    said = say(
        [(not_in_trial, "+ not in a trial"), (never_exported, "+ exported no report in the last 7 days")]
    )
    assert said is None
    assert say([(never_exported, "+ exported no report"), (USAGE_LIMIT, USAGE_LIMIT_LINE)]).startswith(
        "hit the usage limit 3 times"
    )


def test_a_track_quoting_what_its_reason_lacks_passes_to_the_next() -> None:
    industry = reason("industry", "software", percentile=None)
    tracks = {"industry": "top {percentile}% in {value}", "usage_limits": "{event} {times}: offer Team"}
    said = say(
        [(industry, "+ in the software industry"), (USAGE_LIMIT, USAGE_LIMIT_LINE)],
        scoring={"talking_points": tracks},
    )
    assert said == "hit_usage_limit 3 times: offer Team"


def test_an_empty_track_says_nothing_for_its_group() -> None:
    pricing = reason("pricing_interest", 2)
    lines = [(USAGE_LIMIT, USAGE_LIMIT_LINE), (pricing, "+ looked at pricing twice in the last 28 days")]
    said = say(lines, scoring={"talking_points": {"usage_limits": ""}})
    assert said is not None and said.startswith("looked at pricing twice: they are weighing it up")


def test_a_users_own_key_event_gets_the_generic_track_in_the_products_words() -> None:
    events = ["Submit Upgrade", {"name": "Limit Reached", "where": {"limit": "seats"}}]
    submitted = reason("submit_upgrade", 2)
    said = say([(submitted, "+ Submit Upgrade: twice in the last 28 days")], key_events=events)
    assert said == "they use Submit Upgrade a lot: ask what they are building with it"
    limited = reason("limit_reached_limit_seats", 4)
    said = say([(limited, "+ Limit Reached (limit = seats): 4 times in the last 7 days")], key_events=events)
    assert said == "they use Limit Reached (limit = seats) a lot: ask what they are building with it"


def test_a_users_own_key_event_can_have_its_own_track() -> None:
    settings = {
        "key_events": ["Submit Upgrade"],
        "scoring": {
            "talking_points": {"submit_upgrade": "tried to upgrade {times}: finish the upgrade with them"}
        },
    }
    said = say([(reason("submit_upgrade", 2), "+ Submit Upgrade: twice in the last 28 days")], **settings)
    assert said == "tried to upgrade twice: finish the upgrade with them"


def test_an_attribute_gets_the_generic_track_with_its_name() -> None:
    tables = {"account_attributes": {"attributes": {"Signup Channel": "categorical"}}}
    channel = reason("signup_channel", "partner", percentile=None)
    said = say([(channel, "+ Signup Channel: partner")], tables=tables)
    assert (
        said == "Signup Channel is partner, like many accounts that buy: ask what they want to get done first"
    )


def test_a_group_the_catalog_does_not_know_is_said_through_its_reason() -> None:
    other = reason("legacy_score", 7.5)
    assert say([(other, "+ legacy score: 7.5")]) == "legacy score: 7.5: ask what they are trying to get done"


@pytest.fixture(scope="module")
def run_rows(trained_model, scoring_features, model_settings) -> pd.DataFrame:
    """One run's rows over 400 accounts of one owner with room for all, so many are PQLs."""
    crm = pd.DataFrame(
        {
            "account_id": scoring_features["account_id"],
            "owner": "ana",
            "has_open_opportunity": False,
            "do_not_contact": False,
        }
    )
    roomy = model_settings.scoring.model_copy(update={"max_new_pqls_per_owner": 400})
    settings = model_settings.model_copy(update={"scoring": roomy})
    return pql_rows(scoring_features, trained_model, crm, pd.DataFrame(), settings, AS_OF)


def test_only_pqls_get_a_talking_point_in_a_runs_rows(run_rows, model_settings) -> None:
    pqls = run_rows["is_pql"].to_numpy(dtype=bool)
    assert pqls.sum() >= 10 and (~pqls).sum() >= 10
    assert run_rows.loc[~pqls, "talking_point"].isna().all()
    said = run_rows.loc[pqls, "talking_point"]
    assert said.notna().mean() > 0.9
    tracks = talk_tracks(model_settings)
    reasons = zip(run_rows.loc[pqls, "reasons_json"], run_rows.loc[pqls, "reasons_text"], strict=True)
    assert said.tolist() == [talking_point(text, lines, tracks) for text, lines in reasons]


def test_the_talking_point_is_stored_in_the_list_and_the_history(run_rows, any_db_url: str) -> None:
    tables = output_tables(load_settings(None).tables)
    engine = create_engine(any_db_url)
    run = {"run_id": "run-1", "as_of": AS_OF, "started_at": AS_OF, "model_version": "m1"}
    try:
        create_tables(engine, tables)
        write_run(engine, tables, run_rows, run)
        listed = pql_list(engine, tables)
        with engine.connect() as conn:
            history = pd.DataFrame(
                conn.execute(sa.select(tables.history.c.account_id, tables.history.c.talking_point)).all()
            )
    finally:
        engine.dispose()
    expected = run_rows.set_index("account_id")["talking_point"]
    assert (
        listed.set_index("account_id")["talking_point"].to_dict()
        == expected[run_rows["is_pql"].to_numpy()].to_dict()
    )
    stored = history.set_index("account_id")["talking_point"]
    assert stored.where(stored.notna(), None).to_dict() == expected.where(expected.notna(), None).to_dict()

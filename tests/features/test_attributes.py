"""The attributes a company keeps reach the model: accounts columns, and a dated table point-in-time."""

from __future__ import annotations

import pandas as pd
import pytest
import sqlalchemy as sa
from feature_worlds import AS_OF, DAY, World, load_world, row

from pql.bulk import bulk_insert
from pql.config import ConfigError, Settings, load_settings
from pql.features.builder import build_features
from pql.features.catalog import attribute_columns, feature_specs

ATTRIBUTES = {
    "tables": {
        "accounts": {"attributes": {"signup_channel": "categorical", "seats_purchased": "numeric"}},
        "account_attributes": {"attributes": {"Lead Source": "categorical", "ARR (USD)": "numeric"}},
    }
}


@pytest.fixture
def attribute_settings() -> Settings:
    return load_settings(None, **ATTRIBUTES)


def _features(url: str, settings: Settings, accounts: dict, history: list[tuple]) -> pd.DataFrame:
    world = World().account("a1").account("a2")
    engine, tables = load_world(url, world, settings)
    with engine.begin() as conn:
        for account_id, values in accounts.items():
            conn.execute(
                sa.update(tables.accounts).where(tables.accounts.c.account_id == account_id).values(**values)
            )
        frame = pd.DataFrame(history, columns=["account_id", "name", "value", "valid_from"])
        bulk_insert(conn, tables.account_attributes, frame.astype({"valid_from": "datetime64[us]"}))
    try:
        return build_features(engine, tables, settings, [AS_OF, AS_OF - 10 * DAY])
    finally:
        engine.dispose()


def test_declared_attributes_are_features_of_their_own_family(attribute_settings: Settings) -> None:
    specs = {spec.name: spec for spec in feature_specs(attribute_settings) if spec.family == "attributes"}

    assert {name: spec.kind for name, spec in specs.items()} == {
        "signup_channel": "categorical",
        "seats_purchased": "numeric",
        "lead_source": "categorical",
        "arr_usd": "numeric",
    }


def test_accounts_columns_are_read_as_declared(any_db_url: str, attribute_settings: Settings) -> None:
    accounts = {"a1": {"signup_channel": "paid search", "seats_purchased": 12.0}}

    features = _features(any_db_url, attribute_settings, accounts, [])

    one, other = row(features, "a1"), row(features, "a2")
    assert (one["signup_channel"], one["seats_purchased"]) == ("paid search", 12.0)
    assert pd.isna(other["signup_channel"]) and pd.isna(other["seats_purchased"])


def test_table_attributes_take_the_latest_value_strictly_before_as_of(
    any_db_url: str, attribute_settings: Settings
) -> None:
    history = [
        ("a1", "Lead Source", "webinar", AS_OF - 30 * DAY),
        ("a1", "Lead Source", "referral", AS_OF - 5 * DAY),
        ("a1", "Lead Source", "sales told us", AS_OF),
        ("a1", "ARR (USD)", "1200.5", AS_OF - 20 * DAY),
        ("a1", "ARR (USD)", "999999", AS_OF + DAY),
        ("a1", "Ignored", "x", AS_OF - 30 * DAY),
    ]

    features = _features(any_db_url, attribute_settings, {}, history)

    now, earlier = row(features, "a1"), row(features, "a1", AS_OF - 10 * DAY)
    assert (now["lead_source"], now["arr_usd"]) == ("referral", 1200.5)
    assert (earlier["lead_source"], earlier["arr_usd"]) == ("webinar", 1200.5)
    assert pd.isna(row(features, "a2")["lead_source"])


def test_a_numeric_attribute_that_is_not_a_number_is_unknown(
    any_db_url: str, attribute_settings: Settings
) -> None:
    features = _features(any_db_url, attribute_settings, {}, [("a1", "ARR (USD)", "about 2k", AS_OF - DAY)])

    assert pd.isna(row(features, "a1")["arr_usd"])


def test_attributes_never_reach_sql_as_text(duckdb_url: str, attribute_settings: Settings) -> None:
    from pql.features.builder import features_statement, snapshot_instants

    _, tables = load_world(duckdb_url, World().account("a1"), attribute_settings)

    sql = str(features_statement(tables, attribute_settings, snapshot_instants([AS_OF])))

    assert "Lead Source" not in sql and "ARR (USD)" not in sql


def test_an_attribute_named_like_a_built_in_feature_is_a_configuration_error() -> None:
    settings = load_settings(None, tables={"account_attributes": {"attributes": {"Plan": "categorical"}}})

    with pytest.raises(ConfigError, match="'Plan' would be the feature 'plan'"):
        attribute_columns(settings)


def test_an_accounts_attribute_cannot_shadow_a_contract_column() -> None:
    with pytest.raises(ConfigError, match="contract column of accounts"):
        load_settings(None, tables={"accounts": {"attributes": {"industry": "categorical"}}})

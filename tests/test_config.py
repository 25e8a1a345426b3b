"""Settings: defaults, the file, environment overrides, and one clear message per bad value."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from pql.cli import app
from pql.config import ConfigError, load_settings


def write_config(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_give_an_embedded_duckdb_in_the_state_directory() -> None:
    settings = load_settings()
    assert settings.source_database_url == "duckdb:///.pql/pql.duckdb"
    assert settings.crm_database_url == settings.source_database_url
    assert settings.model_registry_path == Path(".pql/models")


def test_crm_url_defaults_to_the_source_url() -> None:
    settings = load_settings(source_url="sqlite:///a.db")
    assert settings.crm_database_url == "sqlite:///a.db"


def test_the_file_in_the_working_directory_is_read(tmp_path: Path) -> None:
    write_config(tmp_path / "pql.toml", 'horizon_days = 14\nkey_events = ["invite_teammate"]\n')
    settings = load_settings()
    assert settings.horizon_days == 14
    assert settings.key_event_names == ["invite_teammate"]


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(tmp_path / "pql.toml", 'source_url = "sqlite:///file.db"\nhorizon_days = 14\n')
    monkeypatch.setenv("PQL_SOURCE_URL", "sqlite:///env.db")
    monkeypatch.setenv("PQL_SCORING__MAX_NEW_PQLS_PER_OWNER", "3")
    settings = load_settings()
    assert settings.source_url == "sqlite:///env.db"
    assert settings.horizon_days == 14
    assert settings.scoring.max_new_pqls_per_owner == 3


def test_table_and_column_names_are_configurable(tmp_path: Path) -> None:
    write_config(
        tmp_path / "pql.toml",
        '[tables.events]\nname = "product_events"\n[tables.events.columns]\noccurred_at = "ts"\n',
    )
    settings = load_settings()
    assert settings.tables.events.name == "product_events"
    assert settings.tables.events.columns.occurred_at == "ts"
    assert settings.tables.events.columns.event_id == "event_id"


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('horizon_days = "soon"', ["'horizon_days'", "'soon'", "an integer from 1 to 365"]),
        ("horizon_days = 0", ["'horizon_days'", "0", "an integer from 1 to 365"]),
        ('timezone = "Mars/Olympus"', ["'timezone'", "'Mars/Olympus'", "IANA time zone"]),
        ('source_url = "not a url"', ["'source_url'", "'not a url'", "SQLAlchemy URL"]),
        ('[tables.events]\nname = "events; drop table x"', ["'tables.events.name'", "plain SQL identifier"]),
        ('[tables.events.columns]\noccurred_at = "ts\\"--"', ["'tables.events.columns.occurred_at'"]),
        ('[scoring]\ntier_policy = "vibes"', ["'scoring.tier_policy'", "'quantile' or 'threshold'"]),
        ("key_events = []", ["'key_events'", "non-empty list"]),
        ("horizon = 30", ["unknown key 'horizon'"]),
    ],
)
def test_an_invalid_value_names_the_key_the_value_and_what_is_allowed(
    tmp_path: Path, toml: str, expected: list[str]
) -> None:
    write_config(tmp_path / "pql.toml", toml + "\n")
    with pytest.raises(ConfigError) as error:
        load_settings()
    for fragment in expected:
        assert fragment in str(error.value)


def test_a_bad_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PQL_HORIZON_DAYS", "-3")
    with pytest.raises(ConfigError, match="PQL_HORIZON_DAYS: invalid value for 'horizon_days'"):
        load_settings()


def test_the_signing_key_is_read_from_the_environment_and_never_shown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = "0123456789abcdef" * 4
    monkeypatch.setenv("PQL_MODEL__SIGNING_KEY", key)
    settings = load_settings()
    assert settings.model.signing_key is not None
    assert settings.model.signing_key.get_secret_value() == key
    assert key not in repr(settings) and key not in str(settings)
    monkeypatch.setenv("PQL_MODEL__SIGNING_KEY", "short-secret-value")
    with pytest.raises(ConfigError, match="PQL_MODEL__SIGNING_KEY") as raised:
        load_settings()
    assert "short-secret-value" not in str(raised.value)
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    assert "at least 32 characters" in str(raised.value)


def test_a_toml_syntax_error_is_reported_with_the_file(tmp_path: Path) -> None:
    write_config(tmp_path / "pql.toml", "horizon_days = = 3\n")
    with pytest.raises(ConfigError, match=r"pql\.toml: not valid TOML"):
        load_settings()


def test_a_missing_explicit_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_settings(tmp_path / "nope.toml")


def test_the_cli_prints_one_message_and_exits_2_without_a_traceback(tmp_path: Path) -> None:
    write_config(tmp_path / "pql.toml", 'horizon_days = "soon"\n')
    result = CliRunner().invoke(app, ["init"])
    assert result.exit_code == 2
    assert "invalid value for 'horizon_days'" in result.output
    assert "Traceback" not in result.output


def test_the_cli_reads_an_explicit_config_file(tmp_path: Path) -> None:
    path = write_config(tmp_path / "other.toml", 'timezone = "Nowhere/Land"\n')
    result = CliRunner().invoke(app, ["--config", str(path), "init"])
    assert result.exit_code == 2
    assert "other.toml: invalid value for 'timezone'" in result.output


def test_the_documented_example_file_states_the_defaults() -> None:
    example = Path(__file__).parents[1] / "docs" / "pql.example.toml"
    assert load_settings(example) == load_settings()

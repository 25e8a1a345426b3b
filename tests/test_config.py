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
        (
            '[features]\nlabel = "won"',
            ["'features.label'", "'won'", "'opportunity_created', 'closed_won' or 'converted_or_won'"],
        ),
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


BAD_URLS = [
    pytest.param("postgresql+psycopg://u:S3cret@warehouse:54x32/db", "54x32", id="invalid-port"),
    pytest.param("postgresq+psycopg://u:S3cret@warehouse:5432/db", "postgresq+psycopg", id="unknown-scheme"),
]


@pytest.mark.parametrize(("url", "named"), BAD_URLS)
def test_a_bad_url_in_the_environment_is_reported_with_its_password_masked(
    monkeypatch: pytest.MonkeyPatch, url: str, named: str
) -> None:
    monkeypatch.setenv("PQL_SOURCE_URL", url)
    result = CliRunner().invoke(app, ["pqls"])
    assert result.exit_code == 2
    assert "PQL_SOURCE_URL: invalid value for 'source_url'" in result.output
    assert named in result.output and "u:***@warehouse" in result.output
    assert "S3cret" not in result.output


@pytest.mark.parametrize(("url", "named"), BAD_URLS)
def test_a_bad_url_in_the_file_is_reported_with_its_password_masked(
    tmp_path: Path, url: str, named: str
) -> None:
    write_config(tmp_path / "pql.toml", f'crm_url = "{url}"\n')
    result = CliRunner().invoke(app, ["pqls"])
    assert result.exit_code == 2
    assert "pql.toml: invalid value for 'crm_url'" in result.output
    assert named in result.output and "u:***@warehouse" in result.output
    assert "S3cret" not in result.output


def test_a_password_holding_an_at_sign_is_masked_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PQL_SOURCE_URL", "postgresql://u:p@ss@warehouse:5x/db")
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert "p@ss" not in str(error.value) and "u:***@warehouse" in str(error.value)


def test_a_prefect_secret_url_is_left_for_the_flow_to_resolve(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PQL_CRM_URL", "prefect_secret://pql-crm-url")
    assert load_settings().crm_url == "prefect_secret://pql-crm-url"


def test_a_list_variable_that_is_not_json_names_the_variable_and_the_expected_form(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PQL_KEY_EVENTS", "invite_teammate")
    result = CliRunner().invoke(app, ["init"])
    assert result.exit_code == 2
    assert "PQL_KEY_EVENTS: 'invite_teammate' is not JSON" in result.output
    assert """PQL_KEY_EVENTS='["invite_teammate"]'""" in result.output
    assert "Traceback" not in result.output


def test_a_nested_list_variable_that_is_not_json_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PQL_PLANS__PAID", "pro,enterprise")
    with pytest.raises(
        ConfigError, match=r"""PQL_PLANS__PAID: .*PQL_PLANS__PAID='\["pro", "enterprise"\]'"""
    ):
        load_settings()


def test_a_settings_file_that_is_not_utf8_is_a_configuration_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "pql.toml").write_bytes(b'timezone = "Europe/Paris" # caf\xe9\n')
    result = CliRunner().invoke(app, ["init"])
    assert result.exit_code == 2
    assert "pql.toml: not UTF-8 text" in result.output and "Save the file as UTF-8" in result.output
    assert "Traceback" not in result.output


def test_a_config_option_naming_a_folder_is_a_configuration_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["--config", str(tmp_path), "init"])
    assert result.exit_code == 2
    assert f"{tmp_path}: is a folder, not a settings file" in result.output
    assert "Traceback" not in result.output


def test_an_unknown_top_level_variable_is_rejected_with_the_closest_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PQL_HORIZON_DAY", "7")
    result = CliRunner().invoke(app, ["init"])
    assert result.exit_code == 2
    assert "PQL_HORIZON_DAY: unknown setting. Did you mean PQL_HORIZON_DAYS?" in result.output


def test_an_unknown_nested_variable_is_rejected_with_the_closest_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PQL_SCORING__PQL_ENTRY_SCOR", "70")
    with pytest.raises(ConfigError, match="Did you mean PQL_SCORING__PQL_ENTRY_SCORE"):
        load_settings()


@pytest.mark.parametrize(
    "name", ["PQL_CONFIG", "PQL_TEST_POSTGRES_URL", "PQL_BENCH_POSTGRES_URL", "PQL_CI_PG_PORT"]
)
def test_variables_read_outside_the_settings_are_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    config = write_config(tmp_path / "elsewhere.toml", "horizon_days = 9\n")
    monkeypatch.setenv(name, str(config))
    assert load_settings().horizon_days == (9 if name == "PQL_CONFIG" else 30)


def test_entries_of_a_table_setting_can_be_set_one_by_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PQL_FEATURES__PHRASES__SIGNUP_CHANNEL", "signed up through {value}")
    assert load_settings().features.phrases == {"signup_channel": "signed up through {value}"}


@pytest.mark.parametrize(
    ("plans", "value", "lists"),
    [
        ('free = ["free", "pro"]\npaid = ["pro"]', "'pro'", "plans.free and plans.paid"),
        ('trial = ["trial"]\npaid = ["paid", "trial"]', "'trial'", "plans.trial and plans.paid"),
        ('free = ["free", "trial"]', "'trial'", "plans.free and plans.trial"),
    ],
)
def test_a_plan_value_in_two_lists_is_rejected_naming_the_value_and_the_lists(
    tmp_path: Path, plans: str, value: str, lists: str
) -> None:
    write_config(tmp_path / "pql.toml", f"[plans]\n{plans}\n")
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert f"{value} is in both {lists}" in str(error.value)
    assert "pql.toml: invalid value for 'plans'" in str(error.value)

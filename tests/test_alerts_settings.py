"""The `[alerts]` settings: a webhook URL that is a secret, a checked link template, off without a URL."""

from __future__ import annotations

import pytest

from pql.config import ConfigError, load_settings

SECRET_URL = "https://hooks.slack.com/services/T0/B0/s3cr3t-token"


def test_alerts_are_off_without_a_webhook_url() -> None:
    assert not load_settings(None).alerts.enabled


def test_the_webhook_url_comes_from_the_environment_and_is_kept_out_of_reprs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PQL_ALERTS__WEBHOOK_URL", SECRET_URL)
    settings = load_settings(None)
    assert settings.alerts.enabled
    assert settings.alerts.webhook_url is not None
    assert settings.alerts.webhook_url.get_secret_value() == SECRET_URL
    assert "s3cr3t" not in repr(settings) and "s3cr3t" not in str(settings.alerts)


def test_a_prefect_secret_block_name_is_accepted_as_the_webhook_url() -> None:
    settings = load_settings(None, alerts={"webhook_url": "prefect_secret://pql-alerts-webhook"})
    assert settings.alerts.enabled


def test_an_invalid_webhook_url_is_rejected_without_showing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PQL_ALERTS__WEBHOOK_URL", "hooks.slack.com/services/s3cr3t-token")
    with pytest.raises(ConfigError) as raised:
        load_settings(None)
    message = str(raised.value)
    assert "PQL_ALERTS__WEBHOOK_URL" in message and "(hidden)" in message
    assert "s3cr3t" not in message and raised.value.__cause__ is None


def test_a_link_template_may_use_only_the_known_placeholders() -> None:
    with pytest.raises(ConfigError, match=r"unknown placeholder \{acct\}; the template may use"):
        load_settings(None, alerts={"link_template": "https://crm.example.com/{acct}"})


def test_a_link_template_cannot_reach_into_a_value() -> None:
    with pytest.raises(ConfigError, match="unknown placeholder"):
        load_settings(None, alerts={"link_template": "https://crm.example.com/{account_id.__class__}"})


def test_an_unbalanced_link_template_is_rejected() -> None:
    with pytest.raises(ConfigError, match="not a valid template"):
        load_settings(None, alerts={"link_template": "https://crm.example.com/{account_id"})

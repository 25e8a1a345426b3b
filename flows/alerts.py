"""Posting a nightly run's new PQLs to the alerts webhook, after the run's write has committed.

One POST per owner (payloads from `scoring.alerts`). A connection error, a timeout, a 5xx or a 429 is
tried again, `alerts.retries` times, after `alerts.backoff_seconds` doubled at each retry (or the
response's Retry-After, when longer), never waiting more than `alerts.max_delay_seconds`; any other
answer (a 4xx: a wrong or revoked URL, a refused payload) fails at once, since it would fail the same
way again. Nothing here raises: every failure is logged and counted in the outcome, which the run
records in `pql_runs.alerts_json`; the run itself stays a success.

The webhook URL is a credential (a Slack incoming-webhook URL lets anyone post to the channel): it is
shown only as `scheme://host/***`, in logs, errors and the ledger alike, and httpx's own request log
lines are masked the same way while posting.
"""

from __future__ import annotations

import email.utils
import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import pandas as pd
from prefect.blocks.system import Secret

from pql.config import SECRET_URL_SCHEME, AlertsConfig, Settings
from pql.db import Databases
from pql.flows import ledger
from pql.scoring.alerts import OwnerAlert, new_pqls, owner_alerts
from pql.scoring.crm import account_names

Logger = logging.Logger | logging.LoggerAdapter
_MAX_ERROR = 500


class AlertsSetupError(Exception):
    """The alerts could not be sent at all (no such Secret block); the message holds no secret."""


@dataclass(frozen=True)
class PostResult:
    """How one owner's post went: delivered or not, after how many tries, and the last error."""

    owner: str
    delivered: bool
    tries: int
    error: str | None = None
    # The webhook did not answer at all (no connection, or no reply in time) on the last try.
    unreachable: bool = False


@dataclass(frozen=True)
class AlertsOutcome:
    """What the alerts of one run did; `destination` is the masked URL."""

    destination: str
    new_pqls: int = 0
    results: list[PostResult] = field(default_factory=list)
    error: str | None = None

    @property
    def attempted(self) -> int:
        return len(self.results)

    @property
    def succeeded(self) -> int:
        return sum(result.delivered for result in self.results)

    @property
    def failed(self) -> int:
        return self.attempted - self.succeeded

    @property
    def line(self) -> str:
        """One line for the operator: 'alerts: 3 of 4 owners notified; 1 failed (HTTP 500 after 3 tries)'."""
        if self.error is not None:
            return f"alerts: not sent ({self.error})"
        if not self.results:
            return "alerts: no new PQLs, nothing posted"
        text = f"alerts: {self.succeeded} of {self.attempted} owners notified"
        failures = [result for result in self.results if not result.delivered]
        if failures:
            last = [result for result in failures if result.tries][-1]
            tries = f"{last.tries} tr{'y' if last.tries == 1 else 'ies'}"
            text += f"; {len(failures)} failed ({last.error} after {tries})"
        return text

    def as_json(self) -> dict[str, Any]:
        """The outcome as `pql_runs.alerts_json` keeps it."""
        failures = [result for result in self.results if not result.delivered]
        return {
            "destination": self.destination,
            "new_pqls": self.new_pqls,
            "attempted": self.attempted,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "failed_owners": [result.owner for result in failures],
            "last_error": self.error or next((f.error for f in reversed(failures) if f.tries), None),
            "summary": self.line,
        }


def masked_url(url: str) -> str:
    """`url` as it may be shown: scheme and host only (`https://hooks.slack.com/***`)."""
    parts = urlsplit(url)
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # a port that is no number: show none of it
        port = ""
    return f"{parts.scheme}://{parts.hostname or '?'}{port}/***"


def scrubbed(text: str, url: str) -> str:
    """`text` with the URL, and its path (the secret part of a webhook URL), masked."""
    masked = masked_url(url)
    text = text.replace(url, masked)
    path = urlsplit(url)._replace(scheme="", netloc="").geturl()
    return text.replace(path, "/***") if len(path) > 1 else text


def webhook_url(config: AlertsConfig) -> str:
    """The configured webhook URL, read from its Prefect Secret block for `prefect_secret://NAME`."""
    if config.webhook_url is None:
        raise AlertsSetupError("alerts.webhook_url is not set")
    value = config.webhook_url.get_secret_value()
    if not value.startswith(SECRET_URL_SCHEME):
        return value
    name = value.removeprefix(SECRET_URL_SCHEME)
    try:
        return str(Secret.load(name).get())
    except ValueError as exc:
        raise AlertsSetupError(f"there is no Prefect Secret block named {name!r}") from exc


class _MaskingFilter(logging.Filter):
    """Rewrites log records that would show the URL (httpx logs every request's URL at INFO)."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = scrubbed(message, self.url)
        if clean != message:
            record.msg, record.args = clean, ()
        return True


@contextmanager
def _masked_http_logs(url: str) -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in ("httpx", "httpcore")]
    mask = _MaskingFilter(url)
    for logger in loggers:
        logger.addFilter(mask)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(mask)


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """A Retry-After header in seconds (it is either a number of seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(seconds, 0.0) if math.isfinite(seconds) else None


def _delay(config: AlertsConfig, retry: int, retry_after: float | None) -> float:
    """The wait before retry number `retry` (1-based): back-off, or Retry-After when longer, capped."""
    backoff = config.backoff_seconds * 2 ** (retry - 1)
    return min(max(backoff, retry_after or 0.0), config.max_delay_seconds)


def post_one(
    client: httpx.Client,
    url: str,
    alert: OwnerAlert,
    config: AlertsConfig,
    log: Logger,
    sleep: Callable[[float], None] = time.sleep,
) -> PostResult:
    """POST one owner's payload, retrying what may succeed later; never raises."""
    tries = config.retries + 1
    shown = masked_url(url)
    for attempt in range(1, tries + 1):
        retry_after, unreachable = None, False
        try:
            response = client.post(url, json=alert.payload)
        except httpx.TimeoutException:
            error, transient = f"timed out after {config.timeout_seconds:g} s", True
            unreachable = True
        except httpx.TransportError as exc:
            error, transient = scrubbed(f"{type(exc).__name__}: {exc}", url), True
            unreachable = True
        except Exception as exc:  # an invalid URL, a payload that cannot be sent: the same next time
            error, transient = scrubbed(f"{type(exc).__name__}: {exc}", url), False
        else:
            if response.is_success:
                return PostResult(alert.owner, delivered=True, tries=attempt)
            status = response.status_code
            error, transient = f"HTTP {status}", status >= 500 or status == 429
            retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        error = error[:_MAX_ERROR]
        if not transient or attempt == tries:
            final = "last try" if transient else "not retried"
            log.warning(
                "alert for %s to %s failed (try %d of %d, %s): %s",
                alert.owner,
                shown,
                attempt,
                tries,
                final,
                error,
            )
            return PostResult(
                alert.owner, delivered=False, tries=attempt, error=error, unreachable=unreachable
            )
        wait = _delay(config, attempt, retry_after)
        log.warning(
            "alert for %s to %s failed (try %d of %d): %s; retrying in %g s",
            alert.owner,
            shown,
            attempt,
            tries,
            error,
            wait,
        )
        if wait > 0:
            sleep(wait)
    raise AssertionError("unreachable: the last try returns")  # pragma: no cover


def post_alerts(
    alerts: list[OwnerAlert],
    url: str,
    config: AlertsConfig,
    log: Logger,
    sleep: Callable[[float], None] = time.sleep,
) -> list[PostResult]:
    """Post every owner's alert in turn. An owner whose post is refused does not stop the others; a
    webhook that did not answer any try of one post is not tried for the rest (each would wait out
    the same timeouts), which are recorded as failed, not tried."""
    results: list[PostResult] = []
    with _masked_http_logs(url), httpx.Client(timeout=config.timeout_seconds) as client:
        for alert in alerts:
            down = next((result for result in results if result.unreachable), None)
            if down is not None:
                results.append(
                    PostResult(alert.owner, delivered=False, tries=0, error=f"not tried: {down.error}")
                )
                continue
            results.append(post_one(client, url, alert, config, log, sleep))
    skipped = sum(not result.tries for result in results)
    if skipped:
        log.warning(
            "alerts: %d owner(s) not tried: the webhook at %s did not answer", skipped, masked_url(url)
        )
    return results


def announce_new_pqls(
    dbs: Databases,
    rows: pd.DataFrame,
    settings: Settings,
    run: ledger.RunRecord,
    log: Logger,
    sleep: Callable[[float], None] = time.sleep,
) -> AlertsOutcome:
    """Post each owner's new PQLs of a written run and record the outcome in its pql_runs row.

    Never raises: a failure to read names, reach the webhook or record the outcome is logged (and,
    but for the last, counted in the outcome)."""
    config = settings.alerts
    url: str | None = None
    try:
        url = webhook_url(config)
        fresh = new_pqls(rows)
        names = account_names(dbs.source, dbs.source_tables, fresh["account_id"].astype(str))
        alerts = owner_alerts(fresh, names, config, run.as_of, run.run_id)
        outcome = AlertsOutcome(masked_url(url), len(fresh), post_alerts(alerts, url, config, log, sleep))
    except Exception as exc:
        text = str(exc) if isinstance(exc, AlertsSetupError) else f"{type(exc).__name__}: {exc}"
        text = scrubbed(text, url) if url else text
        outcome = AlertsOutcome(masked_url(url) if url else "(not resolved)", error=text[:_MAX_ERROR])
        log.warning("alerts: not sent: %s", outcome.error)
    log.info("%s", outcome.line)
    try:
        ledger.record_alerts(dbs.crm, dbs.output_tables, run, outcome.as_json())
    except Exception as exc:  # the run is written; losing this record must not fail it
        log.warning("could not record the alerts in pql_runs: %s", ledger.failure_text(exc, settings))
    return outcome

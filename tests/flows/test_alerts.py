"""Webhook alerts after a nightly run, against a real HTTP server on 127.0.0.1: what is posted, what is
retried, and that a failed post never fails the run nor shows the webhook URL."""

from __future__ import annotations

import json
import logging
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pytest
import sqlalchemy as sa
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from typer.testing import CliRunner

from pql.bulk import bulk_insert
from pql.cli import app
from pql.config import Settings, load_settings
from pql.db import databases
from pql.flows import ledger, tasks
from pql.flows.alerts import AlertsOutcome, announce_new_pqls, masked_url, post_alerts, retry_after_seconds
from pql.flows.nightly import nightly
from pql.schema import create_tables, source_tables
from pql.scoring.alerts import OwnerAlert
from pql.scoring.rules import KEPT, NEW

if TYPE_CHECKING:
    from conftest import World

AS_OF = datetime(2026, 3, 2)
TOKEN = "s3cr3t-token"
LINK = "https://crm.example.com/accounts/{account_id}"
LOG = logging.getLogger("test.alerts")


@dataclass
class Webhook:
    """A local incoming-webhook endpoint: records every POST and answers from a script (then 200)."""

    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)

    def answer(self, *statuses: int | tuple[int, dict[str, str]]) -> None:
        """The statuses of the next replies (with headers when given as a pair); 200 after them."""
        self.script += [(status, {}) if isinstance(status, int) else status for status in statuses]

    def always(self, status: int) -> None:
        self.script += [(status, {})] * 100

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [request["body"] for request in self.requests]


class _Handler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer

    def do_POST(self) -> None:
        hook: Webhook = self.server.hook  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers["Content-Length"]))
        hook.requests.append(
            {"path": self.path, "content_type": self.headers["Content-Type"], "body": json.loads(body)}
        )
        status, headers = hook.script.pop(0) if hook.script else (200, {})
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test reads the recorded requests instead."""


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    """A webhook server in a thread on a free port; its URL carries a secret token, like Slack's."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    hook = Webhook(url=f"http://127.0.0.1:{server.server_address[1]}/services/T000/B000/{TOKEN}")
    server.hook = hook  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield hook
    server.shutdown()
    server.server_close()
    thread.join()


def _settings(url: str, db_url: str | None = None, **alerts: object) -> Settings:
    options = {"webhook_url": url, "backoff_seconds": 0, "link_template": LINK, **alerts}
    return load_settings(None, source_url=db_url, alerts=options)


def _alert(owner: str) -> OwnerAlert:
    return OwnerAlert(owner=owner, new_pqls=1, payload={"text": f"1 new PQL for {owner}"})


def _row(account_id: str, owner: str, score: float, status: str = NEW) -> dict[str, Any]:
    return {
        "account_id": account_id,
        "routed_to": owner,
        "score": score,
        "probability": score / 100,
        "tier": "high",
        "playbook": "trial_conversion",
        "reasons_text": "+ invited 4 teammates\n- no integration",
        "is_pql": True,
        "pql_status": status,
    }


RUN_ROWS = pd.DataFrame(
    [
        _row("acc_1", "ana", 91),
        _row("acc_2", "ana", 72),
        _row("acc_3", "bo", 66),
        _row("acc_4", "bo", 88, KEPT),
    ]
)


@dataclass
class Written:
    """A database holding the source accounts and a written run's ledger row, as after a nightly write."""

    settings: Settings
    run: ledger.RunRecord

    def alerts_json(self) -> dict[str, Any] | None:
        with databases(self.settings) as dbs, dbs.crm.connect() as conn:
            runs = dbs.output_tables.runs
            text = conn.execute(sa.select(runs.c.alerts_json)).scalar_one()
        return None if text is None else json.loads(text)


@pytest.fixture
def written(any_db_url: str, webhook: Webhook) -> Written:
    settings = _settings(webhook.url, any_db_url)
    run = ledger.RunRecord(kind="nightly", as_of=AS_OF)
    accounts = pd.DataFrame(
        {"account_id": ["acc_1", "acc_2", "acc_3", "acc_4"], "name": ["Acme", "Birch", "Cobalt", "Dune"]}
    )
    with databases(settings) as dbs:
        tables = source_tables(settings.tables)
        create_tables(dbs.source, tables)
        with dbs.source.begin() as conn:
            bulk_insert(conn, tables.accounts, accounts.assign(created_at=pd.Timestamp("2026-01-01")))
        ledger.open_run(dbs.crm, dbs.output_tables, run)
    return Written(settings, run)


def test_each_owner_gets_one_post_of_their_new_pqls_and_the_run_records_it(
    written: Written, webhook: Webhook
) -> None:
    with databases(written.settings) as dbs:
        outcome = announce_new_pqls(dbs, RUN_ROWS, written.settings, written.run, LOG)
    ana, bo = webhook.bodies
    assert [block["type"] for block in ana["blocks"]] == ["header", "section", "section"]
    assert ana["blocks"][1]["text"]["text"].startswith("*<https://crm.example.com/accounts/acc_1|Acme>*")
    assert ana["text"] == "2 new PQLs for ana (as of 2026-03-02)"
    assert bo["text"] == "1 new PQL for bo (as of 2026-03-02)"  # acc_4 was a PQL already
    assert {request["content_type"] for request in webhook.requests} == {"application/json"}
    assert outcome.line == "alerts: 2 of 2 owners notified"
    recorded = written.alerts_json()
    assert recorded is not None
    assert (recorded["attempted"], recorded["succeeded"], recorded["failed"], recorded["new_pqls"]) == (
        2,
        2,
        0,
        3,
    )


def test_a_failed_post_is_retried_until_it_succeeds(written: Written, webhook: Webhook) -> None:
    webhook.answer(500, 503)
    with databases(written.settings) as dbs:
        outcome = announce_new_pqls(
            dbs, RUN_ROWS[RUN_ROWS["routed_to"] == "ana"], written.settings, written.run, LOG
        )
    assert len(webhook.requests) == 3
    assert webhook.bodies[0] == webhook.bodies[2]
    assert outcome.line == "alerts: 1 of 1 owners notified"


def test_a_post_failing_every_try_is_recorded_with_the_url_masked(
    written: Written, webhook: Webhook, caplog: pytest.LogCaptureFixture
) -> None:
    webhook.answer(200, 500, 500, 500)  # ana's post goes through, bo's never does
    with databases(written.settings) as dbs, caplog.at_level(logging.DEBUG):
        outcome = announce_new_pqls(dbs, RUN_ROWS, written.settings, written.run, LOG)
    assert len(webhook.requests) == 4
    assert outcome.line == "alerts: 1 of 2 owners notified; 1 failed (HTTP 500 after 3 tries)"
    recorded = written.alerts_json()
    assert recorded is not None
    assert recorded["failed_owners"] == ["bo"] and recorded["last_error"] == "HTTP 500"
    assert recorded["destination"] == masked_url(webhook.url) == f"{webhook.url.split('/services')[0]}/***"
    assert "alert for bo to http://127.0.0.1" in caplog.text
    assert TOKEN not in caplog.text + json.dumps(recorded)


@pytest.mark.parametrize("status", [400, 403, 404])
def test_a_client_error_is_not_retried(webhook: Webhook, status: int) -> None:
    webhook.answer(status)
    (result,) = post_alerts([_alert("ana")], webhook.url, _settings(webhook.url).alerts, LOG)
    assert (result.delivered, result.tries, result.error) == (False, 1, f"HTTP {status}")
    assert len(webhook.requests) == 1


def test_too_many_requests_waits_as_long_as_retry_after_says_within_the_cap(webhook: Webhook) -> None:
    webhook.answer((429, {"Retry-After": "7"}), (429, {"Retry-After": "600"}))
    waits: list[float] = []
    config = _settings(webhook.url, backoff_seconds=1, max_delay_seconds=30).alerts
    (result,) = post_alerts([_alert("ana")], webhook.url, config, LOG, sleep=waits.append)
    assert result.delivered and result.tries == 3
    assert waits == [7, 30]


def test_back_off_doubles_at_each_retry(webhook: Webhook) -> None:
    webhook.always(502)
    waits: list[float] = []
    config = _settings(webhook.url, backoff_seconds=1.5, retries=3).alerts
    (result,) = post_alerts([_alert("ana")], webhook.url, config, LOG, sleep=waits.append)
    assert (result.delivered, result.tries) == (False, 4)
    assert waits == [1.5, 3.0, 6.0]


def test_retry_after_may_be_an_http_date() -> None:
    assert (
        retry_after_seconds(
            "Mon, 02 Mar 2026 00:00:30 GMT", now=datetime.fromisoformat("2026-03-02T00:00:00+00:00")
        )
        == 30
    )


def _closed_port() -> int:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        return free.getsockname()[1]


def test_a_refused_connection_is_retried_and_reported_without_the_url() -> None:
    url = f"http://127.0.0.1:{_closed_port()}/services/T000/B000/{TOKEN}"
    (result,) = post_alerts([_alert("ana")], url, _settings(url).alerts, LOG)
    assert (result.delivered, result.tries) == (False, 3)
    assert result.error is not None and result.error.startswith("ConnectError") and TOKEN not in result.error


def test_after_a_post_that_never_reached_the_webhook_the_other_owners_are_not_tried() -> None:
    url = f"http://127.0.0.1:{_closed_port()}/services/T000/B000/{TOKEN}"
    results = post_alerts([_alert("ana"), _alert("bo")], url, _settings(url).alerts, LOG)
    assert [(result.owner, result.tries) for result in results] == [("ana", 3), ("bo", 0)]
    assert results[1].error == f"not tried: {results[0].error}"
    outcome = AlertsOutcome("http://127.0.0.1/***", 2, results)
    assert outcome.line == f"alerts: 0 of 2 owners notified; 2 failed ({results[0].error} after 3 tries)"


def test_a_server_that_never_answers_times_out_and_is_retried() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/hook/{TOKEN}"
        config = _settings(url, timeout_seconds=0.2, retries=1).alerts
        (result,) = post_alerts([_alert("ana")], url, config, LOG)
    assert (result.delivered, result.tries, result.error) == (False, 2, "timed out after 0.2 s")


def test_httpx_request_logs_show_the_url_masked(webhook: Webhook, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        post_alerts([_alert("ana")], webhook.url, _settings(webhook.url).alerts, LOG)
    assert "HTTP Request: POST http://127.0.0.1" in caplog.text and "/***" in caplog.text
    assert TOKEN not in caplog.text


@pytest.mark.usefixtures("prefect_api")
def test_a_missing_secret_block_is_recorded_not_raised(written: Written, webhook: Webhook) -> None:
    settings = written.settings.model_copy(
        update={"alerts": _settings("prefect_secret://pql-no-such-alerts-block").alerts}
    )
    with databases(settings) as dbs:
        outcome = announce_new_pqls(dbs, RUN_ROWS, settings, written.run, LOG)
    assert (
        outcome.line == "alerts: not sent (there is no Prefect Secret block named 'pql-no-such-alerts-block')"
    )
    assert webhook.requests == []
    recorded = written.alerts_json()
    assert recorded is not None and recorded["attempted"] == 0


def _send(settings: Settings, **run: Any) -> object:
    record = ledger.RunRecord(as_of=AS_OF, **{"kind": "nightly", **run})
    return tasks.send_alerts.fn(RUN_ROWS, settings, record)


@pytest.mark.parametrize(
    "run", [{"dry_run": True}, {"kind": "backfill"}], ids=["dry run", "backfill (past dates)"]
)
def test_a_dry_run_and_a_backfill_post_nothing(
    webhook: Webhook, settings: Settings, run: dict[str, Any]
) -> None:
    configured = settings.model_copy(update={"alerts": _settings(webhook.url).alerts})
    assert _send(configured, **run) is None
    assert webhook.requests == []


def test_without_a_webhook_url_nothing_is_posted(webhook: Webhook, settings: Settings) -> None:
    assert _send(settings) is None
    assert webhook.requests == []


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_a_nightly_run_whose_alerts_all_fail_still_succeeds_with_its_scores_written(
    world: World,
    webhook: Webhook,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    block = f"pql-alerts-{uuid.uuid4().hex[:8]}"
    Secret(value=webhook.url).save(block)
    config = Path(world.configure())
    config.write_text(
        config.read_text() + f'[alerts]\nwebhook_url = "prefect_secret://{block}"\nbackoff_seconds = 0\n'
        f'link_template = "{LINK}"\n',
        encoding="utf-8",
    )
    webhook.always(500)
    state = nightly(as_of=world.end, config=world.config, return_state=True)
    assert state.is_completed()
    summary = state.result()
    scores, (run,) = world.table("scores"), world.table("runs").to_dict("records")
    assert run["status"] == "succeeded" and len(scores) == summary.accounts_scored > 0
    owners = sorted(scores.loc[scores["first_pql_at"].eq(world.end) & scores["is_pql"], "routed_to"].unique())
    assert len(webhook.requests) == 3 * len(owners) > 0
    first = webhook.bodies[0]
    assert first["text"].startswith(f"{min(10, int((scores['routed_to'] == owners[0]).sum()))} new PQL")
    assert "https://crm.example.com/accounts/" in first["blocks"][1]["text"]["text"]
    sections = [block["text"]["text"] for body in webhook.bodies for block in body["blocks"][1:]]
    assert any("\n_Say:_ " in text for text in sections)  # the stored talking point, when a PQL has one
    recorded = json.loads(run["alerts_json"])
    assert (recorded["attempted"], recorded["succeeded"], recorded["failed"]) == (len(owners), 0, len(owners))
    assert (
        summary.alerts
        == f"alerts: 0 of {len(owners)} owners notified; {len(owners)} failed (HTTP 500 after 3 tries)"
    )
    out, err = capfd.readouterr()
    with get_client(sync_client=True) as client:
        logs = [log.message for log in client.read_logs()]
        artifacts = [str(artifact.data) for artifact in client.read_artifacts()]
        task_runs = [task_run.model_dump_json() for task_run in client.read_task_runs()]
    everything = "\n".join(
        [out, err, caplog.text, *logs, *artifacts, *task_runs, json.dumps(run, default=str)]
    )
    assert TOKEN not in everything
    assert any("alert for" in line and "/***" in line for line in logs)
    assert summary.alerts in "\n".join(artifacts)


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_pql_score_prints_one_line_on_the_alerts_and_exits_0_when_one_owner_failed(
    world: World, webhook: Webhook, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PQL_ALERTS__WEBHOOK_URL", webhook.url)
    monkeypatch.setenv("PQL_ALERTS__BACKOFF_SECONDS", "0")
    webhook.answer(500, 500, 500)  # the first owner's three tries; every later post goes through
    result = CliRunner().invoke(app, ["--config", world.config, "score", "--as-of", f"{world.end:%Y-%m-%d}"])
    assert result.exit_code == 0, result.output
    owners = len({body["text"].split(" for ")[1] for body in webhook.bodies})
    assert (
        f"alerts: {owners - 1} of {owners} owners notified; 1 failed (HTTP 500 after 3 tries)"
        in result.output
    )
    assert len(webhook.requests) == owners + 2 and TOKEN not in result.output


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_pql_score_json_carries_the_alerts_line(
    world: World, webhook: Webhook, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PQL_ALERTS__WEBHOOK_URL", webhook.url)
    args = ["--config", world.config, "score", "--as-of", f"{world.end:%Y-%m-%d}", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    owners = len(webhook.requests)
    assert json.loads(result.stdout)["alerts"] == f"alerts: {owners} of {owners} owners notified"

"""Alert delivery against loopback receivers: an HTTP server and an aiosmtpd SMTP server."""

from __future__ import annotations

import json
import logging
import socket
import threading
from dataclasses import dataclass, field
from decimal import Decimal
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from calibr_pipeline.connectors.alerts import (
    Alert,
    AlertConfigError,
    AlertDispatcher,
    DeliveryResult,
    EmailDestination,
    PagerDutyDestination,
    SlackWebhookDestination,
    WebhookDestination,
    mask_url,
)
from calibr_pipeline.domain.backoff import RetryPolicy

pytestmark = pytest.mark.integration

SLACK_TOKEN = "xoxbSECRETslackTOKEN123"
ROUTING_KEY = "R0UT1NGKEYsecret0000000000000000"
SMTP_PASSWORD = "hunter2-very-secret"
WEBHOOK_BEARER = "Bearer webhook-secret-abc"

ALERT = Alert(
    severity="error",
    title="Competitor prices stale",
    message="3 of 40 listings have not been scraped for 48h.",
    source="competitor_prices/freshness_check",
    tenant="acme",
    details={"stale_listings": [11, 12, 13], "min_price": Decimal("19.90")},
)


# --------------------------------------------------------------------------- HTTP receiver


@dataclass
class Receiver:
    posts: list[dict[str, Any]] = field(default_factory=list)
    statuses: dict[str, list[int]] = field(default_factory=dict)  # path -> statuses to answer in order
    lock: threading.Lock = field(default_factory=threading.Lock)
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def bodies(self, path: str) -> list[Any]:
        with self.lock:
            return [p["json"] for p in self.posts if p["path"] == path]


@pytest.fixture
def receiver():
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with state.lock:
                state.posts.append({"path": self.path, "headers": dict(self.headers), "json": json.loads(body)})
                queue = state.statuses.get(self.path, [])
                status = queue.pop(0) if len(queue) > 1 else (queue[0] if queue else 200)
            reply = b"ok" if status < 300 else b"internal error for /services/T000/B000/" + SLACK_TOKEN.encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


# --------------------------------------------------------------------------- SMTP receiver


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], Message]] = []
        self.auth: list[tuple[bytes, bytes]] = []

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd handler hook
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), message_from_bytes(envelope.original_content)))
        return "250 OK"


@pytest.fixture
def smtp_server():
    aiosmtpd = pytest.importorskip("aiosmtpd.controller")
    inbox = Inbox()
    # Controller cannot take port 0 (it connects to its own port to check it is up).
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        inbox.port = probe.getsockname()[1]  # type: ignore[attr-defined]
    controller = aiosmtpd.Controller(inbox, hostname="127.0.0.1", port=inbox.port)
    controller.start()
    yield inbox
    controller.stop()


@pytest.fixture
def sleeps() -> list[float]:
    return []


def dispatcher(destinations, sleeps, **kw) -> AlertDispatcher:
    return AlertDispatcher(
        destinations,
        retry_policy=RetryPolicy(max_attempts=3, base_seconds=0.25, jitter=0.0),
        timeout=2.0,
        sleep=sleeps.append,
        **kw,
    )


# --------------------------------------------------------------------------- tests


def test_slack_payload_arrives(receiver: Receiver, sleeps: list[float]) -> None:
    path = f"/services/T000/B000/{SLACK_TOKEN}"
    results = dispatcher([SlackWebhookDestination(receiver.url(path))], sleeps).dispatch(ALERT)
    assert results == [DeliveryResult(results[0].destination, True, 1, None, 200)]
    [body] = receiver.bodies(path)
    assert body["text"].startswith("[ERROR] Competitor prices stale: 3 of 40")
    header, section, context, details = body["blocks"]
    assert header["type"] == "header" and "Competitor prices stale" in header["text"]["text"]
    assert section["text"]["text"] == ALERT.message
    assert "competitor_prices/freshness_check" in context["elements"][0]["text"] and "acme" in context["elements"][0]["text"]
    assert '"min_price": "19.90"' in details["text"]["text"]  # Decimal kept exact, as text
    assert SLACK_TOKEN not in results[0].destination


def test_generic_webhook_payload_and_headers(receiver: Receiver, sleeps: list[float]) -> None:
    dest = WebhookDestination(receiver.url("/hooks/calibrate"), {"Authorization": WEBHOOK_BEARER})
    [result] = dispatcher([dest], sleeps).dispatch(ALERT)
    assert result.ok
    [post] = [p for p in receiver.posts if p["path"] == "/hooks/calibrate"]
    assert post["headers"]["Authorization"] == WEBHOOK_BEARER
    body = post["json"]
    assert body["severity"] == "error" and body["title"] == ALERT.title and body["tenant"] == "acme"
    assert body["details"] == {"stale_listings": [11, 12, 13], "min_price": "19.90"}
    assert body["dedup_key"] == ALERT.key and body["dedup_key"].startswith("calibr-")
    assert "sent_at" in body
    assert WEBHOOK_BEARER not in repr(dest)


def test_pagerduty_events_v2_payload(receiver: Receiver, sleeps: list[float]) -> None:
    receiver.statuses["/v2/enqueue"] = [202]
    alert = Alert("critical", "Price push failing", "Shopify rejects updates", "price_push", "acme", {"failed": 5}, dedup_key="push-acme")
    dest = PagerDutyDestination(ROUTING_KEY, receiver.url("/v2/enqueue"))
    [result] = dispatcher([dest], sleeps).dispatch(alert)
    assert result.ok and result.status_code == 202
    [body] = receiver.bodies("/v2/enqueue")
    assert body["routing_key"] == ROUTING_KEY
    assert body["event_action"] == "trigger" and body["dedup_key"] == "push-acme"
    payload = body["payload"]
    assert payload["summary"] == "Price push failing: Shopify rejects updates"
    assert payload["source"] == "price_push" and payload["severity"] == "critical"
    assert payload["custom_details"]["failed"] == 5 and payload["custom_details"]["tenant"] == "acme"


def test_email_arrives(smtp_server: Inbox, sleeps: list[float]) -> None:
    dest = EmailDestination("127.0.0.1", smtp_server.port, "alerts@calibrate.example", ["ops@acme.example", "cto@acme.example"])
    [result] = dispatcher([dest], sleeps).dispatch(ALERT)
    assert result.ok, result.error
    [(mail_from, rcpts, msg)] = smtp_server.messages
    assert mail_from == "alerts@calibrate.example"
    assert rcpts == ["ops@acme.example", "cto@acme.example"]
    assert msg["Subject"] == "[Calibrate][ERROR] [acme] Competitor prices stale"
    assert msg["X-Calibrate-Dedup-Key"] == ALERT.key
    text = msg.get_payload(decode=True).decode()
    assert ALERT.message in text and "Source: competitor_prices/freshness_check" in text and '"19.90"' in text


def test_severity_filtering(receiver: Receiver, sleeps: list[float]) -> None:
    slack = SlackWebhookDestination(receiver.url("/slack"))
    pager = PagerDutyDestination(ROUTING_KEY, receiver.url("/pd"))  # error and above by default
    warning = Alert("warning", "Few offers", "only 2 offers", "offers_check")
    results = dispatcher([slack, pager], sleeps).dispatch(warning)
    assert [r.destination for r in results] == [slack.name]
    assert receiver.bodies("/pd") == []
    assert dispatcher([slack, pager], sleeps, min_severity="critical").dispatch(ALERT) == []


def test_500_gives_ok_false_after_retries_without_raising(receiver: Receiver, sleeps: list[float], caplog) -> None:
    path = f"/services/T000/B000/{SLACK_TOKEN}"
    receiver.statuses[path] = [500]
    caplog.set_level(logging.DEBUG)
    [result] = dispatcher([SlackWebhookDestination(receiver.url(path))], sleeps).dispatch(ALERT)
    assert not result.ok and result.status_code == 500 and result.attempts == 3
    assert result.error.startswith("HTTP 500")
    assert SLACK_TOKEN not in result.error  # the receiver echoed it back; it is scrubbed
    assert sleeps == [0.25, 0.5]
    assert len(receiver.bodies(path)) == 3
    assert SLACK_TOKEN not in caplog.text and "not delivered" in caplog.text


def test_transient_then_success(receiver: Receiver, sleeps: list[float]) -> None:
    receiver.statuses["/hook"] = [503, 429, 200]
    [result] = dispatcher([WebhookDestination(receiver.url("/hook"))], sleeps).dispatch(ALERT)
    assert result.ok and result.attempts == 3


def test_4xx_is_not_retried(receiver: Receiver, sleeps: list[float]) -> None:
    receiver.statuses["/hook"] = [400]
    [result] = dispatcher([WebhookDestination(receiver.url("/hook"))], sleeps).dispatch(ALERT)
    assert not result.ok and result.attempts == 1 and sleeps == []


def test_unreachable_destinations_do_not_raise(sleeps: list[float]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    destinations = [
        SlackWebhookDestination(f"http://127.0.0.1:{port}/services/T/B/{SLACK_TOKEN}"),
        PagerDutyDestination(ROUTING_KEY, f"http://127.0.0.1:{port}/v2/enqueue"),
        EmailDestination("127.0.0.1", port, "a@calibrate.example", ["b@acme.example"], "bot", SMTP_PASSWORD),
    ]
    results = dispatcher(destinations, sleeps).dispatch(ALERT)
    assert [r.ok for r in results] == [False, False, False]
    assert all(r.attempts == 3 and r.error for r in results)
    for r in results:
        assert SLACK_TOKEN not in r.error and ROUTING_KEY not in r.error and SMTP_PASSWORD not in r.error
        assert SLACK_TOKEN not in r.destination


def test_one_failing_destination_does_not_stop_the_others(receiver: Receiver, smtp_server: Inbox, sleeps: list[float]) -> None:
    receiver.statuses["/broken"] = [500]
    destinations = [
        WebhookDestination(receiver.url("/broken")),
        SlackWebhookDestination(receiver.url("/slack")),
        EmailDestination("127.0.0.1", smtp_server.port, "a@calibrate.example", ["b@acme.example"]),
    ]
    results = dispatcher(destinations, sleeps).dispatch(ALERT)
    assert [r.ok for r in results] == [False, True, True]
    assert len(receiver.bodies("/slack")) == 1 and len(smtp_server.messages) == 1


def test_secrets_are_masked_in_repr_and_str() -> None:
    slack = SlackWebhookDestination(f"https://hooks.slack.com/services/T000/B000/{SLACK_TOKEN}")
    hook = WebhookDestination(f"https://hooks.example/in?token={SLACK_TOKEN}", {"Authorization": WEBHOOK_BEARER})
    pager = PagerDutyDestination(ROUTING_KEY)
    mail = EmailDestination("smtp.example", 587, "a@calibrate.example", ["b@acme.example"], "bot", SMTP_PASSWORD, True)
    everything = repr(AlertDispatcher([slack, hook, pager, mail])) + "".join(str(d) + d.name for d in (slack, hook, pager, mail))
    for secret in (SLACK_TOKEN, ROUTING_KEY, SMTP_PASSWORD, WEBHOOK_BEARER):
        assert secret not in everything
    assert "hooks.slack.com" in repr(slack) and "events.pagerduty.com" in repr(pager)
    assert mask_url("https://hooks.slack.com/services/T/B/x") == "https://hooks.slack.com/***"
    assert mask_url("http://127.0.0.1:9/") == "http://127.0.0.1:9"


def test_from_env(receiver: Receiver, smtp_server: Inbox, sleeps: list[float]) -> None:
    env = {
        "CALIBR_ALERT_SLACK_WEBHOOK_URL": receiver.url(f"/services/T/B/{SLACK_TOKEN}"),
        "CALIBR_ALERT_WEBHOOK_URL": receiver.url("/hook"),
        "CALIBR_ALERT_SMTP_HOST": "127.0.0.1",
        "CALIBR_ALERT_SMTP_PORT": str(smtp_server.port),
        "CALIBR_ALERT_SMTP_FROM": "alerts@calibrate.example",
        "CALIBR_ALERT_SMTP_TO": "ops@acme.example, cto@acme.example",
        "CALIBR_ALERT_PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
        "CALIBR_ALERT_PAGERDUTY_URL": receiver.url("/v2/enqueue"),
        "CALIBR_ALERT_MIN_SEVERITY": "warning",
        "UNRELATED": "x",
    }
    alerts = AlertDispatcher.from_env(env, sleep=sleeps.append)
    assert [d.kind for d in alerts.destinations] == ["slack", "webhook", "email", "pagerduty"]
    assert alerts.min_severity == "warning"
    assert alerts.dispatch(Alert("info", "fyi", "", "x")) == []
    results = alerts.dispatch(ALERT)
    assert [r.ok for r in results] == [True, True, True, True], [r.error for r in results]
    assert len(receiver.bodies("/v2/enqueue")) == 1
    assert smtp_server.messages[0][1] == ["ops@acme.example", "cto@acme.example"]
    assert AlertDispatcher.from_env({}).destinations == []


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"CALIBR_ALERT_MIN_SEVERITY": "loud"}, "CALIBR_ALERT_MIN_SEVERITY"),
        ({"CALIBR_ALERT_SLACK_WEBHOOK_URL": "hooks.slack.com/services/x"}, "CALIBR_ALERT_SLACK_WEBHOOK_URL"),
        ({"CALIBR_ALERT_SMTP_HOST": "smtp.example", "CALIBR_ALERT_SMTP_FROM": "a@b.example"}, "CALIBR_ALERT_SMTP_TO"),
        ({"CALIBR_ALERT_SMTP_HOST": "h", "CALIBR_ALERT_SMTP_PORT": "smtp", "CALIBR_ALERT_SMTP_FROM": "a@b.c", "CALIBR_ALERT_SMTP_TO": "d@e.f"}, "CALIBR_ALERT_SMTP_PORT"),
        ({"CALIBR_ALERT_SMTP_HOST": "h", "CALIBR_ALERT_SMTP_FROM": "a@b.c", "CALIBR_ALERT_SMTP_TO": "d@e.f", "CALIBR_ALERT_SMTP_STARTTLS": "maybe"}, "STARTTLS"),
        ({"CALIBR_ALERT_PAGERDUTY_ROUTING_KEY": ROUTING_KEY, "CALIBR_ALERT_PAGERDUTY_URL": "ftp://x/" + ROUTING_KEY}, "PAGERDUTY"),
    ],
)
def test_from_env_config_errors(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(AlertConfigError) as info:
        AlertDispatcher.from_env(env)
    assert fragment in str(info.value)
    assert ROUTING_KEY not in str(info.value)


def test_alert_validation() -> None:
    with pytest.raises(ValueError, match="severity"):
        Alert("fatal", "t", "m", "s")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Alert("info", " ", "m", "s")
    with pytest.raises(ValueError):
        Alert("info", "t", "m", "")
    assert Alert("WARNING", "t", "m", "s").severity == "warning"  # type: ignore[arg-type]
    assert Alert("info", "t", "m", "s").key == Alert("info", "t", "other message", "s").key
    assert Alert("info", "t", "m", "s", tenant="a").key != Alert("info", "t", "m", "s", tenant="b").key


def test_dispatching_garbage_does_not_raise(sleeps: list[float]) -> None:
    [result] = dispatcher([WebhookDestination("http://127.0.0.1:9/")], sleeps).dispatch("not an alert")  # type: ignore[arg-type]
    assert not result.ok and "not a valid alert" in result.error

"""POST /api/v1/webhooks/stripe mounted in a bare FastAPI app served by uvicorn on a loopback
ephemeral port: signature checks (valid, wrong secret, tampered body, expired timestamp,
replayed event), idempotency, unknown types, sandbox deliveries with retries, the sensor."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
import requests
from fastapi import FastAPI, Header, HTTPException
from sqlalchemy import func, select

from calibr_pipeline.sandbox.stripe_api import sign
from calibr_pipeline.services.stripe_sync import WEBHOOK_EVENT, connect_account
from calibr_pipeline.warehouse.engine import session_scope
from calibr_pipeline.warehouse.models import EventLog, OutboxEvent, StripeWebhookEvent, StripeWebhookRejection

from .conftest import WEBHOOK_SECRET

pytestmark = pytest.mark.integration


class _Uvicorn:
    def __init__(self, app):
        import uvicorn

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(5)
        self.sock.close()


def _require_token(authorization: str = Header(default="")):
    if authorization != "Bearer reader":
        raise HTTPException(401, "token required")


@pytest.fixture
def api(seeded, stripe_world, client):
    from calibr_pipeline.api.stripe_webhooks import WEBHOOK_PATH, build_router

    url, tenant_id = seeded
    sandbox, _ = stripe_world
    account = connect_account(url, client, tenant_slug="acme", code=sandbox.authorization_code(sandbox.create_account()))
    app = FastAPI()
    failing = {"n": 0}

    @app.middleware("http")
    async def flaky(request, call_next):  # lets a test make the endpoint fail its first deliveries
        if failing["n"] > 0:
            failing["n"] -= 1
            from fastapi.responses import PlainTextResponse

            return PlainTextResponse("down", status_code=503)
        return await call_next(request)

    app.include_router(build_router(_require_token, _require_token, warehouse_url=url))
    with _Uvicorn(app) as base:
        yield {"url": url, "base": base, "endpoint": base + WEBHOOK_PATH, "account": account, "sandbox": sandbox, "failing": failing, "tenant_id": tenant_id}


def _event(account: str, type_: str = "payment_intent.succeeded", event_id: str = "evt_test_1") -> str:
    return json.dumps({"id": event_id, "object": "event", "type": type_, "account": account, "created": 1763640000, "api_version": "2025-01-27.acacia",
                       "livemode": False, "data": {"object": {"id": "pi_1", "object": "payment_intent", "created": 1763640000, "amount": 1000}}})


def _post(api, body: str, *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None, header: str | None = None):
    signature = header or sign(body, secret, int(time.time()) if timestamp is None else timestamp)
    return requests.post(api["endpoint"], data=body.encode(), headers={"Stripe-Signature": signature, "Content-Type": "application/json"}, timeout=10)


def _counts(url):
    with session_scope(url) as session:
        return (session.scalar(select(func.count()).select_from(OutboxEvent).where(OutboxEvent.event_type == WEBHOOK_EVENT)),
                dict(session.execute(select(StripeWebhookRejection.reason, func.count()).group_by(StripeWebhookRejection.reason)).all()))


def test_a_valid_event_is_queued_once_and_a_resend_changes_nothing(api):
    body = _event(api["account"])
    first = _post(api, body)
    assert first.status_code == 200 and first.json() == {"received": True, "status": "queued"}
    again = _post(api, body)  # Stripe resends the same event id (a retried delivery)
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    assert _counts(api["url"]) == (1, {})
    with session_scope(api["url"]) as session:
        outbox = session.scalar(select(OutboxEvent).where(OutboxEvent.event_type == WEBHOOK_EVENT))
        assert outbox.payload == {"stripe_event_id": "evt_test_1", "type": "payment_intent.succeeded", "account_id": api["account"],
                                  "object_id": "pi_1", "object_created": 1763640000, "day": "2025-11-20"}
        assert outbox.tenant_id == api["tenant_id"] and outbox.dispatched_at is None  # work for the sensor, none done inline
        assert session.scalar(select(func.count()).select_from(EventLog).where(EventLog.event_type == WEBHOOK_EVENT)) == 1


@pytest.mark.parametrize(
    "case, reason",
    [("wrong secret", "signature"), ("tampered body", "signature"), ("expired timestamp", "timestamp"), ("no signature", "signature"),
     ("garbage header", "signature")],
)
def test_invalid_signatures_are_401_counted_and_write_nothing(api, case, reason):
    body = _event(api["account"])
    if case == "wrong secret":
        response = _post(api, body, secret="whsec_someone_else")
    elif case == "tampered body":
        header = sign(body, WEBHOOK_SECRET, int(time.time()))
        response = _post(api, body.replace('"amount": 1000', '"amount": 1'), header=header)
    elif case == "expired timestamp":
        response = _post(api, body, timestamp=int(time.time()) - 3600)
    elif case == "no signature":
        response = requests.post(api["endpoint"], data=body, timeout=10)
    else:
        response = _post(api, body, header="t=abc,v1=zzz")
    assert response.status_code == 401
    assert "Traceback" not in response.text and WEBHOOK_SECRET not in response.text
    assert _counts(api["url"]) == (0, {reason: 1})
    from calibr_pipeline.api.stripe_webhooks import SIGNATURE_FAILURES

    assert SIGNATURE_FAILURES.labels(reason)._value.get() >= 1


def test_a_signed_body_that_is_not_an_event_is_400(api):
    response = _post(api, "not json at all")
    assert response.status_code == 400
    assert _counts(api["url"]) == (0, {"body": 1})


def test_unknown_types_and_unknown_accounts_are_recorded_and_ignored(api):
    assert _post(api, _event(api["account"], "issuing_card.created", "evt_unknown")).json()["status"] == "ignored"
    assert _post(api, _event("acct_not_ours", "payment_intent.succeeded", "evt_foreign")).json()["status"] == "ignored"
    with session_scope(api["url"]) as session:
        recorded = dict(session.execute(select(StripeWebhookEvent.event_id, StripeWebhookEvent.status)).all())
    assert recorded == {"evt_unknown": "ignored", "evt_foreign": "ignored"}
    assert _counts(api["url"])[0] == 0


def test_sandbox_deliveries_are_signed_and_retried_until_accepted(api):
    sandbox = api["sandbox"]
    sandbox.add_webhook_endpoint(api["endpoint"], WEBHOOK_SECRET)
    api["failing"]["n"] = 2  # the endpoint is down for the first two attempts
    sandbox.create(api["account"], "product", {"name": "Tent", "metadata": {"sku": "A"}})
    sandbox.wait_for_deliveries()
    attempts = [d.status for d in sandbox.deliveries]
    assert attempts == [503, 503, 200]
    assert _counts(api["url"])[0] == 1
    # a receiver with the wrong secret never accepts: the sandbox gives up after its schedule
    sandbox.endpoints.clear()
    sandbox.add_webhook_endpoint(api["endpoint"], "whsec_wrong")
    sandbox.create(api["account"], "product", {"name": "Stove"})
    sandbox.wait_for_deliveries()
    assert [d.status for d in sandbox.deliveries[3:]] == [401] * (1 + len(sandbox.retry_schedule))


def test_stats_route_needs_the_read_token(api):
    assert requests.get(api["base"] + "/api/v1/stripe/webhooks/stats", timeout=5).status_code == 401
    _post(api, _event(api["account"]))
    stats = requests.get(api["base"] + "/api/v1/stripe/webhooks/stats", headers={"Authorization": "Bearer reader"}, timeout=5).json()
    assert stats == {"events": {"queued": 1}, "rejections": {}, "backlog": 1}


def test_the_sensor_turns_webhook_events_into_a_sync_of_that_day(api, instance):
    import dagster as dg

    from calibr_pipeline.defs.resources import WarehouseResource
    from calibr_pipeline.defs.stripe.definitions import stripe_webhook_sensor

    _post(api, _event(api["account"]))
    context = dg.build_sensor_context(instance=instance, resources={"warehouse": WarehouseResource(url=api["url"])})
    result = stripe_webhook_sensor(context)
    assert len(result.run_requests) == 1
    request = result.run_requests[0]
    assert request.partition_key == dg.MultiPartitionKey({"date": "2025-11-20", "tenant": "acme"})


def test_concurrent_deliveries_of_one_event_queue_it_once(api):
    from concurrent.futures import ThreadPoolExecutor

    body = _event(api["account"], event_id="evt_concurrent")
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda _: _post(api, body), range(6)))
    assert all(a.status_code == 200 for a in answers)
    statuses = sorted(a.json()["status"] for a in answers)
    assert statuses == ["duplicate"] * 5 + ["queued"]
    assert _counts(api["url"])[0] == 1

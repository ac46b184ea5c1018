"""Every endpoint over real HTTP with a valid token: what it answers and what it writes.

Writes that launch work leave the same outbox event the CLI leaves (the rules_apply_sensor
launches the run) and are audited with the token id as actor.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select, text

from calibr_pipeline.warehouse.engine import get_engine, session_scope
from calibr_pipeline.warehouse.models import EventLog, OutboxEvent, RuleRun, RuleTarget

pytestmark = pytest.mark.integration


def _ok(response, status=200):
    assert response.status_code == status, response.text
    return response.json()


def test_competitors_add_list_and_observations(api):
    acme = api.tenants["acme"]
    other = next(l for l in api.world.listings_for("acme") if l.url != acme.competitor_url)
    body = _ok(api.request("POST", "/api/v1/projects/acme/competitors", acme.write_token,
                           json={"sku": other.our_sku, "url": other.url, "currency": "usd", "name": "Rival Outfitters"}), 201)
    assert body["created"] is True and body["eventId"] and body["listing"]["sku"] == other.our_sku
    with session_scope(api.url) as session:
        event = session.get(OutboxEvent, body["eventId"])
        assert event.event_type == "competitor.added" and event.payload["listing_id"] == body["listing"]["id"]
        logged = session.scalar(select(EventLog).where(EventLog.correlation_id == body["eventId"]))
        assert logged.actor == f"api-token:{acme.write_token_id}"
    again = _ok(api.request("POST", "/api/v1/projects/acme/competitors", acme.write_token, json={"sku": other.our_sku, "url": other.url}))
    assert again["created"] is False and again["eventId"] is None and again["listing"]["id"] == body["listing"]["id"]

    listed = _ok(api.request("GET", "/api/v1/projects/acme/competitors", acme.read_token))["items"]
    first = next(i for i in listed if i["id"] == acme.listing_id)
    assert first["status"]["status"] == "ok" and {i["project"] for i in listed} == {"acme"}
    assert {i["id"] for i in _ok(api.request("GET", "/api/v1/competitors", acme.read_token))["items"]} == {i["id"] for i in listed}
    page1 = _ok(api.request("GET", "/api/v1/competitors?limit=1", acme.read_token))
    page2 = _ok(api.request("GET", f"/api/v1/competitors?limit=1&cursor={page1['nextCursor']}", acme.read_token))
    assert page1["items"][0]["id"] != page2["items"][0]["id"]
    observations = _ok(api.request("GET", f"/api/v1/competitors/{acme.listing_id}/observations", acme.read_token))["items"]
    assert [o["amount"] for o in observations] == ["12.34"]


def test_rules_create_list_get_and_materialize(api):
    acme = api.tenants["acme"]
    rule = {"name": "Beat by 2%", "transform": {"kind": "percent_change", "value": "-2"}, "scope": {"kind": "project"}}
    created = _ok(api.request("POST", "/api/v1/projects/acme/rules", acme.write_token, json=rule), 201)
    assert created["name"] == "Beat by 2%" and created["definition"]["transform"]["kind"] == "percent_change"
    names = [r["name"] for r in _ok(api.request("GET", "/api/v1/projects/acme/rules", acme.read_token))["items"]]
    assert "Beat by 2%" in names and "Raise 10%" in names
    assert _ok(api.request("GET", f"/api/v1/rules/{created['id']}", acme.read_token))["id"] == created["id"]

    result = _ok(api.request("POST", f"/api/v1/rules/{created['id']}/materialize", acme.write_token), 201)
    assert result["targetCount"] == 10 and result["toWrite"] == 10 and result["estimatedDuration"] > 0 and result["state"] == "QUEUED"
    with session_scope(api.url) as session:
        run = session.get(RuleRun, result["runId"])
        assert run.state == "QUEUED" and run.requested_by == f"api-token:{acme.write_token_id}"
        targets = session.scalars(select(RuleTarget).where(RuleTarget.run_id == run.id)).all()
        assert all(t.to_price == (t.from_price * Decimal("0.98")).quantize(Decimal("0.01")) for t in targets)


def test_runs_list_filters_and_pages(api):
    acme = api.tenants["acme"]
    everything = _ok(api.request("GET", "/api/v1/runs?limit=500", acme.read_token))["items"]
    ids = [r["runId"] for r in everything]
    assert {acme.queued_run, acme.applied_run, acme.partial_run, acme.applying_run} <= set(ids)
    walked, cursor = [], None
    while True:
        page = _ok(api.request("GET", "/api/v1/runs?limit=2" + (f"&cursor={cursor}" if cursor else ""), acme.read_token))
        walked += [r["runId"] for r in page["items"]]
        cursor = page["nextCursor"]
        if not cursor:
            break
    assert walked == ids
    partial = _ok(api.request("GET", "/api/v1/runs?state=PARTIAL", acme.read_token))["items"]
    assert [r["runId"] for r in partial] == [acme.partial_run]
    by_rule = _ok(api.request("GET", f"/api/v1/runs?rule={acme.rule_id}&project=acme", acme.read_token))["items"]
    assert acme.partial_run not in {r["runId"] for r in by_rule} and acme.applied_run in {r["runId"] for r in by_rule}
    assert _ok(api.request("GET", "/api/v1/runs?since=2999-01-01T00:00:00Z", acme.read_token))["items"] == []


def test_run_detail_targets_and_explain(api):
    acme = api.tenants["acme"]
    run = _ok(api.request("GET", f"/api/v1/runs/{acme.applied_run}", acme.read_token))
    assert run["state"] == "APPLIED" and run["progress"] == 1.0 and run["targets"]["byState"]["APPLIED"] == 10
    assert run["timings"]["applySeconds"] is not None
    queued = _ok(api.request("GET", f"/api/v1/runs/{acme.queued_run}", acme.read_token))
    assert queued["progress"] == 0.0 and queued["targets"]["byState"]["PENDING"] == 10
    pages, cursor = [], None
    while True:
        page = _ok(api.request("GET", f"/api/v1/runs/{acme.applied_run}/targets?limit=3" + (f"&cursor={cursor}" if cursor else ""), acme.read_token))
        pages.append(page["items"])
        cursor = page["nextCursor"]
        if not cursor:
            break
    assert [len(p) for p in pages] == [3, 3, 3, 1]
    failed = _ok(api.request("GET", f"/api/v1/runs/{acme.partial_run}/targets?state=FAILED", acme.read_token))["items"]
    assert sorted(t["id"] for t in failed) == sorted(acme.failed_target_ids)
    explained = _ok(api.request("GET", f"/api/v1/targets/{acme.target_id}/explain", acme.read_token))
    assert Decimal(explained["explain"]["final_price"]) == Decimal(explained["target"]["toPrice"])
    assert [a["eventType"] for a in explained["auditTrail"]] == ["price.applied"]


def test_apply_queues_once_and_conflicts_after(api):
    acme = api.tenants["acme"]
    body = _ok(api.request("POST", f"/api/v1/runs/{acme.queued_run}/apply", acme.write_token), 202)
    assert body["status"] == "queued" and body["queuePosition"] >= 1 and body["runId"] == acme.queued_run
    with session_scope(api.url) as session:
        event = session.get(OutboxEvent, body["eventId"])
        assert event.event_type == "job.rules.apply" and event.payload == {"run_id": acme.queued_run, "kind": "apply"}
        assert session.scalar(select(EventLog.actor).where(EventLog.correlation_id == event.id)) == f"api-token:{acme.write_token_id}"
    before = api.counts()
    again = api.request("POST", f"/api/v1/runs/{acme.queued_run}/apply", acme.write_token)
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"
    applying = api.request("POST", f"/api/v1/runs/{acme.applying_run}/apply", acme.write_token)
    assert applying.status_code == 409 and applying.json()["error"]["details"]["state"] == "APPLYING"
    applied = api.request("POST", f"/api/v1/runs/{acme.applied_run}/apply", acme.write_token)
    assert applied.status_code == 409
    assert api.counts() == before


def test_apply_event_is_what_the_sensor_launches(api):
    """The API's event is the CLI's: the existing sensor turns it into an apply_run request."""
    import dagster as dg

    from calibr_pipeline.defs.pricing.sensors import rules_apply_sensor
    from calibr_pipeline.defs.resources import WarehouseResource

    rival = api.tenants["rival"]
    body = _ok(api.request("POST", f"/api/v1/runs/{rival.queued_run}/apply", rival.write_token), 202)
    with dg.instance_for_test() as instance:
        tick = rules_apply_sensor(dg.build_sensor_context(instance=instance, resources={"warehouse": WarehouseResource(url=api.url)}))
    requests_by_key = {r.run_key: r for r in tick.run_requests}
    assert requests_by_key[body["eventId"]].partition_key == rival.queued_run
    assert requests_by_key[body["eventId"]].job_name == "apply_run"


def test_retry_failed_revert_and_reconcile(api):
    acme = api.tenants["acme"]
    first, second = sorted(acme.failed_target_ids)
    unknown = api.request("POST", f"/api/v1/runs/{acme.partial_run}/retry-failed", acme.write_token, json={"targetIds": [first, 10**9]})
    assert unknown.status_code == 422 and unknown.json()["error"]["details"]["unknownTargetIds"] == [10**9]
    body = _ok(api.request("POST", f"/api/v1/runs/{acme.partial_run}/retry-failed", acme.write_token, json={"targetIds": [first]}), 202)
    assert body["retriedCount"] == 1 and body["status"] == "queued"
    assert body["targets"] == [{"id": first, "skuId": body["targets"][0]["skuId"], "previousError": "http_5xx: Shopify answered 503", "status": "APPLYING"}]
    with session_scope(api.url) as session:
        # The run stays PARTIAL until the apply the sensor launches claims it.
        assert session.get(RuleRun, acme.partial_run).state == "PARTIAL"
        assert session.get(RuleTarget, first).state == "APPLYING" and session.get(RuleTarget, second).state == "FAILED"
        assert session.get(OutboxEvent, body["eventId"]).payload["run_id"] == acme.partial_run
    # Its apply is queued now: retrying again is a state conflict.
    assert api.request("POST", f"/api/v1/runs/{acme.partial_run}/retry-failed", acme.write_token, json={}).status_code == 409

    # The partial run (Lower 5%) was applied after the applied run (Raise 10%) to the same
    # variants: reading the shop back, every price of the first run is a mismatch.
    report = _ok(api.request("POST", f"/api/v1/runs/{acme.applied_run}/reconcile", acme.write_token, json={}))
    assert report["checked"] == 10 and report["matched"] == 0 and len(report["mismatches"]) == 10
    with session_scope(api.url) as session:
        later = {t.sku: t.to_price for t in session.scalars(select(RuleTarget).where(RuleTarget.run_id == acme.partial_run))}
    assert all(Decimal(m["actual"]) == later[m["skuId"]] for m in report["mismatches"] if m["skuId"] in later)

    revert = _ok(api.request("POST", f"/api/v1/runs/{acme.applied_run}/revert", acme.write_token), 202)
    assert revert["status"] == "queued" and revert["sourceRunId"] == acme.applied_run and revert["runId"] != acme.applied_run
    detail = _ok(api.request("GET", f"/api/v1/runs/{revert['runId']}", acme.read_token))
    assert detail["kind"] == "revert" and detail["state"] == "QUEUED"
    assert api.request("POST", f"/api/v1/runs/{acme.queued_run}/revert", acme.write_token).status_code == 409


def test_audit_and_price_changes_are_the_tenants_own_with_filters_and_cursors(api):
    acme = api.tenants["acme"]
    events, cursor = [], None
    while True:
        page = _ok(api.request("GET", "/api/v1/audit?limit=7" + (f"&cursor={cursor}" if cursor else ""), acme.read_token))
        events += page["items"]
        cursor = page["nextCursor"]
        if not cursor:
            break
    assert events and {e["tenant"] for e in events} == {"acme"}
    assert [e["id"] for e in events] == sorted({e["id"] for e in events})
    run_events = _ok(api.request("GET", f"/api/v1/audit?run={acme.applied_run}&eventType=automation.run.queued", acme.read_token))["items"]
    assert [e["run_id"] for e in run_events] == [acme.applied_run]
    mine = _ok(api.request("GET", f"/api/v1/audit?actor=api-token:{acme.write_token_id}", acme.read_token))["items"]
    assert all(e["actor"] == f"api-token:{acme.write_token_id}" for e in mine)
    changes = _ok(api.request("GET", f"/api/v1/price-changes?run={acme.applied_run}&limit=500", acme.read_token))["items"]
    assert len(changes) == 10 and {c["eventType"] for c in changes} == {"price.applied"} and {c["project"] for c in changes} == {"acme"}
    assert _ok(api.request("GET", "/api/v1/price-changes?until=2000-01-01T00:00:00Z", acme.read_token))["items"] == []


def test_metrics_count_requests_per_route_template(api):
    acme = api.tenants["acme"]
    api.request("GET", f"/api/v1/runs/{acme.applied_run}", acme.read_token)
    api.request("GET", "/api/v1/runs/nope", acme.read_token)
    text = api.request("GET", "/metrics").text
    assert 'calibr_api_requests_total{code="200",method="GET",route="/api/v1/runs/{run_id}"}' in text
    assert 'calibr_api_requests_total{code="404",method="GET",route="/api/v1/runs/{run_id}"}' in text
    assert 'calibr_api_request_duration_seconds_bucket{le="0.1",method="GET",route="/api/v1/runs/{run_id}"}' in text
    assert acme.applied_run not in text and acme.read_token not in text


def test_no_secret_anywhere_after_the_module_ran(api, caplog):
    """Shop access tokens and API tokens never appear in responses, metrics, errors, logs,
    event payloads or the warehouse's tables (shop tokens are ciphertext there)."""
    import logging

    from calibr_pipeline_tests.api.endpoints import endpoints

    shop_tokens = [api.world.tenant(slug).access_token for slug in api.tenants]
    api_tokens = [t for d in api.tenants.values() for t in (d.read_token, d.write_token)] + [api.revoked_token, api.expired_token]
    caplog.set_level(logging.DEBUG)
    texts = []
    for tenant in api.tenants.values():
        for name, method, path, body, write in endpoints(tenant):
            if not write:
                texts.append(api.request(method, path, tenant.read_token).text)
        texts.append(api.request("POST", f"/api/v1/runs/{tenant.applied_run}/reconcile", tenant.read_token).text)  # 403
        texts.append(api.request("GET", "/api/v1/runs/x", tenant.read_token + "x").text)  # 401
    texts += [api.request("GET", "/metrics").text, api.request("GET", "/api/v1/openapi.json").text]
    texts.append(caplog.text)
    with get_engine(api.url).connect() as connection:
        for table in ("event_log", "outbox", "outbox_dead_letters", "rule_runs", "rule_targets", "price_audit", "shops", "api_tokens", "alert_deliveries"):
            texts += [repr(row) for row in connection.execute(text(f"SELECT * FROM {table}"))]
    blob = "\n".join(texts)
    assert len(blob) > 10_000
    leaked = [s[:10] for s in shop_tokens + api_tokens if s in blob]
    assert leaked == []

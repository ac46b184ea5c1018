"""/health and /health/detailed over real loopback HTTP: sandbox shop up, shop down, warehouse down."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from sqlalchemy import update

from calibr_pipeline.demo import seed_tenant_shops
from calibr_pipeline.sandbox.runner import SandboxWorld, TenantSpec
from calibr_pipeline.warehouse.engine import session_scope
from calibr_pipeline.warehouse.models import OutboxEvent, Shop
from calibr_pipeline.warehouse.types import utcnow

from .conftest import scrape

pytestmark = pytest.mark.integration
TENANT = "health-shop"
DEAD_POSTGRES = "postgresql+psycopg2://calibr:not-a-secret@127.0.0.1:1/warehouse"


@pytest.fixture
def world():
    with SandboxWorld([TenantSpec(TENANT, "USD", 5, n_competitors=1)], seed=3) as world:
        yield world


def _beat(instance) -> None:
    from dagster._daemon.types import DaemonHeartbeat

    for kind in instance.get_required_daemon_types():
        instance.add_daemon_heartbeat(DaemonHeartbeat(time.time() - 5, kind, "test-daemon", None))


def _detailed(server, **params) -> requests.Response:
    response = requests.get(f"{server.url}/health/detailed", params=params, timeout=15)
    assert response.headers["Content-Type"].startswith("application/json")
    return response


def test_liveness(sqlite_warehouse_url, start_server):
    server = start_server(sqlite_warehouse_url)
    response = requests.get(f"{server.url}/health", timeout=5)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy" and body["timestamp"].endswith("+00:00")
    assert server.host == "127.0.0.1"


def test_detailed_healthy_then_degraded_when_the_shop_stops(world, warehouse_url, dagster_instance, start_server):
    seed_tenant_shops(warehouse_url, world)
    _beat(dagster_instance)
    server = start_server(warehouse_url, instance=dagster_instance)

    response = _detailed(server)
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "healthy", body
    checks = body["checks"]
    assert checks["database"]["ok"] and checks["database"]["revision"] == checks["database"]["expected_revision"]
    shop = checks["connectors"]["shops"][f"{TENANT}/main"]
    assert shop["reachable"] is True and shop["currency"] == "USD" and shop["http_status"] == 200
    assert checks["event_bus"] == {"ok": True, "outbox_backlog": 0, "oldest_pending_age_seconds": 0.0, "dead_letters": 0, "dead_letters_24h": 0}
    assert checks["worker_queue"]["ok"] and checks["worker_queue"]["queued_runs"] == 0
    assert checks["worker_queue"]["daemon_heartbeat_age_seconds"] < 60
    assert "access_token" not in response.text and world.tenant(TENANT).access_token not in response.text

    world.admin.stop()
    response = _detailed(server)
    body = response.json()
    assert response.status_code == 200
    assert body["status"] == "degraded" and body["failing"] == ["connectors"]
    shop = body["checks"]["connectors"]["shops"][f"{TENANT}/main"]
    assert shop["reachable"] is False and "cannot connect" in shop["reason"]
    assert TENANT in body["checks"]["connectors"]["reason"]
    assert _detailed(server, strict="1").status_code == 503


def test_detailed_reports_a_rejected_token_and_a_stuck_outbox(world, sqlite_warehouse_url, start_server):
    url = sqlite_warehouse_url
    seed_tenant_shops(url, world)
    with session_scope(url) as session:
        session.execute(update(Shop).values(access_token="shpat_wrong_token_for_test"))
        session.add(OutboxEvent(tenant_id=None, event_type="competitor.listing.added", payload={}, created_at=utcnow() - timedelta(hours=1)))
    body = _detailed(start_server(url)).json()
    assert body["status"] == "degraded" and body["failing"] == ["connectors", "event_bus"]
    shop = body["checks"]["connectors"]["shops"][f"{TENANT}/main"]
    assert shop["reachable"] is False and shop["http_status"] == 401
    assert body["checks"]["event_bus"]["outbox_backlog"] == 1 and "sensors" in body["checks"]["event_bus"]["reason"]
    assert body["checks"]["worker_queue"]["skipped"] is True


def test_worker_queue_without_daemon_is_degraded(sqlite_warehouse_url, dagster_instance, start_server):
    body = _detailed(start_server(sqlite_warehouse_url, instance=dagster_instance)).json()
    assert body["status"] == "degraded" and body["failing"] == ["worker_queue"]
    assert "no Dagster daemon heartbeat" in body["checks"]["worker_queue"]["reason"]


def test_dead_warehouse_degrades_and_metrics_still_answer(start_server):
    server = start_server(DEAD_POSTGRES)
    started = time.monotonic()
    response = _detailed(server)
    body = response.json()
    assert response.status_code == 200
    assert body["status"] == "degraded"
    assert set(body["failing"]) == {"database", "connectors", "event_bus"}
    assert "cannot reach the warehouse" in body["checks"]["database"]["reason"]
    assert "not-a-secret" not in response.text and "Traceback" not in response.text

    m = scrape(server.url)
    assert m.value("calibr_warehouse_up") == 0
    assert "calibr_rule_runs" not in m.families
    assert m.value("calibr_warehouse_query_duration_seconds_count") == 1
    assert time.monotonic() - started < 10


def test_missing_sqlite_file_is_down_and_not_created(tmp_path, start_server):
    path = tmp_path / "nowhere" / "warehouse.db"
    server = start_server(f"sqlite:///{path}")
    assert scrape(server.url).value("calibr_warehouse_up") == 0
    body = _detailed(server).json()
    assert body["status"] == "degraded" and "does not exist" in body["checks"]["database"]["reason"]
    assert not Path(path).exists()


def test_http_metrics_count_this_tests_requests(sqlite_warehouse_url, start_server):
    server = start_server(sqlite_warehouse_url)
    for _ in range(3):
        assert requests.get(f"{server.url}/health", timeout=5).status_code == 200
    assert requests.head(f"{server.url}/health", timeout=5).status_code == 200
    not_found = requests.get(f"{server.url}/nope?x=1", timeout=5)
    assert not_found.status_code == 404 and not_found.json()["error"] == "not found"
    assert requests.post(f"{server.url}/metrics", timeout=5).status_code == 405
    scrape(server.url)  # this scrape is counted after it is answered: it shows in the next one

    m = scrape(server.url)
    assert m.value("calibr_http_requests_total", handler="/health", method="GET", code="200") == 3
    assert m.value("calibr_http_requests_total", handler="/health", method="HEAD", code="200") == 1
    assert m.value("calibr_http_requests_total", handler="other", method="GET", code="404") == 1
    assert m.value("calibr_http_requests_total", handler="/metrics", method="POST", code="405") == 1
    assert m.value("calibr_http_requests_total", handler="/metrics", method="GET", code="200") == 1
    assert m.value("calibr_http_request_duration_seconds_count", handler="/health") == 4
    assert m.value("calibr_http_request_duration_seconds_bucket", handler="/health", le="+Inf") == 4
    assert m.families["calibr_http_requests"].type == "counter"

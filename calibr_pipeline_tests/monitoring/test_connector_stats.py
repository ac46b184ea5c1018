"""The persisted connector request aggregate: record() upserts, the recorder flushes, on both backends."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from calibr_pipeline.monitoring.connector_stats import (
    BUCKET_COLUMNS,
    DURATION_BUCKETS,
    Aggregate,
    ConnectorStatsRecorder,
    connector_request_stats,
    read_totals,
    record,
    status_class,
)
from calibr_pipeline.warehouse.engine import get_engine

T = connector_request_stats
MINUTE = datetime(2026, 11, 20, 6, 15, 42, tzinfo=UTC)


@pytest.fixture
def stats_url(warehouse_url):
    connector_request_stats.create(get_engine(warehouse_url), checkfirst=True)
    return warehouse_url


def test_status_class():
    assert [status_class(s) for s in (200, 204, 301, 404, 429, 500, 503, None)] == ["2xx", "2xx", "3xx", "4xx", "429", "5xx", "5xx", "error"]
    assert status_class(200, throttled=True) == "throttled"


def test_aggregate_buckets_are_cumulative():
    aggregate = Aggregate.of([0.01, 0.05, 0.3, 7.0, 120.0])
    assert aggregate.count == 5 and aggregate.sum_seconds == pytest.approx(127.36)
    assert dict(zip(DURATION_BUCKETS, aggregate.buckets)) == {
        0.05: 2, 0.1: 2, 0.25: 2, 0.5: 3, 1.0: 3, 2.5: 3, 5.0: 3, 10.0: 4, 30.0: 4, 60.0: 4,
    }
    assert BUCKET_COLUMNS[0] == "le_0_05" and BUCKET_COLUMNS[-1] == "le_60"


def test_record_adds_to_the_same_row(stats_url):
    engine = get_engine(stats_url)
    with engine.begin() as connection:
        record(connection, "shopify_admin", "2xx", Aggregate.of([0.2, 0.4]), tenant_id=None, dagster_run_id="run-1", minute=MINUTE)
        record(connection, "shopify_admin", "2xx", Aggregate.of([3.0]), tenant_id=None, dagster_run_id="run-1", minute=MINUTE.replace(second=5))
        record(connection, "shopify_admin", "5xx", Aggregate.of([1.0]), dagster_run_id="run-1", minute=MINUTE)
        record(connection, "shopify_admin", "2xx", Aggregate(), minute=MINUTE)  # nothing to add: no row
    with engine.connect() as connection:
        rows = connection.execute(select(T).order_by(T.c.status)).mappings().all()
        assert [(r["status"], r["count"], r["minute"]) for r in rows] == [("2xx", 3, MINUTE.replace(second=0)), ("5xx", 1, MINUTE.replace(second=0))]
        assert rows[0]["sum_seconds"] == pytest.approx(3.6) and rows[0]["le_0_25"] == 1 and rows[0]["le_5"] == 3
        totals = read_totals(connection)
    assert totals.requests == {("shopify_admin", "2xx"): 3, ("shopify_admin", "5xx"): 1}
    buckets, total, count = totals.durations["shopify_admin"]
    assert count == 4 and total == pytest.approx(4.6) and buckets[DURATION_BUCKETS.index(1.0)] == 3
    with pytest.raises(ValueError), engine.begin() as connection:
        record(connection, "shopify_admin", "418", Aggregate.of([1.0]))


def test_recorder_flushes_and_never_raises(sqlite_warehouse_url):
    url, tenant_id = sqlite_warehouse_url, None
    connector_request_stats.create(get_engine(url), checkfirst=True)
    recorder = ConnectorStatsRecorder("shopify_admin", tenant_id=tenant_id, dagster_run_id="dagster-run-9")
    recorder.observe_http(200, 0.1)
    recorder.observe_http(200, 0.2, throttled=True)
    recorder.observe_http(429, 0.05)
    recorder.observe_http(None, 3.05)
    assert recorder.flush(url) == 4
    assert recorder.flush(url) == 0  # nothing pending
    with get_engine(url).connect() as connection:
        totals = read_totals(connection)
    assert totals.by_tenant_status == {(0, "2xx"): 1, (0, "throttled"): 1, (0, "429"): 1, (0, "error"): 1}  # 0: no tenant

    recorder.observe_http(500, 0.5)
    assert recorder.flush("postgresql+psycopg2://nobody@127.0.0.1:1/none") == 0  # logged, kept for later
    assert sum(a.count for a in recorder.pending().values()) == 1
    assert recorder.flush(url) == 1


@pytest.mark.integration
def test_recording_clients_count_real_admin_requests(sqlite_warehouse_url, start_server):
    """The resource's real client against the sandbox: a 429, a THROTTLED answer and successes."""
    from calibr_pipeline.defs.resources import ShopifyAdminResource
    from calibr_pipeline.demo import seed_tenant_shops
    from calibr_pipeline.monitoring.connector_stats import recording_clients
    from calibr_pipeline.sandbox.runner import SandboxWorld, TenantSpec
    from calibr_pipeline.warehouse.engine import session_scope
    from calibr_pipeline.warehouse.models import Shop

    from .conftest import scrape

    url = sqlite_warehouse_url
    connector_request_stats.create(get_engine(url), checkfirst=True)
    with SandboxWorld([TenantSpec("rec-shop", "EUR", 3, n_competitors=1)], seed=5) as world:
        seed_tenant_shops(url, world)
        faults = world.admin.faults("rec-shop")
        faults.http_429(next=1, retry_after="0")
        faults.throttle(next=1)
        with session_scope(url) as session:
            shop = session.scalar(select(Shop))
        with recording_clients(ShopifyAdminResource(timeout_s=5).client_for, url, dagster_run_id="dagster-run-1") as client_for:
            client = client_for(shop)
            data = client.execute_source("query Probe { shop { currencyCode } }", operation_name="Probe")
            assert data == {"shop": {"currencyCode": "EUR"}}
            assert client.stats.throttled == 1 and client.stats.retries == 1

    m = scrape(start_server(url).url)
    assert m.value("calibr_connector_requests_total", connector="shopify_admin", status="429") == 1
    assert m.value("calibr_connector_requests_total", connector="shopify_admin", status="throttled") == 1
    assert m.value("calibr_connector_requests_total", connector="shopify_admin", status="2xx") == 1
    assert m.value("calibr_connector_request_duration_seconds_count", connector="shopify_admin") == 3
    assert m.value("calibr_shopify_rate_limited_total", tenant="rec-shop") == 1
    with get_engine(url).connect() as connection:
        assert set(connection.scalars(select(T.c.dagster_run_id))) == {"dagster-run-1"}

"""The orders connector against the sandbox Admin API over real HTTP (nothing mocked)."""

from __future__ import annotations

import datetime as dt

import pytest

from calibr_pipeline.connectors.shopify_admin import ShopifyAdminClient, ShopifyAdminError
from calibr_pipeline.connectors.shopify_admin.orders import fetch_orders_updated, order_window_query
from calibr_pipeline.sandbox.demo_catalog import generate_demo_catalog
from calibr_pipeline.sandbox.shopify_admin import ShopifyAdminSandbox

pytestmark = pytest.mark.integration

CATALOG = generate_demo_catalog("orders-http", 40, seed=9, currency="EUR")
DAY = dt.date(2026, 3, 4)
START = dt.datetime(2026, 3, 4, tzinfo=dt.UTC)
END = START + dt.timedelta(days=1)


@pytest.fixture(scope="module")
def admin():
    with ShopifyAdminSandbox() as server:
        server.server.control.clock.set_date("2026-03-12")
        server.add_shop("orders-http", CATALOG, preset="plus", seed=9)
        yield server


@pytest.fixture(autouse=True)
def no_faults(admin):
    admin.faults("orders-http").clear()
    admin.server.control.faults.clear()
    yield
    admin.faults("orders-http").clear()
    admin.server.control.faults.clear()


def _client(admin, **kw):
    kw.setdefault("timeout", (1.0, 2.0))
    kw.setdefault("sleep", lambda _s: None)
    return ShopifyAdminClient(admin.shop_url("orders-http"), admin.shop("orders-http").access_token, **kw)


def _expected_ids(admin, start=START, end=END):
    stream = admin.shop("orders-http").orders
    return {
        o.gid
        for o in stream.orders_between(start.date() - dt.timedelta(days=6), end.date())
        if start <= stream.updated_at(o) < end
    }


def test_reads_every_order_updated_in_the_window_across_pages(admin):
    with _client(admin) as client:
        read = fetch_orders_updated(client, "EUR", START, END, page_size=3)
    expected = _expected_ids(admin)
    assert len(expected) > 6
    assert {o.external_id for o in read.orders} == expected
    assert read.rejected == []
    assert read.pages == -(-len(expected) // 3)
    assert all(START <= o.updated_at < END for o in read.orders)
    # Units and money are exactly the sandbox's.
    stream = admin.shop("orders-http").orders
    truth = {o.gid: o for o in stream.orders_between(DAY - dt.timedelta(days=6), DAY)}
    for order in read.orders:
        source = truth[order.external_id]
        assert [(l.quantity, l.discounted_unit_price) for l in order.lines] == [
            (l.quantity, l.discounted_unit_price) for l in source.lines
        ]


def test_incremental_windows_partition_the_orders_and_refunds_arrive_with_their_day(admin):
    seen: dict[str, dt.datetime] = {}
    with _client(admin) as client:
        for offset in range(10):
            start = dt.datetime(2026, 3, 1, tzinfo=dt.UTC) + dt.timedelta(days=offset)
            for order in fetch_orders_updated(client, "EUR", start, start + dt.timedelta(days=1)).orders:
                assert order.external_id not in seen, "an order belongs to exactly one updated_at window"
                seen[order.external_id] = order.updated_at
                if order.refunds:
                    assert order.updated_at.date() == order.refunds[0].refunded_at.date() > order.order_day
    assert len(seen) > 50


def test_throttled_429_and_5xx_answers_are_waited_out_and_nothing_is_lost(admin):
    faults = admin.faults("orders-http")
    faults.throttle(next=2)
    faults.http_429(next=1, retry_after="0.01")
    faults.http_5xx(next=2)
    with _client(admin, backoff_base=0.001) as client:
        read = fetch_orders_updated(client, "EUR", START, END, page_size=4)
        assert client.stats.throttled == 2 and client.stats.retries == 3
    assert {o.external_id for o in read.orders} == _expected_ids(admin)


def test_a_persistent_outage_is_an_error_not_a_short_read(admin):
    admin.faults("orders-http").http_5xx(rate=1.0)
    with _client(admin, backoff_base=0.001, max_attempts=3) as client, pytest.raises(ShopifyAdminError) as raised:
        fetch_orders_updated(client, "EUR", START, END)
    assert raised.value.error_class.value == "http_5xx"


def test_malformed_records_are_returned_as_rejections_with_the_reason(admin):
    stream = admin.shop("orders-http").orders
    victims = [o for o in stream.orders_for_day(DAY) if not o.refunds][:2]
    stream.malform(victims[0].number, "currency_mismatch")
    stream.malform(victims[1].number, "missing_variant")
    try:
        with _client(admin) as client:
            read = fetch_orders_updated(client, "EUR", START, END)
    finally:
        stream.clear_malformations()
    rejected = {r.external_id: r for r in read.rejected}
    assert set(rejected) == {victims[0].gid, victims[1].gid}
    assert rejected[victims[0].gid].field.endswith("currencyCode")
    assert rejected[victims[1].gid].field == "lineItems[0].variant"
    assert rejected[victims[1].gid].node["id"] == victims[1].gid
    assert len(read.orders) + len(read.rejected) == len(_expected_ids(admin))


def test_window_query_is_shopify_search_syntax():
    assert order_window_query(START, END) == "updated_at:>='2026-03-04T00:00:00Z' AND updated_at:<'2026-03-05T00:00:00Z'"
    with pytest.raises(ValueError):
        order_window_query(dt.datetime(2026, 3, 4), END)

"""The SP-API client against the loopback SP-API sandbox over real HTTP."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from calibr_pipeline.connectors.amazon_sp_api import SpApiClient, SpApiCredentials, SpApiError
from calibr_pipeline.sandbox.amazon_sp_api import AmazonSpApiSandbox, SellerItem, usage_plans

pytestmark = pytest.mark.integration

ITEMS = [SellerItem(f"SKU-{i}", f"B0{i:08d}", f"Item {i}", Decimal("19.99") + i) for i in range(30)]


@pytest.fixture
def amazon():
    # rate_scale 100: the usage plans' buckets refill 100× faster, so waits stay short.
    with AmazonSpApiSandbox(rate_scale=100) as sandbox:
        sandbox.server.control.clock.set_date("2026-03-10")
        sandbox.add_seller("A1SELLER", ITEMS, seed=3)
        yield sandbox
        sandbox.server.control.faults.clear()


def client(amazon, **kw) -> SpApiClient:
    seller = amazon.seller("A1SELLER")
    kw.setdefault("backoff_base", 0.001)
    return SpApiClient(amazon.base_url, amazon.token_url, SpApiCredentials(seller.client_id, seller.client_secret, seller.refresh_token),
                       marketplace_id=seller.marketplace_id, timeout=(1.0, 2.0), **kw)


def test_usage_plans_come_from_the_vendored_models():
    assert usage_plans() == {"getOrders": (0.0167, 20), "getOrderItems": (0.5, 30), "getCompetitivePricing": (0.5, 1)}


def test_orders_paging_items_and_token_reuse(amazon):
    c = client(amazon)
    orders = list(c.orders_updated("2026-03-01T00:00:00Z", "2026-03-03T00:00:00Z", page_size=7))
    expected = [o for d in (dt.date(2026, 3, 1), dt.date(2026, 3, 2)) for o in amazon.seller("A1SELLER").orders_for_day(d)]
    assert [o["AmazonOrderId"] for o in orders] == [o["AmazonOrderId"] for o in expected]
    assert len(orders) > 7 and c.stats.token_exchanges == 1
    items = c.order_items(orders[0]["AmazonOrderId"])
    source = expected[0]
    assert items[0]["SellerSKU"] == source["item"].seller_sku
    assert Decimal(items[0]["ItemPrice"]["Amount"]) == source["item"].price * source["quantity"]


def test_rate_limit_header_and_429_are_honoured(amazon):
    c = client(amazon)
    # getCompetitivePricing: burst 1 → the second call in a row is a 429; the client waits 1/rate and retries.
    first = c.competitive_prices(["B000000001"])
    second = c.competitive_prices(["B000000002"])
    assert first[0]["status"] == second[0]["status"] == "Success"
    assert c.stats.throttled >= 1 and amazon.seller("A1SELLER").throttled >= 1
    price = first[0]["Product"]["CompetitivePricing"]["CompetitivePrices"][0]["Price"]["LandedPrice"]
    assert price["CurrencyCode"] == "USD" and Decimal(price["Amount"]) > 0


def test_5xx_faults_are_retried_and_a_persistent_one_is_an_error(amazon):
    amazon.server.control.faults.add(shop="A1SELLER", fail_next=2, fail_mode="5xx")
    c = client(amazon)
    assert list(c.orders_updated("2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z"))
    assert c.stats.retries == 2
    amazon.server.control.faults.add(shop="A1SELLER", error_rate=1.0, fail_mode="5xx")
    with pytest.raises(SpApiError) as raised:
        list(client(amazon, max_attempts=2).orders_updated("2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z"))
    assert raised.value.error_class.value == "http_5xx"


def test_expired_token_is_refreshed_once_and_bad_credentials_are_a_clear_error(amazon):
    c = client(amazon)
    list(c.orders_updated("2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z"))
    amazon.expire_tokens()
    assert list(c.orders_updated("2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z"))
    assert c.stats.token_exchanges == 2
    seller = amazon.seller("A1SELLER")
    wrong = SpApiClient(amazon.base_url, amazon.token_url, SpApiCredentials(seller.client_id, "wrong-secret", seller.refresh_token),
                        marketplace_id=seller.marketplace_id)
    with pytest.raises(SpApiError) as raised:
        wrong.order_items("x")
    assert "invalid_client" in str(raised.value) and "wrong-secret" not in str(raised.value) + repr(wrong)

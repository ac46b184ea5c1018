"""The sandbox's order stream: seeded, price-responsive demand, refunds, search, faults."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from calibr_pipeline.sandbox.demo_catalog import generate_demo_catalog
from calibr_pipeline.sandbox.runner import SandboxWorld, TenantSpec
from calibr_pipeline.sandbox.shopify_admin import BucketPreset, ShopifyAdminSandbox
from calibr_pipeline.sandbox.shopify_orders import MAX_REFUND_DELAY_DAYS, parse_order_query

CATALOG = generate_demo_catalog("order-shop", 30, seed=5, currency="USD")
ORDERS = """
query O($first: Int!, $after: String, $query: String, $sort: OrderSortKeys) {
  orders(first: $first, after: $after, query: $query, sortKey: $sort) {
    pageInfo { hasNextPage endCursor }
    nodes {
      id name createdAt updatedAt currencyCode
      lineItems(first: 5) { nodes { id sku quantity currentQuantity variant { id }
        originalUnitPriceSet { shopMoney { amount currencyCode } }
        discountedUnitPriceSet { shopMoney { amount currencyCode } } } }
      refunds { id createdAt refundLineItems(first: 5) { nodes { quantity lineItem { id } subtotalSet { shopMoney { amount } } } } }
    }
  }
}
"""
BULK = """
mutation Bulk($productId: ID!, $variants: [ProductVariantsBulkInput!]!) {
  productVariantsBulkUpdate(productId: $productId, variants: $variants) { userErrors { message } }
}
"""


def _admin(date="2026-03-20", seed=5) -> ShopifyAdminSandbox:
    admin = ShopifyAdminSandbox()
    admin.server.control.clock.set_date(date)
    # A bottomless bucket: these tests read a lot and are about orders, not cost.
    admin.add_shop("order-shop", CATALOG, preset=BucketPreset("bottomless", 1e9, 1e9), seed=seed)
    return admin


def _all(admin, query=None, sort="UPDATED_AT"):
    nodes, after = [], None
    while True:
        answer = admin.execute_for_test("order-shop", ORDERS, {"first": 10, "after": after, "query": query, "sort": sort})
        assert "errors" not in answer, answer["errors"]
        page = answer["data"]["orders"]
        nodes += page["nodes"]
        if not page["pageInfo"]["hasNextPage"]:
            return nodes
        after = page["pageInfo"]["endCursor"]


def _window(day: str) -> str:
    start = dt.date.fromisoformat(day)
    return f"updated_at:>='{start}T00:00:00Z' AND updated_at:<'{start + dt.timedelta(days=1)}T00:00:00Z'"


def test_same_seed_same_orders_and_a_day_exists_only_once_it_is_over():
    a, b, c = _admin(), _admin(), _admin(seed=6)
    window = "created_at:>='2026-03-01T00:00:00Z' AND created_at:<'2026-03-08T00:00:00Z'"
    first = _all(a, window)
    assert first == _all(b, window)
    assert first != _all(c, window)
    assert len(first) > 30
    days = {n["createdAt"][:10] for n in first}
    assert days == {f"2026-03-0{d}" for d in range(1, 8)}
    # The sandbox's today (03-20) is still open: no orders yet.
    assert _all(a, "created_at:>='2026-03-20T00:00:00Z'") == []
    for node in first:
        assert node["currencyCode"] == "USD"
        for line in node["lineItems"]["nodes"]:
            original = Decimal(line["originalUnitPriceSet"]["shopMoney"]["amount"])
            discounted = Decimal(line["discountedUnitPriceSet"]["shopMoney"]["amount"])
            assert Decimal(0) < discounted <= original
            assert line["quantity"] >= 1 and line["variant"]["id"].startswith("gid://shopify/ProductVariant/")


def test_updated_at_window_pages_in_update_order_and_a_refund_moves_the_order():
    admin = _admin()
    everything = _all(admin, "created_at:>='2026-02-01T00:00:00Z'")
    refunded = [n for n in everything if n["refunds"]]
    assert refunded, "about one order in 25 is refunded"
    order = refunded[0]
    refund_day = order["refunds"][0]["createdAt"][:10]
    assert order["updatedAt"] == order["refunds"][0]["createdAt"] > order["createdAt"]
    assert 1 <= (dt.date.fromisoformat(refund_day) - dt.date.fromisoformat(order["createdAt"][:10])).days <= MAX_REFUND_DELAY_DAYS
    line = next(l for l in order["lineItems"]["nodes"] if l["id"] == order["refunds"][0]["refundLineItems"]["nodes"][0]["lineItem"]["id"])
    assert line["currentQuantity"] == line["quantity"] - order["refunds"][0]["refundLineItems"]["nodes"][0]["quantity"]
    # The order is in the window of its refund day, not of its creation day.
    assert order["id"] in {n["id"] for n in _all(admin, _window(refund_day))}
    assert order["id"] not in {n["id"] for n in _all(admin, _window(order["createdAt"][:10]))}
    # Pages come oldest update first, with no duplicates across pages.
    window = _all(admin, "updated_at:>='2026-03-01T00:00:00Z' AND updated_at:<'2026-03-06T00:00:00Z'")
    stamps = [n["updatedAt"] for n in window]
    assert stamps == sorted(stamps) and len({n["id"] for n in window}) == len(window)


def test_a_refund_is_invisible_until_its_day_is_over():
    admin = _admin()
    refunded = next(n for n in _all(admin, "created_at:>='2026-02-01T00:00:00Z'") if n["refunds"])
    refund_day = dt.date.fromisoformat(refunded["refunds"][0]["createdAt"][:10])
    admin.server.control.clock.set_date(refund_day)
    again = next(n for n in _all(admin, f"created_at:>='{refunded['createdAt'][:10]}T00:00:00Z'") if n["id"] == refunded["id"])
    assert again["refunds"] == [] and again["updatedAt"] == again["createdAt"]


def test_demand_falls_when_we_raise_prices_and_rises_when_we_cut_them():
    admin = _admin(date="2026-03-01")
    shop = admin.shop("order-shop")
    stream = shop.orders
    variant = shop.all_variants()[0]
    before = stream.expected_units(variant.gid, dt.date(2026, 3, 5))
    product = variant.product
    answer = admin.execute_for_test(
        "order-shop", BULK, {"productId": product.gid, "variants": [{"id": v.gid, "price": str(v.price * 2)} for v in product.variants]}
    )
    assert answer["data"]["productVariantsBulkUpdate"]["userErrors"] == []
    after = stream.expected_units(variant.gid, dt.date(2026, 3, 5))
    model = stream.demand(variant.gid)
    assert after == pytest.approx(before * 2 ** (-model.elasticity))
    # The price in force before the write still governs the days before it.
    assert stream.price_on(variant.gid, dt.date(2026, 2, 28)) == CATALOG_PRICE[variant.gid]
    assert stream.price_on(variant.gid, dt.date(2026, 3, 1)) == CATALOG_PRICE[variant.gid] * 2

    # Over a month, doubling every price sells clearly fewer units than the catalog prices.
    cheap, dear = _admin(date="2026-04-01"), _admin(date="2026-03-01")
    for v in dear.shop("order-shop").all_variants():
        dear.shop("order-shop").set_price(v.gid, v.price * 2)
    dear.server.control.clock.set_date("2026-04-01")
    march = "created_at:>='2026-03-01T00:00:00Z' AND created_at:<'2026-04-01T00:00:00Z'"
    units = lambda admin: sum(l["quantity"] for n in _all(admin, march) for l in n["lineItems"]["nodes"])  # noqa: E731
    assert units(dear) < 0.5 * units(cheap)


CATALOG_PRICE = {v.variant_external_id: v.price for v in CATALOG}


def test_world_demand_reacts_to_the_competitors_median():
    with SandboxWorld([TenantSpec("mkt", "USD", 12, n_competitors=3)], seed=2, date="2026-03-10") as world:
        stream = world.tenant("mkt").admin_shop.orders
        covered = [v for v in world.tenant("mkt").catalog if any(l.our_variant_id == v.variant_external_id for l in world.listings_for("mkt"))]
        assert covered
        gid = covered[0].variant_external_id
        market = stream._market(gid, dt.date(2026, 3, 5))
        assert market is not None and market > 0
        model = stream.demand(gid)
        expected = model.base_rate * float(covered[0].price / market) ** (-model.elasticity)
        assert stream.expected_units(gid, dt.date(2026, 3, 5)) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("kind", "check"),
    [
        ("missing_variant", lambda line: line["variant"] is None and line["sku"] is None),
        ("currency_mismatch", lambda line: line["originalUnitPriceSet"]["shopMoney"]["currencyCode"] != "USD"),
        ("negative_quantity", lambda line: line["quantity"] < 0),
        ("bad_amount", lambda line: "," in line["originalUnitPriceSet"]["shopMoney"]["amount"]),
    ],
)
def test_malformed_orders_stay_schema_valid_but_are_wrong(kind, check):
    admin = _admin()
    target = _all(admin, _window("2026-03-03"))[2]
    admin.shop("order-shop").orders.malform(int(target["name"][1:]), kind)
    again = next(n for n in _all(admin, _window("2026-03-03")) if n["id"] == target["id"])
    assert all(check(line) for line in again["lineItems"]["nodes"])


def test_unsupported_search_terms_and_sort_keys_are_errors_not_ignored():
    admin = _admin()
    answer = admin.execute_for_test("order-shop", ORDERS, {"first": 5, "query": "financial_status:paid"})
    assert "does not implement the order search term" in answer["errors"][0]["message"]
    answer = admin.execute_for_test("order-shop", ORDERS, {"first": 5, "sort": "TOTAL_PRICE"})
    assert "does not implement order sortKey" in answer["errors"][0]["message"]
    assert parse_order_query("updated_at:>=2026-03-01").terms[0][1] == ">="

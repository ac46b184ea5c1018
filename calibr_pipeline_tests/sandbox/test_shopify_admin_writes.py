"""Sandbox Admin API writes (productVariantsBulkUpdate), reconciliation reads and Admin faults, over HTTP."""

from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal

import pytest
import requests

from calibr_pipeline.sandbox.demo_catalog import generate_demo_catalog
from calibr_pipeline.sandbox.shopify_admin import (
    RATE_LIMITS_DOC,
    BucketPreset,
    ShopifyAdminSandbox,
)

pytestmark = pytest.mark.integration

FROZEN = BucketPreset("frozen", 1000.0, 0.0)

BULK = """
mutation Bulk($productId: ID!, $variants: [ProductVariantsBulkInput!]!, $allow: Boolean) {
  productVariantsBulkUpdate(productId: $productId, variants: $variants, allowPartialUpdates: $allow) {
    productVariants { id price compareAtPrice updatedAt }
    userErrors { field message code }
  }
}
"""
NODES = """
query Nodes($ids: [ID!]!) {
  nodes(ids: $ids) { __typename id ... on ProductVariant { price compareAtPrice updatedAt } }
}
"""
SHOP_NAME = "query { shop { name } }"


@pytest.fixture
def admin():
    with ShopifyAdminSandbox() as server:
        server.add_shop("acme", generate_demo_catalog("acme", 40, seed=5, currency="USD"), preset="plus")
        server.add_shop("tokyo", generate_demo_catalog("tokyo", 8, seed=5, currency="JPY"), preset="plus")
        yield server


def post(admin, shop, query, variables=None):
    headers = {"X-Shopify-Access-Token": admin.shop(shop).access_token}
    return requests.post(admin.endpoint(shop), json={"query": query, "variables": variables or {}}, headers=headers, timeout=10)


def multi_variant_product(shop, n=2):
    return next(p for p in shop.products if len(p.variants) >= n)


def bulk(admin, shop_name, product, variants, allow=None):
    response = post(admin, shop_name, BULK, {"productId": product.gid, "variants": variants, "allow": allow})
    assert response.status_code == 200, response.text
    return response


def test_bulk_update_writes_prices_once_and_costs_10(admin):
    shop = admin.shop("acme")
    product = multi_variant_product(shop)
    a, b = product.variants[:2]
    old_a, old_b, compare_a = a.price, b.price, a.compare_at_price
    response = bulk(admin, "acme", product, [{"id": a.gid, "price": "19.99"}, {"id": b.gid, "price": "5", "compareAtPrice": "7.50"}])
    payload = response.json()
    result = payload["data"]["productVariantsBulkUpdate"]
    assert result["userErrors"] == []
    assert [(v["id"], v["price"], v["compareAtPrice"]) for v in result["productVariants"]] == [
        (a.gid, "19.99", shop.money(compare_a)),
        (b.gid, "5.00", "7.50"),
    ]
    cost = payload["extensions"]["cost"]
    assert cost["requestedQueryCost"] == 10 and cost["actualQueryCost"] == 10
    assert shop.price_of(a.gid) == Decimal("19.99") and shop.price_of(b.gid) == Decimal("5.00")
    log = shop.writes()
    assert [(w.variant_gid, w.old_price, w.new_price) for w in log] == [
        (a.gid, old_a, Decimal("19.99")),
        (b.gid, old_b, Decimal("5.00")),
    ]
    assert {w.request_id for w in log} == {response.headers["X-Request-Id"]}
    assert log[1].new_compare_at_price == Decimal("7.50")
    assert max(shop.write_counts().values()) == 1
    assert shop.stats.mutations == 1


def test_compare_at_price_is_kept_when_not_sent_removed_by_null_and_may_be_below_price(admin):
    shop = admin.shop("acme")
    product = multi_variant_product(shop)
    a = product.variants[0]
    bulk(admin, "acme", product, [{"id": a.gid, "price": "10.00", "compareAtPrice": "12.00"}])
    bulk(admin, "acme", product, [{"id": a.gid, "price": "11.00"}])
    assert (a.price, a.compare_at_price) == (Decimal("11.00"), Decimal("12.00"))
    result = bulk(admin, "acme", product, [{"id": a.gid, "price": "15.00", "compareAtPrice": "9.00"}]).json()
    assert result["data"]["productVariantsBulkUpdate"]["userErrors"] == []  # Shopify allows it
    bulk(admin, "acme", product, [{"id": a.gid, "price": "15.00", "compareAtPrice": None}])
    assert a.compare_at_price is None


def test_all_or_nothing_by_default(admin):
    shop = admin.shop("acme")
    product = multi_variant_product(shop)
    a, b = product.variants[:2]
    before = (a.price, b.price)
    result = bulk(admin, "acme", product, [{"id": a.gid, "price": "1.00"}, {"id": b.gid, "price": "-1.00"}]).json()
    payload = result["data"]["productVariantsBulkUpdate"]
    assert payload["productVariants"] is None
    assert payload["userErrors"] == [
        {"field": ["variants", "1", "price"], "message": "Price must be greater than or equal to 0", "code": "GREATER_THAN_OR_EQUAL_TO"}
    ]
    assert (a.price, b.price) == before
    assert shop.writes() == []


def test_partial_updates_write_the_valid_variants(admin):
    shop = admin.shop("acme")
    product = multi_variant_product(shop)
    a = product.variants[0]
    other = next(p for p in shop.products if p is not product).variants[0]
    result = bulk(
        admin,
        "acme",
        product,
        [
            {"id": "gid://shopify/ProductVariant/1", "price": "3.00"},
            {"id": a.gid, "price": "3.00"},
            {"id": other.gid, "price": "3.00"},  # exists, but in another product
            {"price": "3.00"},
        ],
        allow=True,
    ).json()
    payload = result["data"]["productVariantsBulkUpdate"]
    assert [v["id"] for v in payload["productVariants"]] == [a.gid]
    assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [
        (["variants", "0", "id"], "PRODUCT_VARIANT_DOES_NOT_EXIST"),
        (["variants", "2", "id"], "PRODUCT_VARIANT_DOES_NOT_EXIST"),
        (["variants", "3", "id"], "PRODUCT_VARIANT_ID_MISSING"),
    ]
    assert [w.variant_gid for w in shop.writes()] == [a.gid]
    assert shop.writes(other.gid) == []


def test_codes_are_values_of_the_real_enum(admin):
    enum = admin.schema.get_type("ProductVariantsBulkUpdateUserErrorCode")
    for code in ("PRODUCT_VARIANT_DOES_NOT_EXIST", "PRODUCT_VARIANT_ID_MISSING", "GREATER_THAN_OR_EQUAL_TO", "INVALID_INPUT", "PRODUCT_DOES_NOT_EXIST"):
        assert code in enum.values


def test_unknown_product_is_a_product_level_error(admin):
    response = post(admin, "acme", BULK, {"productId": "gid://shopify/Product/1", "variants": [{"id": "gid://shopify/ProductVariant/1", "price": "1"}]})
    payload = response.json()["data"]["productVariantsBulkUpdate"]
    assert payload == {
        "productVariants": None,
        "userErrors": [{"field": ["productId"], "message": "Product does not exist", "code": "PRODUCT_DOES_NOT_EXIST"}],
    }


def test_invalid_money_and_unsupported_inputs(admin):
    shop = admin.shop("acme")
    product = multi_variant_product(shop)
    a = product.variants[0]
    payload = bulk(admin, "acme", product, [{"id": a.gid, "price": "cheap"}]).json()["data"]["productVariantsBulkUpdate"]
    assert payload["userErrors"][0]["code"] == "INVALID_INPUT"
    body = bulk(admin, "acme", product, [{"id": a.gid, "price": "1.00", "taxable": False}]).json()
    assert "does not implement ProductVariantsBulkInput.taxable" in body["errors"][0]["message"]
    assert shop.writes() == []


def test_prices_are_stored_at_the_currency_precision(admin):
    shop = admin.shop("tokyo")
    product = shop.products[0]
    v = product.variants[0]
    result = bulk(admin, "tokyo", product, [{"id": v.gid, "price": "1234.5"}]).json()
    assert result["data"]["productVariantsBulkUpdate"]["productVariants"][0]["price"] == "1235"
    assert shop.writes(v.gid)[0].new_price == Decimal(1235)


def test_nodes_read_variants_after_a_merchant_edit_and_a_deletion(admin):
    shop = admin.shop("acme")
    product = multi_variant_product(shop)
    a, b = product.variants[:2]
    a.updated_at = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    before = post(admin, "acme", NODES, {"ids": [a.gid]}).json()["data"]["nodes"][0]["updatedAt"]
    assert before == "2025-01-02T03:04:05Z"
    shop.set_price(a.gid, Decimal("42.00"), compare_at_price=Decimal(50))
    shop.delete_variant(b.gid)
    payload = post(admin, "acme", NODES, {"ids": [a.gid, b.gid, product.gid, "gid://shopify/Order/1"]}).json()
    nodes = payload["data"]["nodes"]
    assert nodes[0]["__typename"] == "ProductVariant"
    assert (nodes[0]["id"], nodes[0]["price"], nodes[0]["compareAtPrice"]) == (a.gid, "42.00", "50.00")
    assert nodes[0]["updatedAt"] > before and nodes[0]["updatedAt"].endswith("Z")
    assert nodes[1] is None  # deleted
    assert nodes[2] == {"__typename": "Product", "id": product.gid}
    assert nodes[3] is None
    assert shop.writes() == []  # a merchant edit is not an API write
    assert payload["extensions"]["cost"]["actualQueryCost"] >= 1


def test_nodes_refuses_more_than_250_ids(admin):
    ids = [f"gid://shopify/ProductVariant/{n}" for n in range(251)]
    payload = post(admin, "acme", NODES, {"ids": ids}).json()
    assert payload["errors"][0]["message"] == "The ids argument must be less than or equal to 250"


# -- faults ------------------------------------------------------------------------------------


def test_forced_throttle_looks_exactly_like_a_real_one():
    with ShopifyAdminSandbox() as server:
        shop = server.add_shop("acme", generate_demo_catalog("acme", 10, seed=5, currency="USD"), preset=FROZEN)
        product = multi_variant_product(shop, 1)
        variables = {"productId": product.gid, "variants": [{"id": product.variants[0].gid, "price": "1.00"}]}

        server.faults("acme").throttle(next=1)
        forced = post(server, "acme", BULK, variables)
        shop.bucket.drain(to=5)  # now the bucket really cannot pay 10 points
        real = post(server, "acme", BULK, variables)
    assert forced.status_code == real.status_code == 200
    def without_status(payload):
        payload["extensions"]["cost"].pop("throttleStatus")
        return payload

    assert without_status(forced.json()) == without_status(real.json())
    assert forced.json()["errors"] == [{"message": "Throttled", "extensions": {"code": "THROTTLED", "documentation": RATE_LIMITS_DOC}}]
    for response in (forced, real):
        cost = response.json()["extensions"]["cost"]
        assert cost["requestedQueryCost"] == 10 and cost["actualQueryCost"] is None
        assert "data" not in response.json()
        assert "Retry-After" not in response.headers
    assert forced.json()["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] == 1000  # nothing charged
    assert shop.stats.throttled == 2 and shop.stats.forced_throttled == 1
    assert shop.writes() == []


def test_throttle_next_n_then_normal_and_optional_retry_after(admin):
    admin.faults("acme").throttle(next=2, retry_after="2.5")
    answers = [post(admin, "acme", SHOP_NAME) for _ in range(3)]
    assert [("errors" in r.json()) for r in answers] == [True, True, False]
    assert [r.headers.get("Retry-After") for r in answers] == ["2.5", "2.5", None]
    assert admin.faults("acme").pending_throttles == 0
    assert admin.shop("acme").stats.forced_throttled == 2
    assert admin.shop("tokyo").stats.forced_throttled == 0  # per shop


def test_throttle_rate_is_seeded():
    def run():
        with ShopifyAdminSandbox() as server:
            server.add_shop("acme", generate_demo_catalog("acme", 4, seed=5, currency="USD"), preset="plus", seed=3)
            server.faults("acme").throttle(rate=0.3)
            return ["errors" in post(server, "acme", SHOP_NAME).json() for _ in range(40)]

    first = run()
    assert first == run()
    assert 4 <= sum(first) <= 20


def test_http_5xx_429_and_slow_faults(admin):
    faults = admin.faults("acme")
    faults.http_5xx(next=1, status=502)
    faults.http_429(next=1, retry_after="1.5")
    # Newest rule first: the 429 rule answers, then steps aside for the 5xx rule.
    first, second, third = (post(admin, "acme", SHOP_NAME) for _ in range(3))
    assert first.status_code == 429 and first.headers["Retry-After"] == "1.5"
    assert second.status_code == 502
    assert third.status_code == 200
    assert post(admin, "tokyo", SHOP_NAME).status_code == 200
    faults.slow(next=1, delay=0.3)
    started = time.monotonic()
    slow = post(admin, "acme", SHOP_NAME)
    assert slow.status_code == 200 and time.monotonic() - started >= 0.3
    injector = admin.server.control.faults
    assert injector.faults("5xx", shop="acme") == 1 and injector.faults("429", shop="acme") == 1
    assert injector.faults("timeout", shop="acme") == 1
    faults.clear()
    assert injector.rules() == []


def test_variant_faults_fail_those_variants_with_the_given_code(admin):
    shop = admin.shop("acme")
    product = multi_variant_product(shop)
    a, b = product.variants[:2]
    admin.faults("acme").fail_variants([b.gid], code="PRODUCT_SUSPENDED", message="Product is suspended.")
    payload = bulk(admin, "acme", product, [{"id": a.gid, "price": "2.00"}, {"id": b.gid, "price": "2.00"}], allow=True).json()
    result = payload["data"]["productVariantsBulkUpdate"]
    assert result["userErrors"] == [{"field": ["variants", "1"], "message": "Product is suspended.", "code": "PRODUCT_SUSPENDED"}]
    assert [w.variant_gid for w in shop.writes()] == [a.gid]
    # Always, not just once.
    again = bulk(admin, "acme", product, [{"id": b.gid, "price": "2.00"}], allow=True).json()
    assert again["data"]["productVariantsBulkUpdate"]["userErrors"][0]["code"] == "PRODUCT_SUSPENDED"
    admin.faults("acme").clear()
    ok = bulk(admin, "acme", product, [{"id": b.gid, "price": "2.00"}]).json()
    assert ok["data"]["productVariantsBulkUpdate"]["userErrors"] == []

"""The sandbox Shopify Admin API over real HTTP on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import math
from decimal import Decimal

import pytest
import requests

from calibr_pipeline.sandbox.demo_catalog import generate_demo_catalog
from calibr_pipeline.sandbox.shopify_admin import (
    INVALID_TOKEN_MESSAGE,
    BucketPreset,
    ShopifyAdminSandbox,
)

pytestmark = pytest.mark.integration

# A bucket that never refills makes every throttleStatus figure exact.
FROZEN = BucketPreset("frozen", 1000.0, 0.0)


@pytest.fixture(scope="module")
def admin():
    with ShopifyAdminSandbox() as server:
        server.add_shop("acme", generate_demo_catalog("acme", 60, seed=1, currency="USD"), preset="plus")
        server.add_shop("tokyo", generate_demo_catalog("tokyo", 12, seed=1, currency="JPY"), preset="plus")
        yield server


def post(admin, shop, query, variables=None, token=None, **kw):
    token = admin.shop(shop).access_token if token is None else token
    headers = {"X-Shopify-Access-Token": token} if token else {}
    body = {"query": query, "variables": variables or {}}
    return requests.post(admin.endpoint(shop), json=body, headers=headers, timeout=10, **kw)


def data_of(response):
    assert response.status_code == 200, response.text
    payload = response.json()
    assert "errors" not in payload, payload["errors"]
    return payload["data"]


PRODUCTS_PAGE = """
query Page($first: Int!, $after: String) {
  products(first: $first, after: $after) {
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { cursor node { id } }
    nodes { id handle }
  }
}
"""


def test_products_paginate_with_opaque_cursors(admin):
    shop = admin.shop("acme")
    seen, after, pages = [], None, 0
    while True:
        page = data_of(post(admin, "acme", PRODUCTS_PAGE, {"first": 7, "after": after}))["products"]
        pages += 1
        assert [e["node"]["id"] for e in page["edges"]] == [n["id"] for n in page["nodes"]]
        assert page["pageInfo"]["hasPreviousPage"] == (after is not None)
        assert page["pageInfo"]["startCursor"] == page["edges"][0]["cursor"]
        assert page["pageInfo"]["endCursor"] == page["edges"][-1]["cursor"]
        seen += [n["id"] for n in page["nodes"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == [p.gid for p in shop.products]
    assert pages == -(-len(shop.products) // 7)
    # Opaque to clients, but decodable base64 like Shopify's; no gid in plain sight.
    cursor = page["edges"][0]["cursor"]
    assert "gid://" not in cursor
    assert json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))["last_id"]


def test_variants_and_money_fields_are_exact_strings(admin):
    query = """{ productVariants(first: 100) { nodes {
        id sku title price compareAtPrice product { id }
        inventoryItem { unitCost { amount currencyCode } } } } }"""
    nodes = data_of(post(admin, "acme", query))["productVariants"]["nodes"]
    catalog = admin.shop("acme").catalog()
    assert len(nodes) == len(catalog) == 60
    by_id = {row.variant_external_id: row for row in catalog}
    for node in nodes:
        row = by_id[node["id"]]
        assert isinstance(node["price"], str) and Decimal(node["price"]) == row.price
        assert node["compareAtPrice"] == (None if row.compare_at_price is None else f"{row.compare_at_price:.2f}")
        assert node["product"]["id"] == row.product_external_id
        if row.cost is None:
            assert node["inventoryItem"]["unitCost"] is None
        else:
            assert node["inventoryItem"]["unitCost"] == {"amount": f"{row.cost:.2f}", "currencyCode": "USD"}


def test_zero_decimal_currency_and_shop_fields(admin):
    data = data_of(post(admin, "tokyo", "{ shop { name currencyCode myshopifyDomain } productVariants(first: 1) { nodes { price } } }"))
    assert data["shop"] == {"name": "tokyo", "currencyCode": "JPY", "myshopifyDomain": "tokyo.myshopify.com"}
    assert "." not in data["productVariants"]["nodes"][0]["price"]


def test_page_size_limits_like_shopify(admin):
    too_big = post(admin, "acme", "{ products(first: 251) { nodes { id } } }").json()
    assert too_big["errors"][0]["message"] == "The first argument must be less than or equal to 250"
    assert too_big.get("data") is None
    missing = post(admin, "acme", "{ products { nodes { id } } }").json()
    assert missing["errors"][0]["message"] == "you must provide one of first or last"
    bad_cursor = post(admin, "acme", '{ products(first: 2, after: "bm9wZQ") { nodes { id } } }').json()
    assert "Invalid cursor" in bad_cursor["errors"][0]["message"]


@pytest.mark.parametrize("token", ["", "shpat_wrong"])
def test_wrong_or_missing_token_is_refused_like_shopify(admin, token):
    before = admin.shop("acme").stats.unauthorized
    response = post(admin, "acme", "{ shop { name } }", token=token)
    assert response.status_code == 401
    assert response.json() == {"errors": INVALID_TOKEN_MESSAGE}
    assert admin.shop("acme").stats.unauthorized == before + 1


def test_token_of_another_shop_is_refused(admin):
    response = post(admin, "acme", "{ shop { name } }", token=admin.shop("tokyo").access_token)
    assert response.status_code == 401


def test_unknown_shop_and_version_are_404(admin):
    url = admin.endpoint("acme").replace("2025-01", "2019-04")
    assert requests.post(url, json={"query": "{ shop { name } }"}, timeout=5).status_code == 404
    assert requests.post(admin.endpoint("nope"), json={"query": "{ shop { name } }"}, timeout=5).status_code == 404


def test_invalid_documents_get_graphql_errors_and_no_data(admin):
    payload = post(admin, "acme", "{ shop { name favouriteColour } }").json()
    assert "data" not in payload
    assert payload["errors"][0]["message"] == "Field 'favouriteColour' doesn't exist on type 'Shop'"
    assert payload["errors"][0]["extensions"] == {"code": "undefinedField", "typeName": "Shop", "fieldName": "favouriteColour"}
    assert payload["extensions"]["cost"]["requestedQueryCost"] == 0

    syntax = post(admin, "acme", "{ shop { name ").json()
    assert syntax["errors"][0]["extensions"]["code"] == "parseError"

    not_json = requests.post(admin.endpoint("acme"), data=b"{", headers={"X-Shopify-Access-Token": admin.shop("acme").access_token}, timeout=5)
    assert not_json.status_code == 400
    assert not_json.json() == {"errors": {"query": "Required parameter missing or invalid"}}


def test_unimplemented_fields_fail_loudly(admin):
    payload = post(admin, "acme", "{ shop { email } }").json()
    assert "does not implement Shop.email" in payload["errors"][0]["message"]


def test_cost_extension_on_a_known_query():
    catalog = generate_demo_catalog("costly", 40, seed=3)
    with ShopifyAdminSandbox() as admin:
        shop = admin.add_shop("costly", catalog, preset=FROZEN)
        query = "{ products(first: 10) { edges { node { title variants(first: 5) { edges { node { price } } } } } } }"
        payload = post(admin, "costly", query).json()
        cost = payload["extensions"]["cost"]
        # Shopify's live answers: a connection costs 2 + ceil(sqrt(first)) × node, so
        # 2 + 4 × (1 product + (2 + 3 × 1 variant)) = 26, not the naive 2 + 10 × 8 = 82.
        assert cost["requestedQueryCost"] == 26
        # Actually returned: 10 products and their (1–4) variants; the dearest node counts.
        returned = payload["data"]["products"]["edges"]
        dearest = max(1 + 2 + math.isqrt(len(e["node"]["variants"]["edges"]) - 1) + 1 for e in returned)
        expected_actual = 2 + 4 * dearest
        assert cost["actualQueryCost"] == expected_actual < 26
        # Charged 26 up front, refunded the unused part: only the actual cost is gone.
        assert cost["throttleStatus"] == {"maximumAvailable": 1000.0, "currentlyAvailable": 1000 - expected_actual, "restoreRate": 0.0}
        assert shop.stats.points_spent == expected_actual


def test_throttled_when_the_bucket_cannot_pay():
    with ShopifyAdminSandbox() as admin:
        shop = admin.add_shop("drained", generate_demo_catalog("drained", 5, seed=1), preset=FROZEN)
        shop.bucket.drain(to=12)
        payload = post(admin, "drained", "{ products(first: 30) { nodes { id } } }").json()  # costs 2 + 6
        assert "data" in payload and payload["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] <= 12 - 2

        response = post(admin, "drained", "{ products(first: 100) { nodes { id } } }")  # costs 2 + 10
        assert response.status_code == 200
        payload = response.json()
        assert "data" not in payload
        assert payload["errors"] == [
            {"message": "Throttled", "extensions": {"code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/rate-limits"}}
        ]
        cost = payload["extensions"]["cost"]
        assert cost["requestedQueryCost"] == 12 and cost["actualQueryCost"] is None
        assert cost["throttleStatus"]["currentlyAvailable"] < 12
        assert shop.stats.throttled == 1
        assert shop.stats.requests == 2


def test_single_query_over_1000_points_is_refused_and_not_charged():
    with ShopifyAdminSandbox() as admin:
        admin.add_shop("big", generate_demo_catalog("big", 5, seed=1), preset=FROZEN)
        # 2 + 16 × (1 product + 2 + 16 × (1 variant + 1 inventoryItem + (2 + 16 × 1 level))) = 5,170
        query = "{ products(first: 250) { nodes { variants(first: 250) { nodes { id inventoryItem { inventoryLevels(first: 250) { nodes { id } } } } } } } }"
        payload = post(admin, "big", query).json()
        error = payload["errors"][0]
        assert error["extensions"] == {"code": "MAX_COST_EXCEEDED", "cost": 5170, "maxCost": 1000}
        assert error["message"].startswith("Query cost is 5170, which exceeds the single query max cost limit (1000).")
        assert payload["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] == 1000
        assert admin.shop("big").stats.max_cost_exceeded == 1


def test_buckets_and_counters_are_per_shop():
    with ShopifyAdminSandbox() as admin:
        a = admin.add_shop("a", generate_demo_catalog("a", 3, seed=1), preset=FROZEN)
        b = admin.add_shop("b", generate_demo_catalog("b", 3, seed=1), preset=FROZEN)
        for _ in range(3):
            data_of(post(admin, "a", "{ shop { name } }"))
        assert (a.stats.requests, b.stats.requests) == (3, 0)
        assert a.bucket.throttle_status()["currentlyAvailable"] == 997
        assert b.bucket.throttle_status()["currentlyAvailable"] == 1000
        assert a.access_token != b.access_token


def test_a_mutation_is_added_by_attaching_a_resolver():
    catalog = generate_demo_catalog("mut", 4, seed=2)
    with ShopifyAdminSandbox() as admin:
        shop = admin.add_shop("mut", catalog, preset=FROZEN)

        def bulk_update(_source, info, productId, variants, **_):
            product = info.context.shop.find_product(productId)
            updated = []
            for change in variants:
                variant = next(v for v in product.variants if v.gid == change["id"])
                variant.price = Decimal(change["price"])
                updated.append(variant)
            return {"productVariants": updated, "userErrors": []}

        admin.register_resolver("Mutation", "productVariantsBulkUpdate", bulk_update)
        row = catalog[0]
        mutation = """
        mutation Reprice($productId: ID!, $variants: [ProductVariantsBulkInput!]!) {
          productVariantsBulkUpdate(productId: $productId, variants: $variants) {
            productVariants { id price }
            userErrors { field message }
          }
        }"""
        variables = {"productId": row.product_external_id, "variants": [{"id": row.variant_external_id, "price": "123.45"}]}
        payload = post(admin, "mut", mutation, variables).json()
        assert payload["data"]["productVariantsBulkUpdate"] == {
            "productVariants": [{"id": row.variant_external_id, "price": "123.45"}],
            "userErrors": [],
        }
        assert payload["extensions"]["cost"]["requestedQueryCost"] == 10
        assert shop.catalog()[0].price == Decimal("123.45")

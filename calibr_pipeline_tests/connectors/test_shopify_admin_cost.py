"""The static, conservative cost estimate of the client (the sandbox prices on its own: sandbox/admin_cost.py)."""

from __future__ import annotations

from calibr_pipeline.connectors.shopify_admin import (
    actual_query_cost,
    load_document,
    requested_query_cost,
)


def test_shopify_documentation_example():
    query = "{ products(first: 10) { edges { node { title variants(first: 5) { edges { node { price } } } } } } }"
    assert requested_query_cost(query) == 2 + 10 * (1 + 2 + 5 * 1)


def test_scalars_are_free_objects_cost_one():
    assert requested_query_cost("{ shop { name currencyCode } }") == 1
    assert requested_query_cost("{ shop { name } productVariant(id: \"gid://shopify/ProductVariant/1\") { price inventoryItem { unitCost { amount } } } }") == 1 + 3


def test_variables_and_defaults_size_connections():
    source = "query Q($n: Int = 7) { products(first: $n) { nodes { id } } }"
    assert requested_query_cost(source) == 2 + 7
    assert requested_query_cost(source, {"n": 40}) == 2 + 40


def test_catalog_documents_fit_the_single_query_limit():
    assert requested_query_cost(load_document("CatalogProducts"), {"first": 25, "variantsFirst": 10}) == 2 + 25 * (3 + 3 * 10)
    assert requested_query_cost(load_document("ProductVariantsPage"), {"productId": "gid://shopify/Product/1", "first": 100}) == 303
    assert requested_query_cost(load_document("ShopCurrency")) == 1


def test_fragments_and_edges_plus_nodes():
    both = "{ products(first: 3) { edges { cursor node { id } } nodes { id vendor } pageInfo { hasNextPage } } }"
    assert requested_query_cost(both) == 2 + 3 * 1
    typed = """{ nodes(ids: ["a"]) { ... on Product { title } ... on ProductVariant { product { id } inventoryItem { id } } } }"""
    # the dearer alternative counts: 1 (list entry) + 2 (product + inventoryItem)
    assert requested_query_cost(typed) == 1 + 2


def test_mutations_cost_ten():
    mutation = """mutation { productVariantsBulkUpdate(productId: "gid://shopify/Product/1", variants: []) {
        productVariants { id } userErrors { message } } }"""
    assert requested_query_cost(mutation) == 10


def test_actual_cost_counts_what_came_back():
    query = "{ products(first: 10) { nodes { id variants(first: 5) { nodes { price } } } } }"
    data = {"products": {"nodes": [{"id": "1", "variants": {"nodes": [{"price": "1.00"}] * 2}}, {"id": "2", "variants": {"nodes": []}}]}}
    assert actual_query_cost(query, data) == 2 + (1 + 2 + 2) + (1 + 2)
    assert actual_query_cost(query, None) == 0
    assert actual_query_cost("{ productVariant(id: \"x\") { id } }", {"productVariant": None}) == 0

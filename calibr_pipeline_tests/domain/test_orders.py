"""Parsing one Shopify order: every field checked, every failure named."""

from __future__ import annotations

import copy
from decimal import Decimal

import pytest

from calibr_pipeline.domain.orders import MalformedOrder, parse_shopify_order


def _money(amount, currency="USD"):
    return {"shopMoney": {"amount": amount, "currencyCode": currency}}


GOOD = {
    "id": "gid://shopify/Order/1",
    "name": "#1001",
    "createdAt": "2026-03-01T10:00:00Z",
    "updatedAt": "2026-03-03T08:00:00Z",
    "cancelledAt": None,
    "test": False,
    "sourceName": "web",
    "currencyCode": "USD",
    "lineItems": {
        "pageInfo": {"hasNextPage": False, "endCursor": None},
        "nodes": [
            {"id": "gid://shopify/LineItem/1", "sku": "A", "quantity": 2, "variant": {"id": "gid://shopify/ProductVariant/9"},
             "originalUnitPriceSet": _money("19.99"), "discountedUnitPriceSet": _money("17.99")},
            {"id": "gid://shopify/LineItem/2", "sku": None, "quantity": 1, "variant": {"id": "gid://shopify/ProductVariant/8"},
             "originalUnitPriceSet": _money("5.00"), "discountedUnitPriceSet": _money("5.00")},
        ],
    },
    "refunds": [
        {"id": "gid://shopify/Refund/1", "createdAt": "2026-03-03T08:00:00Z", "refundLineItems": {"nodes": [
            {"quantity": 1, "lineItem": {"id": "gid://shopify/LineItem/1"}, "subtotalSet": _money("17.99")}]}}
    ],
}


def test_a_good_order_parses_exactly():
    order = parse_shopify_order(GOOD, "USD")
    assert order.order_day.isoformat() == "2026-03-01"
    assert [(l.sku, l.quantity, l.original_unit_price, l.discounted_unit_price) for l in order.lines] == [
        ("A", 2, Decimal("19.99"), Decimal("17.99")),
        (None, 1, Decimal("5.00"), Decimal("5.00")),
    ]
    assert [(r.line_external_id, r.quantity, r.amount) for r in order.refunds] == [("gid://shopify/LineItem/1", 1, Decimal("17.99"))]


def _broken(path, value):
    node = copy.deepcopy(GOOD)
    target = node
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return node


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("currencyCode",), "EUR", "currencyCode"),
        (("createdAt",), "yesterday", "createdAt"),
        (("updatedAt",), "2026-02-01T00:00:00Z", "updatedAt"),
        (("lineItems", "nodes", 0, "quantity"), 0, "lineItems[0].quantity"),
        (("lineItems", "nodes", 0, "quantity"), -2, "lineItems[0].quantity"),
        (("lineItems", "nodes", 1, "variant"), None, "lineItems[1].variant"),
        (("lineItems", "nodes", 0, "originalUnitPriceSet"), _money("19,99"), "lineItems[0].originalUnitPriceSet.amount"),
        (("lineItems", "nodes", 0, "originalUnitPriceSet"), _money("-1"), "lineItems[0].originalUnitPriceSet.amount"),
        (("lineItems", "nodes", 0, "discountedUnitPriceSet"), _money("17.99", "EUR"), "lineItems[0].discountedUnitPriceSet.currencyCode"),
        (("lineItems", "nodes", 0, "discountedUnitPriceSet"), _money("25.00"), "lineItems[0].discountedUnitPriceSet"),
        (("lineItems", "nodes"), [], "lineItems"),
        (("refunds", 0, "refundLineItems", "nodes", 0, "lineItem"), {"id": "gid://shopify/LineItem/77"}, "refunds[0].refundLineItems[0].lineItem"),
    ],
)
def test_each_defect_is_named(path, value, field):
    with pytest.raises(MalformedOrder) as raised:
        parse_shopify_order(_broken(path, value), "USD")
    assert raised.value.field == field
    assert raised.value.reason


def test_a_line_known_only_by_sku_is_kept():
    order = parse_shopify_order(_broken(("lineItems", "nodes", 0, "variant"), None), "USD")
    assert order.lines[0].variant_external_id is None and order.lines[0].sku == "A"

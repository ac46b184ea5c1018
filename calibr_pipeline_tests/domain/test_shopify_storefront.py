import json
from decimal import Decimal

import pytest

from calibr_pipeline.domain.errors import ErrorClass, ExtractionError
from calibr_pipeline.domain.shopify_storefront import parse_shopify_product


def product_json(*variants, title="Classic Tee", product_id=632910392):
    return json.dumps(
        {"product": {"id": product_id, "title": title, "handle": "classic-tee", "variants": list(variants)}}
    )


def product_js(*variants, title="Classic Tee"):
    prices = [v["price"] for v in variants if isinstance(v.get("price"), int)]
    return json.dumps(
        {
            "id": 632910392,
            "title": title,
            "handle": "classic-tee",
            "price": min(prices) if prices else None,
            "available": any(v.get("available") for v in variants),
            "variants": list(variants),
        }
    )


def failure(payload, **kwargs) -> ExtractionError:
    with pytest.raises(ExtractionError) as info:
        parse_shopify_product(payload, **kwargs)
    assert info.value.message
    return info.value


# --------------------------------------------------------------------------- .json


def test_json_single_variant_sale():
    payload = product_json(
        {
            "id": 808950810,
            "sku": "TEE-S",
            "title": "Default Title",
            "price": "19.99",
            "compare_at_price": "24.99",
        }
    )
    result = parse_shopify_product(payload, kind="json", currency="USD")
    assert (result.amount, result.currency, result.regular_amount, result.on_sale) == (
        Decimal("19.99"),
        "USD",
        Decimal("24.99"),
        True,
    )
    assert (result.source, result.variant_id, result.sku, result.title) == (
        "shopify_json",
        "808950810",
        "TEE-S",
        "Classic Tee",
    )
    # "available" is absent from .json: unknown, not guessed.
    assert result.availability is None


def test_json_accepts_bytes_and_price_currency_in_payload():
    payload = product_json(
        {"id": 1, "sku": "A", "price": "1999.00", "price_currency": "JPY", "available": True}
    )
    result = parse_shopify_product(payload.encode(), kind="json", currency="USD")
    assert (result.amount, result.currency, result.availability) == (Decimal("1999"), "JPY", "InStock")
    assert str(result.amount) == "1999"


def test_json_compare_at_not_higher_is_not_a_sale():
    payload = product_json({"id": 1, "price": "20.00", "compare_at_price": "20.00"})
    result = parse_shopify_product(payload, kind="json", currency="EUR")
    assert result.regular_amount is None and not result.on_sale


def test_json_variant_hint_by_id_sku_and_url():
    payload = product_json(
        {"id": 11, "sku": "TEE-S", "title": "S", "price": "19.99"},
        {"id": 12, "sku": "TEE-M", "title": "M", "price": "21.99"},
    )
    by_id = parse_shopify_product(payload, kind="json", currency="USD", variant_hint="12")
    by_sku = parse_shopify_product(payload, kind="json", currency="USD", variant_hint="TEE-M")
    by_url = parse_shopify_product(
        payload,
        kind="json",
        currency="USD",
        variant_hint="https://shop.example.com/products/classic-tee?variant=12",
    )
    assert by_id == by_sku == by_url
    assert (by_id.amount, by_id.variant_id, by_id.sku, by_id.title) == (
        Decimal("21.99"),
        "12",
        "TEE-M",
        "Classic Tee - M",
    )
    assert by_id.low_amount is None and by_id.high_amount is None


def test_json_several_variants_same_price():
    payload = product_json(
        {"id": 11, "sku": "S", "price": "19.99", "available": False},
        {"id": 12, "sku": "M", "price": "19.99", "available": True},
    )
    result = parse_shopify_product(payload, kind="json", currency="USD")
    assert (result.amount, result.availability, result.variant_id, result.low_amount) == (
        Decimal("19.99"),
        "InStock",
        None,
        None,
    )


def test_json_several_variants_different_prices_give_from_price():
    payload = product_json(
        {"id": 11, "sku": "S", "price": "24.00", "available": True},
        {"id": 12, "sku": "M", "price": "19.99", "compare_at_price": "29.99", "available": True},
        {"id": 13, "sku": "L", "price": "21.50", "available": False},
    )
    result = parse_shopify_product(payload, kind="json", currency="CAD")
    assert (result.amount, result.low_amount, result.high_amount, result.offer_count) == (
        Decimal("19.99"),
        Decimal("19.99"),
        Decimal("24.00"),
        3,
    )
    assert (result.regular_amount, result.variant_id, result.sku, result.title) == (
        Decimal("29.99"),
        None,
        None,
        "Classic Tee",
    )


def test_json_variant_not_found():
    payload = product_json({"id": 11, "sku": "S", "price": "19.99"})
    error = failure(payload, kind="json", currency="USD", variant_hint="99")
    assert error.error_class is ErrorClass.VARIANT_NOT_FOUND
    assert "11" in error.message and "S" in error.message


def test_json_zero_price():
    error = failure(product_json({"id": 1, "price": "0.00"}), kind="json", currency="USD")
    assert error.error_class is ErrorClass.PARSE_ZERO_PRICE


def test_json_zero_priced_variant_is_skipped_when_others_are_priced():
    payload = product_json({"id": 1, "price": "0.00"}, {"id": 2, "price": "5.00"})
    assert parse_shopify_product(payload, kind="json", currency="USD").amount == Decimal("5.00")


def test_json_without_any_currency_is_currency_unknown():
    error = failure(product_json({"id": 1, "price": "10.00"}), kind="json")
    assert error.error_class is ErrorClass.CURRENCY_UNKNOWN


def test_json_invalid_store_currency():
    error = failure(product_json({"id": 1, "price": "10.00"}), kind="json", currency="dollars")
    assert error.error_class is ErrorClass.CURRENCY_UNKNOWN


@pytest.mark.parametrize(
    "payload, fragment",
    [
        ("", "empty"),
        ("<html>Not Found</html>", "not valid JSON"),
        ('{"product": {"id": 1, "variants": [', "not valid JSON"),
        ('{"products": []}', '"product"'),
        ('[{"product": {}}]', '"product"'),
        ('{"product": {"id": 1, "variants": []}}', "variants"),
        ('{"product": {"id": 1}}', "variants"),
        ('{"product": {"id": 1, "variants": ["x"]}}', "object"),
        ('{"product": {"id": 1, "variants": [{"id": 5}]}}', "no price"),
        ('{"product": {"id": 1, "variants": [{"id": 5, "price": "19,99"}]}}', "not a decimal"),
        ('{"product": {"id": 1, "variants": [{"id": 5, "price": NaN}]}}', "not valid JSON"),
        (b"\xff\xfe\x00garbage", "UTF-8"),
    ],
)
def test_json_malformed_payloads(payload, fragment):
    error = failure(payload, kind="json", currency="USD")
    assert error.error_class is ErrorClass.MALFORMED_BODY
    assert fragment in error.message


def test_json_null_price_is_no_price():
    error = failure(product_json({"id": 1, "price": None}), kind="json", currency="USD")
    assert error.error_class is ErrorClass.PARSE_NO_PRICE


# --------------------------------------------------------------------------- .js


def test_js_minor_units_usd():
    payload = product_js({"id": 11, "sku": "S", "price": 1999, "compare_at_price": 2499, "available": True})
    result = parse_shopify_product(payload, kind="js", currency="USD")
    assert (result.amount, result.regular_amount, result.availability, result.source) == (
        Decimal("19.99"),
        Decimal("24.99"),
        "InStock",
        "shopify_js",
    )
    assert str(result.amount) == "19.99"


def test_js_cents_are_hundredths_even_for_zero_decimal_jpy():
    # Shopify reports 1,999 yen as 199900 on .js endpoints (and in Liquid), not as 1999.
    payload = product_js({"id": 11, "sku": "S", "price": 199900, "compare_at_price": None, "available": True})
    result = parse_shopify_product(payload, kind="js", currency="JPY")
    assert (result.amount, result.currency) == (Decimal("1999"), "JPY")


def test_js_cents_are_hundredths_for_three_decimal_kwd_too():
    payload = product_js({"id": 11, "price": 12345, "available": True})
    result = parse_shopify_product(payload, kind="js", currency="KWD")
    assert result.amount == Decimal("123.45")


def test_js_sold_out_variant():
    payload = product_js({"id": 11, "price": 500, "available": False})
    assert parse_shopify_product(payload, kind="js", currency="GBP").availability == "OutOfStock"


def test_js_from_price_and_hint():
    payload = product_js(
        {"id": 11, "sku": "S", "price": 1500, "available": True},
        {"id": 12, "sku": "M", "price": 1700, "available": True},
    )
    result = parse_shopify_product(payload, kind="js", currency="EUR")
    assert (result.amount, result.low_amount, result.high_amount, result.offer_count) == (
        Decimal("15.00"),
        Decimal("15.00"),
        Decimal("17.00"),
        2,
    )
    hinted = parse_shopify_product(
        payload, kind="js", currency="EUR", variant_hint="gid://shopify/ProductVariant/12"
    )
    assert (hinted.amount, hinted.variant_id) == (Decimal("17.00"), "12")


@pytest.mark.parametrize("price", ["19.99", 19.99, True, [1999]])
def test_js_price_must_be_integer_minor_units(price):
    payload = json.dumps({"id": 1, "title": "T", "variants": [{"id": 11, "price": price, "available": True}]})
    error = failure(payload, kind="js", currency="USD")
    assert error.error_class is ErrorClass.MALFORMED_BODY
    assert "11" in error.message


def test_js_zero_price():
    error = failure(product_js({"id": 11, "price": 0, "available": True}), kind="js", currency="USD")
    assert error.error_class is ErrorClass.PARSE_ZERO_PRICE


def test_js_top_level_must_be_object():
    error = failure("[1, 2]", kind="js", currency="USD")
    assert error.error_class is ErrorClass.MALFORMED_BODY


def test_unknown_kind_is_a_programming_error():
    with pytest.raises(ValueError):
        parse_shopify_product("{}", kind="xml", currency="USD")  # type: ignore[arg-type]

"""Offers from a Shopify storefront's public product endpoints.

``/products/<handle>.json``: ``{"product": {"id", "title", "variants": [{"id", "sku", "price":
"19.99", "compare_at_price": "24.99" | null, "available"?, "price_currency"?}]}}`` — prices are
decimal strings in major units.

``/products/<handle>.js``: ``{"id", "title", "price": 1999, "available", "variants": [{"id",
"sku", "price": 1999, "compare_at_price": 2499 | null, "available": bool}]}`` — prices are
integers in Shopify "cents": the amount x 100 whatever the currency (a 1,999 yen price is
199900; Liquid's ``money`` filters and the Ajax API share this convention), so the ISO 4217
minor-unit exponent must not be used here.

Currency: the variant's ``price_currency`` when the payload has one, else ``currency`` (the
competitor's configured store currency), else CURRENCY_UNKNOWN — neither endpoint is otherwise
self-describing, and guessing would misprice by the exchange rate.

Variant choice follows :mod:`calibr_pipeline.domain.offer_extraction`: ``variant_hint`` matches a
variant id (also as ``?variant=ID`` URL or gid), sku or barcode, and no match is
VARIANT_NOT_FOUND; without a hint, one price shared by all variants is used, and differing
prices give the "from" price (lowest, with ``low_amount``/``high_amount`` and ``offer_count``
= number of variants, ``variant_id``/``sku`` = None). Sold-out variants still count towards the
range: the storefront shows them.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any, Literal

from calibr_pipeline.domain.currency import lookup_symbol
from calibr_pipeline.domain.errors import ErrorClass, ExtractionError, PriceParseError

# Shopify's Ajax/.js money values are always hundredths, even for zero-decimal currencies.
SHOPIFY_CENTS_EXPONENT = 2
from calibr_pipeline.domain.offer_extraction import (
    ExtractedOffer,
    OfferCandidate,
    choose_offer,
    identifier_keys,
    match_variant,
    most_specific_error,
    normalize_availability,
)
from calibr_pipeline.domain.price_parsing import normalize_amount, validate_amount

_DECIMAL_STRING = re.compile(r"\s*\d+(?:\.\d+)?\s*")
_DEFAULT_VARIANT_TITLES = {"", "default title", "default"}


def _malformed(kind: str, message: str) -> ExtractionError:
    return ExtractionError(ErrorClass.MALFORMED_BODY, f"Shopify product .{kind}: {message}")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _load(payload: str | bytes, kind: str) -> Any:
    if isinstance(payload, (bytes, bytearray)):
        try:
            payload = bytes(payload).decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise _malformed(kind, f"body is not UTF-8 text ({exc})") from exc
    if not isinstance(payload, str):
        raise _malformed(kind, f"body must be str or bytes, got {type(payload).__name__}")
    if not payload.strip():
        raise _malformed(kind, "body is empty")
    try:
        # Decimal, never float: "19.99" and 19.99 both stay exact.
        return json.loads(payload, parse_float=Decimal, parse_constant=_reject_constant)
    except ValueError as exc:
        snippet = payload.strip()[:60]
        raise _malformed(kind, f"body is not valid JSON ({exc}); it starts with {snippet!r}") from exc


def _store_currency(currency: str | None) -> str | None:
    if currency is None or not currency.strip():
        return None
    code, _ = lookup_symbol(currency)
    if code is None:
        raise PriceParseError(
            ErrorClass.CURRENCY_UNKNOWN,
            f"store currency {currency!r} does not name exactly one ISO 4217 currency",
        )
    return code


def _major_units(value: Any, kind: str, field: str, variant: str) -> Decimal:
    """.json price: a decimal string (or a JSON number) in major units."""
    if isinstance(value, bool):
        raise _malformed(kind, f"variant {variant} {field} is a boolean")
    if isinstance(value, (int, Decimal)):
        return Decimal(value)
    if isinstance(value, str) and _DECIMAL_STRING.fullmatch(value):
        return Decimal(value.strip())
    raise _malformed(kind, f"variant {variant} {field} {value!r} is not a decimal amount")


def _minor_units(value: Any, currency: str, kind: str, field: str, variant: str) -> Decimal:
    """.js price: an integer number of Shopify cents (amount x 100 for every currency)."""
    if isinstance(value, bool):
        raise _malformed(kind, f"variant {variant} {field} is a boolean")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if not isinstance(value, int):
        raise _malformed(kind, f"variant {variant} {field} {value!r} is not an integer number of minor units")
    return Decimal(value).scaleb(-SHOPIFY_CENTS_EXPONENT)


def _variant_candidate(
    variant: dict[str, Any],
    *,
    kind: str,
    store_currency: str | None,
    product_title: str | None,
    group: str,
) -> OfferCandidate:
    variant_id = variant.get("id")
    label = str(variant_id) if variant_id is not None else "without id"
    keys: set[str] = set()
    for field in ("id", "sku", "barcode", "admin_graphql_api_id"):
        keys |= identifier_keys(variant.get(field))
    sku = variant.get("sku")
    sku = sku.strip() if isinstance(sku, str) and sku.strip() else None
    variant_title = variant.get("title") if isinstance(variant.get("title"), str) else None
    title = product_title
    if variant_title and variant_title.strip().lower() not in _DEFAULT_VARIANT_TITLES:
        title = f"{product_title} - {variant_title.strip()}" if product_title else variant_title.strip()
    meta = dict(
        availability=normalize_availability(variant["available"])
        if isinstance(variant.get("available"), bool)
        else None,
        variant_id=str(variant_id) if variant_id is not None else None,
        sku=sku,
        title=title,
        product_title=product_title,
        keys=frozenset(keys),
        group=group,
    )
    try:
        if "price" not in variant:
            raise _malformed(kind, f"variant {label} has no price field")
        declared = variant.get("price_currency")
        if declared is not None:
            currency, _ = lookup_symbol(str(declared))
            if currency is None:
                raise PriceParseError(
                    ErrorClass.CURRENCY_UNKNOWN,
                    f"variant {label} price_currency {declared!r} does not name exactly one ISO 4217 currency",
                )
        elif store_currency is not None:
            currency = store_currency
        else:
            raise PriceParseError(
                ErrorClass.CURRENCY_UNKNOWN,
                f"Shopify product .{kind} states no currency and no store currency is configured",
            )
        raw_price = variant["price"]
        if raw_price is None:
            raise PriceParseError(ErrorClass.PARSE_NO_PRICE, f"variant {label} price is null")

        def convert(value: Any, field: str) -> Decimal:
            if kind == "js":
                return _minor_units(value, currency, kind, field, label)
            return _major_units(value, kind, field, label)

        amount = normalize_amount(validate_amount(convert(raw_price, "price"), raw_price), currency)
        regular = None
        compare_at = variant.get("compare_at_price")
        if compare_at not in (None, ""):
            compare_amount = convert(compare_at, "compare_at_price")
            if compare_amount > 0:
                regular = normalize_amount(compare_amount, currency)
        return OfferCandidate(
            amount=amount,
            currency=currency,
            regular_amount=regular if regular is not None and regular > amount else None,
            **meta,  # type: ignore[arg-type]
        )
    except ExtractionError as exc:
        return OfferCandidate(error=exc, **meta)  # type: ignore[arg-type]


def parse_shopify_product(
    payload: str | bytes,
    *,
    kind: Literal["json", "js"],
    variant_hint: str | None = None,
    currency: str | None = None,
) -> ExtractedOffer:
    """The offer in a Shopify ``/products/<handle>.json`` or ``.js`` body (see module doc)."""
    if kind not in ("json", "js"):
        raise ValueError(f"kind must be 'json' or 'js', got {kind!r}")
    data = _load(payload, kind)
    if kind == "json":
        if not isinstance(data, dict) or not isinstance(data.get("product"), dict):
            raise _malformed(kind, 'expected an object {"product": {...}} at the top level')
        product = data["product"]
    else:
        if not isinstance(data, dict):
            raise _malformed(kind, "expected a product object at the top level")
        product = data
    variants = product.get("variants")
    if not isinstance(variants, list) or not variants:
        raise _malformed(kind, "product has no variants list")
    if not all(isinstance(v, dict) for v in variants):
        raise _malformed(kind, "every variant must be an object")

    store_currency = _store_currency(currency)
    title = product.get("title") if isinstance(product.get("title"), str) else None
    group = f"shopify:{product.get('id')}"
    candidates = [
        _variant_candidate(v, kind=kind, store_currency=store_currency, product_title=title, group=group)
        for v in variants
    ]
    source = "shopify_json" if kind == "json" else "shopify_js"

    hint = variant_hint.strip() if variant_hint and variant_hint.strip() else None
    if hint is not None:
        candidates = match_variant(candidates, hint)
        if not candidates:
            known = ", ".join(
                str(v.get("id")) + (f" (sku {v['sku']})" if v.get("sku") else "") for v in variants[:10]
            )
            raise ExtractionError(
                ErrorClass.VARIANT_NOT_FOUND, f"no variant matches {hint!r}; the product has variants {known}"
            )
    usable = [c for c in candidates if c.error is None]
    if not usable:
        raise most_specific_error(c.error for c in candidates if c.error)  # type: ignore[misc]
    return choose_offer(usable, source=source)

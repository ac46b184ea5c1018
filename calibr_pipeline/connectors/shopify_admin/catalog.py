"""Read the merchant's whole catalog as :class:`CatalogVariant` rows."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

from calibr_pipeline.connectors.shopify_admin.client import ShopifyAdminClient
from calibr_pipeline.connectors.shopify_admin.errors import ShopifyAdminError
from calibr_pipeline.domain.catalog import CatalogVariant
from calibr_pipeline.domain.errors import ErrorClass
from calibr_pipeline.domain.money import to_decimal

log = logging.getLogger(__name__)

# 25 products × (3 + 3 × 10 variants) + 2 = 827 points: under the 1,000-point
# single-query limit, and the demo catalogs (1–4 variants) rarely need a second
# variants page. Shopify allows 2,048 variants per product, so the rest is paged.
DEFAULT_PRODUCTS_PAGE_SIZE = 25
DEFAULT_VARIANTS_PAGE_SIZE = 10
# ProductVariantsPage: 1 + 2 + 100 × 3 = 303 points.
EXTRA_VARIANTS_PAGE_SIZE = 100


def fetch_catalog(
    client: ShopifyAdminClient,
    *,
    products_page_size: int = DEFAULT_PRODUCTS_PAGE_SIZE,
    variants_page_size: int = DEFAULT_VARIANTS_PAGE_SIZE,
) -> tuple[str, list[CatalogVariant]]:
    """The shop's currency and every variant, in product-id then variant-position order."""
    shop = client.execute("ShopCurrency")["shop"]
    currency = shop["currencyCode"]
    rows: list[CatalogVariant] = []
    for product in _products(client, products_page_size, variants_page_size):
        for variant in _variants(client, product):
            rows.append(_row(product, variant, currency))
    log.info("read %d variants (%s) in %d requests", len(rows), currency, client.stats.requests)
    return currency, rows


def _products(client: ShopifyAdminClient, first: int, variants_first: int) -> Iterator[dict[str, Any]]:
    after: str | None = None
    while True:
        page = client.execute("CatalogProducts", {"first": first, "after": after, "variantsFirst": variants_first})
        connection = page["products"]
        yield from connection["nodes"]
        info = connection["pageInfo"]
        if not info["hasNextPage"]:
            return
        after = info["endCursor"]
        if not after:
            raise ShopifyAdminError("products page says hasNextPage but has no endCursor", error_class=ErrorClass.MALFORMED_BODY)


def _variants(client: ShopifyAdminClient, product: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    connection = product["variants"]
    yield from connection["nodes"]
    while connection["pageInfo"]["hasNextPage"]:
        page = client.execute(
            "ProductVariantsPage",
            {"productId": product["id"], "first": EXTRA_VARIANTS_PAGE_SIZE, "after": connection["pageInfo"]["endCursor"]},
        )
        if page.get("product") is None:
            # Deleted between the two reads: the variants already read are still true.
            log.warning("product %s vanished while paging its variants", product["id"])
            return
        connection = page["product"]["variants"]
        yield from connection["nodes"]


def _row(product: Mapping[str, Any], variant: Mapping[str, Any], currency: str) -> CatalogVariant:
    unit_cost = (variant.get("inventoryItem") or {}).get("unitCost")
    cost = None
    if unit_cost is not None:
        if unit_cost["currencyCode"] == currency:
            cost = to_decimal(unit_cost["amount"])
        else:
            # A cost in another currency cannot be compared with the price without a
            # rate we do not have here; unknown is more honest than wrong.
            log.warning("variant %s has its unit cost in %s, not %s; cost ignored", variant["id"], unit_cost["currencyCode"], currency)
    compare_at = variant.get("compareAtPrice")
    return CatalogVariant(
        product_external_id=product["id"],
        product_title=product["title"],
        product_type=product["productType"],
        vendor=product["vendor"],
        tags=tuple(product["tags"]),
        variant_external_id=variant["id"],
        sku=variant.get("sku") or None,
        variant_title=variant["title"],
        price=to_decimal(variant["price"]),
        compare_at_price=to_decimal(compare_at) if compare_at is not None else None,
        cost=cost,
        currency=currency,
    )

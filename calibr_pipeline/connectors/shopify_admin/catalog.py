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

# Page sizes are chosen per request from what the shop charges (see
# ``ShopifyAdminClient.estimate_cost``): the first catalog page is the largest one the
# static, conservative estimate allows (25 products × 10 variants: 827 points under
# the 1,000-point single-query limit); once Shopify has priced it (57 points on the
# live cost model), the next pages grow to the largest size whose extrapolated cost
# still fits, usually 250 products. Shopify allows 2,048 variants per product; those
# beyond the inline page are read with ProductVariantsPage, sized the same way.
DEFAULT_PRODUCTS_PAGE_SIZE = 25
DEFAULT_VARIANTS_PAGE_SIZE = 10
PRODUCT_PAGE_SIZES = (250, 200, 150, 100, 50, 25, 10, 5, 1)
EXTRA_VARIANTS_PAGE_SIZES = (250, 100, 50, 25, 10, 5, 1)
# Kept for callers that imported it: the largest extra-variants page we ask for.
EXTRA_VARIANTS_PAGE_SIZE = EXTRA_VARIANTS_PAGE_SIZES[0]


def fetch_catalog(
    client: ShopifyAdminClient,
    *,
    products_page_size: int | None = None,
    variants_page_size: int = DEFAULT_VARIANTS_PAGE_SIZE,
) -> tuple[str, list[CatalogVariant]]:
    """The shop's currency and every variant, in product-id then variant-position order.

    ``products_page_size`` pins the products page (tests); by default each page is
    the largest the shop's cost allows (see the module comment).
    """
    shop = client.execute("ShopCurrency")["shop"]
    currency = shop["currencyCode"]
    rows: list[CatalogVariant] = []
    for product in _products(client, products_page_size, variants_page_size):
        for variant in _variants(client, product):
            rows.append(_row(product, variant, currency))
    log.info("read %d variants (%s) in %d requests", len(rows), currency, client.stats.requests)
    return currency, rows


def affordable_page_size(client: ShopifyAdminClient, document: str, sizes: tuple[int, ...], variables: Mapping[str, Any], size_variable: str = "first") -> int:
    """The largest of ``sizes`` whose cost, as the client now estimates it, fits one request.

    "Fits" means within the single-query limit and the shop's bucket; before the shop
    has priced the document that is the static estimate, afterwards what it charges.
    The smallest size is the answer when nothing fits (the client then refuses it
    with a clear MAX_COST_EXCEEDED rather than this function looping).
    """
    limit = client.cost_limit
    for size in sizes:
        if client.estimate_cost(document, {**variables, size_variable: size}) <= limit:
            return size
    return sizes[-1]


def _products(client: ShopifyAdminClient, pinned: int | None, variants_first: int) -> Iterator[dict[str, Any]]:
    after: str | None = None
    while True:
        first = pinned or affordable_page_size(client, "CatalogProducts", PRODUCT_PAGE_SIZES, {"variantsFirst": variants_first})
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
        first = affordable_page_size(client, "ProductVariantsPage", EXTRA_VARIANTS_PAGE_SIZES, {"productId": product["id"]})
        page = client.execute(
            "ProductVariantsPage",
            {"productId": product["id"], "first": first, "after": connection["pageInfo"]["endCursor"]},
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

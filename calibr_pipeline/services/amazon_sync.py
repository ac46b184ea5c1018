"""Amazon (read-only) for one sales channel and one UTC day: orders and competitive prices.

Configured like a shop: a ``shops`` row with platform ``amazon`` (its ``admin_endpoint``
is the SP-API endpoint), an ``amazon_accounts`` row with the sealed credentials, and
``amazon_sku_map`` rows mapping seller SKUs / ASINs to our variants. Orders land in the
same ``orders`` / ``order_lines`` tables as Shopify's, with ``channel = 'amazon'``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from calibr_pipeline.connectors.amazon_credentials import seal, unseal
from calibr_pipeline.connectors.amazon_sp_api import SpApiClient, SpApiCredentials
from calibr_pipeline.domain.errors import CalibrError
from calibr_pipeline.domain.orders import MalformedOrder, OrderLineRecord, OrderRecord, parse_datetime
from calibr_pipeline.warehouse.engine import session_scope
from calibr_pipeline.warehouse.models import AmazonAccount, AmazonCompetitivePrice, AmazonSkuMap, Project, Shop, Variant
from calibr_pipeline.warehouse.order_store import OrderWriteStats, write_orders
from calibr_pipeline.warehouse.tenancy import upsert_shop

_UNIT = Decimal("0.000001")


@dataclass(frozen=True)
class RejectedAmazonOrder:
    external_id: str | None
    field: str
    reason: str
    node: Any


@dataclass(frozen=True)
class AmazonSyncResult:
    stats: OrderWriteStats
    competitive_prices: int
    api_requests: int
    throttled: int


def configure_amazon(
    session: Session, project: Project, *, seller_id: str, marketplace_id: str, endpoint: str, token_url: str,
    client_id: str, client_secret: str, refresh_token: str, currency: str, sku_map: dict[str, tuple[str, str]] | None,
) -> Shop:
    """Create or update the project's Amazon channel; ``sku_map``: seller SKU -> (ASIN, our SKU)
    replaces the mapping (None keeps it)."""
    shop = upsert_shop(session, project, "amazon", platform="amazon", admin_endpoint=endpoint, currency=currency)
    session.flush()
    sealed = seal(json.dumps({"client_secret": client_secret, "refresh_token": refresh_token}))
    account = session.get(AmazonAccount, shop.id) or AmazonAccount(shop_id=shop.id)
    account.seller_id, account.marketplace_id, account.token_url = seller_id, marketplace_id, token_url
    account.client_id, account.sealed_credentials = client_id, sealed
    session.add(account)
    if sku_map is None:
        return shop
    variants = dict(session.execute(select(Variant.sku, Variant.id).where(Variant.project_id == project.id)).all())
    session.execute(delete(AmazonSkuMap).where(AmazonSkuMap.shop_id == shop.id))
    unknown = sorted(our for _asin, our in sku_map.values() if our not in variants)
    if unknown:
        raise CalibrError(f"Amazon SKU map names SKUs that are not in the catalog: {', '.join(unknown[:5])}")
    for seller_sku, (asin, our_sku) in sorted(sku_map.items()):
        session.add(AmazonSkuMap(shop_id=shop.id, seller_sku=seller_sku, asin=asin, variant_id=variants[our_sku]))
    return shop


ASIN_PATTERN = re.compile(r"^[A-Z0-9]{10}$")


def map_amazon_sku(session: Session, project: Project, *, sku: str, asin: str | None, seller_sku: str | None) -> AmazonSkuMap:
    """Map one Amazon listing (seller SKU, ASIN) to our SKU ``sku``; the seller SKU defaults to ``sku``,
    the ASIN to the one already mapped for that seller SKU. Raises :class:`CalibrError` naming what is wrong."""
    shop = session.scalars(select(Shop).where(Shop.project_id == project.id, Shop.platform == "amazon")).first()
    if shop is None or session.get(AmazonAccount, shop.id) is None:
        raise CalibrError(f"project {project.slug!r} has no Amazon account; run `calibr amazon connect --project {project.slug} ...` first")
    variant_id = session.scalar(select(Variant.id).where(Variant.project_id == project.id, Variant.sku == sku))
    if variant_id is None:
        raise CalibrError(f"SKU {sku!r} is not in the catalog of project {project.slug!r}")
    seller_sku = (seller_sku or sku).strip()
    if not seller_sku or len(seller_sku) > 200:
        raise CalibrError("--seller-sku must be 1 to 200 characters")
    row = session.get(AmazonSkuMap, (shop.id, seller_sku))
    if asin is not None:
        asin = asin.strip().upper()
        if not ASIN_PATTERN.match(asin):
            raise CalibrError(f"ASIN {asin!r} is not 10 letters or digits (such as B00EXAMPLE)")
    elif row is None:
        raise CalibrError(f"seller SKU {seller_sku!r} is not mapped yet: give its --asin")
    if row is None:
        row = AmazonSkuMap(shop_id=shop.id, seller_sku=seller_sku, asin=asin, variant_id=variant_id)
        session.add(row)
    else:
        row.variant_id = variant_id
        if asin is not None:
            row.asin = asin
    session.flush()
    return row


def client_for_account(shop: Shop, account: AmazonAccount, **kw: Any) -> SpApiClient:
    secrets = json.loads(unseal(account.sealed_credentials))
    return SpApiClient(
        shop.admin_endpoint, account.token_url, SpApiCredentials(account.client_id, secrets["client_secret"], secrets["refresh_token"]),
        marketplace_id=account.marketplace_id, **kw,
    )


def _amount(money: Any, field: str, currency: str) -> Decimal:
    if not isinstance(money, dict) or money.get("CurrencyCode") != currency:
        raise MalformedOrder(field, f"missing or not in {currency}: {money!r}")
    try:
        amount = Decimal(str(money.get("Amount")))
    except InvalidOperation as exc:
        raise MalformedOrder(f"{field}.Amount", f"not a decimal amount: {money.get('Amount')!r}") from exc
    if not amount.is_finite() or amount < 0:
        raise MalformedOrder(f"{field}.Amount", f"must be >= 0, got {money.get('Amount')!r}")
    return amount


def parse_amazon_order(order: dict[str, Any], items: list[dict[str, Any]], currency: str, our_sku: dict[str, str]) -> OrderRecord:
    """One getOrders order with its getOrderItems items; ItemPrice is the line total."""
    order_id = order.get("AmazonOrderId")
    if not isinstance(order_id, str) or not order_id:
        raise MalformedOrder("AmazonOrderId", "missing")
    lines = []
    for index, item in enumerate(items):
        at = f"OrderItems[{index}]"
        quantity = item.get("QuantityOrdered")
        if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity <= 0:
            raise MalformedOrder(f"{at}.QuantityOrdered", f"must be a positive integer, got {quantity!r}")
        total = _amount(item.get("ItemPrice"), f"{at}.ItemPrice", currency)
        promotion = _amount(item.get("PromotionDiscount") or {"CurrencyCode": currency, "Amount": "0"}, f"{at}.PromotionDiscount", currency)
        if promotion > total:
            raise MalformedOrder(f"{at}.PromotionDiscount", "is larger than the item price")
        seller_sku = item.get("SellerSKU")
        lines.append(
            OrderLineRecord(
                external_id=f"{order_id}/{item.get('OrderItemId')}",
                variant_external_id=None,
                sku=our_sku.get(seller_sku, seller_sku),
                quantity=quantity,
                original_unit_price=(total / quantity).quantize(_UNIT),
                discounted_unit_price=((total - promotion) / quantity).quantize(_UNIT),
            )
        )
    if not lines:
        raise MalformedOrder("OrderItems", "an order without items")
    status = order.get("OrderStatus")
    purchased = parse_datetime(order.get("PurchaseDate"), "PurchaseDate")
    return OrderRecord(
        external_id=order_id, name=order_id, created_at=purchased,
        updated_at=parse_datetime(order.get("LastUpdateDate"), "LastUpdateDate"),
        cancelled_at=purchased if status == "Canceled" else None, currency=currency, test=False,
        source_name=order.get("SalesChannel"), lines=tuple(lines), refunds=(),
    )


def sync_amazon_day(warehouse_url: str, shop_id: int, day: dt.date, client_factory: Callable[[Shop, AmazonAccount], SpApiClient]) -> AmazonSyncResult:
    with session_scope(warehouse_url) as session:
        shop = session.get(Shop, shop_id)
        account = session.get(AmazonAccount, shop_id)
        if shop is None or account is None:
            raise CalibrError(f"shop {shop_id} has no Amazon account configured")
        tenant_id = session.get(Project, shop.project_id).tenant_id
        mapping = session.execute(
            select(AmazonSkuMap.seller_sku, AmazonSkuMap.asin, Variant.sku, Variant.id).join(Variant, Variant.id == AmazonSkuMap.variant_id)
            .where(AmazonSkuMap.shop_id == shop_id)
        ).all()
        session.expunge(shop)
        session.expunge(account)
    client = client_factory(shop, account)
    start = dt.datetime.combine(day, dt.time(), dt.UTC)
    after, before = start.strftime("%Y-%m-%dT%H:%M:%SZ"), (start + dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    our_sku = {m.seller_sku: m.sku for m in mapping}
    orders: list[OrderRecord] = []
    rejected: list[RejectedAmazonOrder] = []
    try:
        for order in client.orders_updated(after, before):
            order_id = order.get("AmazonOrderId")
            try:
                items = client.order_items(order_id) if order.get("OrderStatus") != "Pending" else []
                orders.append(parse_amazon_order(order, items, shop.currency, our_sku))
            except MalformedOrder as exc:
                rejected.append(RejectedAmazonOrder(order_id, exc.field, exc.reason, order))
        asins = sorted({m.asin for m in mapping})
        prices = client.competitive_prices(asins) if asins else []
    finally:
        client.close()
    by_asin = {m.asin: m.id for m in mapping}
    price_rows = []
    for entry in prices:
        asin = entry.get("ASIN")
        if asin not in by_asin:
            continue
        competitive = (((entry.get("Product") or {}).get("CompetitivePricing") or {}).get("CompetitivePrices") or [{}])[0].get("Price") or {}
        landed, listing = competitive.get("LandedPrice") or {}, competitive.get("ListingPrice") or {}
        price_rows.append({
            "shop_id": shop_id, "asin": asin, "price_day": day, "tenant_id": tenant_id, "project_id": shop.project_id,
            "variant_id": by_asin[asin], "status": str(entry.get("status")),
            "landed_price": Decimal(landed["Amount"]) if landed.get("Amount") else None,
            "listing_price": Decimal(listing["Amount"]) if listing.get("Amount") else None,
            "currency": landed.get("CurrencyCode") or listing.get("CurrencyCode"),
        })
    with session_scope(warehouse_url) as session:
        stats = write_orders(session, session.merge(shop), tenant_id, day, orders, rejected, channel="amazon")
        session.execute(delete(AmazonCompetitivePrice).where(AmazonCompetitivePrice.shop_id == shop_id, AmazonCompetitivePrice.price_day == day))
        if price_rows:
            session.execute(insert(AmazonCompetitivePrice), price_rows)
    return AmazonSyncResult(stats=stats, competitive_prices=len(price_rows), api_requests=client.stats.requests, throttled=client.stats.throttled)

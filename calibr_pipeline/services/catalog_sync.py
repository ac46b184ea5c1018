"""Catalog ingestion for one shop: Shopify Admin API or a CSV file -> warehouse."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from calibr_pipeline.connectors.shopify_admin import ShopifyAdminClient, fetch_catalog
from calibr_pipeline.domain.catalog_csv import parse_catalog_csv
from calibr_pipeline.domain.errors import CalibrError
from calibr_pipeline.warehouse.catalog_store import CatalogUpsertStats, upsert_catalog
from calibr_pipeline.warehouse.engine import session_scope
from calibr_pipeline.warehouse.models import Shop

ClientFactory = Callable[[Shop], ShopifyAdminClient]


@dataclass(frozen=True)
class ShopSyncResult:
    shop_id: int
    shop_name: str
    source: str
    variants_read: int
    stats: CatalogUpsertStats
    api_requests: int = 0
    throttled_answers: int = 0


def read_shop_catalog(shop: Shop, client_factory: ClientFactory):
    """Return (source, variants, client) for a shop; raises CalibrError with the reason."""
    if shop.platform == "shopify":
        if not shop.admin_endpoint or not shop.access_token:
            raise CalibrError(f"shop {shop.name!r} has no Admin API endpoint or access token configured")
        client = client_factory(shop)
        currency, variants = fetch_catalog(client)
        if currency != shop.currency:
            raise CalibrError(f"shop {shop.name!r} reports currency {currency}, but it is configured as {shop.currency}")
        return "shopify_admin", variants, client
    if shop.platform == "csv":
        if not shop.catalog_csv_path:
            raise CalibrError(f"shop {shop.name!r} has no catalog CSV path configured")
        path = Path(shop.catalog_csv_path)
        if not path.is_file():
            raise CalibrError(f"catalog CSV for shop {shop.name!r} not found: {path}")
        return "csv", parse_catalog_csv(path.read_text(encoding="utf-8")), None
    raise CalibrError(f"shop {shop.name!r} has unsupported platform {shop.platform!r}")


def sync_shop(warehouse_url: str, shop_id: int, client_factory: ClientFactory) -> ShopSyncResult:
    # The remote read happens outside any transaction so a slow shop never holds a
    # warehouse lock; the upsert then runs in one all-or-nothing transaction.
    with session_scope(warehouse_url) as session:
        shop = session.get(Shop, shop_id)
        if shop is None:
            raise CalibrError(f"shop id {shop_id} does not exist")
        session.expunge(shop)
    source, variants, client = read_shop_catalog(shop, client_factory)
    with session_scope(warehouse_url) as session:
        stats = upsert_catalog(session, session.merge(shop), variants)
    client_stats = getattr(client, "stats", None)
    return ShopSyncResult(
        shop_id=shop.id,
        shop_name=shop.name,
        source=source,
        variants_read=len(variants),
        stats=stats,
        api_requests=getattr(client_stats, "requests", 0),
        throttled_answers=getattr(client_stats, "throttled", 0),
    )

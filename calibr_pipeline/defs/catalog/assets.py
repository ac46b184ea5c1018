"""Catalog ingestion: each tenant's shops (Shopify Admin API or CSV) -> products and variants."""


import dagster as dg

from calibr_pipeline.defs.partitions import DAILY_TENANT_PARTITIONS, day_tenant
from calibr_pipeline.defs.resources import ShopifyAdminResource, WarehouseResource
from calibr_pipeline.domain.errors import CalibrError
from calibr_pipeline.monitoring.connector_stats import recording_clients
from calibr_pipeline.services.catalog_sync import sync_shop
from calibr_pipeline.warehouse.tenancy import shops_for_tenant, tenant_by_slug


@dg.asset(
    partitions_def=DAILY_TENANT_PARTITIONS,
    group_name="catalog",
    kinds={"shopify", "sql"},
    description=(
        "The merchant catalog as the shop reports it when the partition runs: products and "
        "variants (price, compare-at price, cost) upserted into `products` and `variants`. "
        "Reads the Shopify Admin GraphQL API (paginated, throttle-aware) or a CSV file."
    ),
)
def shop_catalog(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, shopify_admin: ShopifyAdminResource
) -> dg.MaterializeResult:
    partition = day_tenant(context)
    with warehouse.session() as session:
        tenant = tenant_by_slug(session, partition.tenant_slug)
        # Amazon channels are read-only sales sources with no catalog of their own.
        shop_ids = [s.id for s in shops_for_tenant(session, tenant) if s.platform != "amazon"]
    if not shop_ids:
        raise dg.Failure(f"tenant {partition.tenant_slug!r} has no shop configured; add one with `calibr shops add`")
    per_shop = {}
    failures = {}
    for shop_id in shop_ids:
        try:
            with recording_clients(shopify_admin.client_for, warehouse.resolved_url, dagster_run_id=context.run_id) as client_for:
                result = sync_shop(warehouse.resolved_url, shop_id, client_for)
        except CalibrError as exc:
            failures[str(shop_id)] = str(exc)
            context.log.error(f"catalog sync failed for shop {shop_id}: {exc}")
            continue
        per_shop[result.shop_name] = {
            "source": result.source,
            "variants_read": result.variants_read,
            "api_requests": result.api_requests,
            "throttled_answers": result.throttled_answers,
            **result.stats.as_metadata(),
        }
        context.log.info(f"shop {result.shop_name}: {result.variants_read} variants from {result.source}")
    if failures:
        # Successful shops are already committed; the run fails so the broken shop is noticed.
        raise dg.Failure(
            description=f"catalog sync failed for {len(failures)} of {len(shop_ids)} shop(s)",
            metadata={"failures": dg.MetadataValue.json(failures), "synced": dg.MetadataValue.json(per_shop)},
        )
    return dg.MaterializeResult(
        metadata={
            "shops": len(per_shop),
            "variants": sum(s["variants_read"] for s in per_shop.values()),
            "per_shop": dg.MetadataValue.json(per_shop),
        }
    )

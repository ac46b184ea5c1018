"""Analytics sources: sales orders per (day, tenant), read-only from the shops."""

from datetime import timedelta

import dagster as dg

from calibr_pipeline.defs.catalog.assets import shop_catalog
from calibr_pipeline.defs.partitions import DAILY_TENANT_PARTITIONS, day_tenant
from calibr_pipeline.defs.resources import ShopifyAdminResource, WarehouseResource
from calibr_pipeline.domain.errors import CalibrError
from calibr_pipeline.monitoring.connector_stats import recording_clients
from calibr_pipeline.services.order_sync import sync_shop_orders
from calibr_pipeline.warehouse.tenancy import shops_for_tenant, tenant_by_slug


# The 06:00 UTC sync must have landed by 08:00 (and be newer than 04:00).
ORDERS_FRESHNESS = dg.FreshnessPolicy.cron(deadline_cron="0 8 * * *", lower_bound_delta=timedelta(hours=4), timezone="UTC")
TRENDS_FRESHNESS = dg.FreshnessPolicy.cron(deadline_cron="0 8 * * *", lower_bound_delta=timedelta(hours=2), timezone="UTC")


@dg.asset(
    partitions_def=DAILY_TENANT_PARTITIONS,
    group_name="analytics",
    kinds={"shopify", "sql"},
    deps=[shop_catalog],
    freshness_policy=ORDERS_FRESHNESS,
    description=(
        "Sales orders whose last update falls on the partition's UTC day (incremental on "
        "`updated_at`), read from the Shopify Admin GraphQL `orders` connection (paginated, "
        "throttle-aware, retried): `orders`, `order_lines`, `order_refund_lines`. Records that "
        "fail validation are kept whole in `order_sync_errors` with the field and the reason."
    ),
)
def shop_orders(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, shopify_admin: ShopifyAdminResource
) -> dg.MaterializeResult:
    partition = day_tenant(context)
    with warehouse.session() as session:
        tenant = tenant_by_slug(session, partition.tenant_slug)
        shops = [(s.id, s.name, s.platform) for s in shops_for_tenant(session, tenant)]
    per_shop: dict[str, dict] = {}
    failures: dict[str, str] = {}
    without_source = [name for _id, name, platform in shops if platform not in ("shopify", "amazon")]
    for shop_id, name, platform in shops:
        if platform != "shopify":
            continue  # CSV catalogs have no orders; Amazon channels are amazon_orders' job
        try:
            with recording_clients(shopify_admin.client_for, warehouse.resolved_url, dagster_run_id=context.run_id) as client_for:
                result = sync_shop_orders(warehouse.resolved_url, shop_id, partition.day, client_for)
        except CalibrError as exc:
            failures[name] = str(exc)
            context.log.error(f"order sync failed for shop {name}: {exc}")
            continue
        per_shop[name] = {
            "orders": result.stats.orders,
            "lines": result.stats.lines,
            "refund_lines": result.stats.refund_lines,
            "unmapped_lines": result.stats.unmapped_lines,
            "rejected_records": result.stats.rejected,
            "pages": result.pages,
            "api_requests": result.api_requests,
            "throttled_answers": result.throttled_answers,
            "retries": result.retries,
        }
        if result.stats.rejected:
            context.log.warning(f"shop {name}: {result.stats.rejected} order record(s) rejected, see order_sync_errors")
    if failures:
        raise dg.Failure(
            description=f"order sync failed for {len(failures)} shop(s)",
            metadata={"failures": dg.MetadataValue.json(failures), "synced": dg.MetadataValue.json(per_shop)},
        )
    return dg.MaterializeResult(
        metadata={
            "orders": sum(s["orders"] for s in per_shop.values()),
            "lines": sum(s["lines"] for s in per_shop.values()),
            "rejected_records": sum(s["rejected_records"] for s in per_shop.values()),
            "per_shop": dg.MetadataValue.json(per_shop),
            # Shops without an order source (CSV catalogs) are named, never skipped silently.
            "shops_without_order_source": dg.MetadataValue.json(without_source),
        }
    )


@dg.asset(
    partitions_def=DAILY_TENANT_PARTITIONS,
    group_name="analytics",
    kinds={"dbt", "sql"},
    deps=[dg.AssetKey("trend_flags")],
    freshness_policy=TRENDS_FRESHNESS,
    description=(
        "Trend flags as of the partition's day, per SKU and competitor listing, in `competitor_trends`: "
        "the tenant-day's rows of the dbt model `trend_flags` (portable SQL: sustained moves by Theil–Sen "
        "slope + Mann–Kendall test over 14 days, level shifts by Welch t at the best split, undercutting "
        "streaks, competitors out of stock, and our margin erosion, 7 days vs the 7 before). Each flag "
        "states its window, size and significance; see docs/analytics.md."
    ),
)
def competitor_trends(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    from sqlalchemy import func, select

    from calibr_pipeline.services.trends import TrendModelMissing, copy_trend_flags
    from calibr_pipeline.warehouse.models import CompetitorTrendFlag

    partition = day_tenant(context)
    with warehouse.session() as session:
        tenant = tenant_by_slug(session, partition.tenant_slug)
        try:
            raised = copy_trend_flags(session, tenant.id, partition.day)
        except TrendModelMissing as exc:
            raise dg.Failure(description=str(exc)) from None
        by_flag = dict(
            session.execute(
                select(CompetitorTrendFlag.flag, func.count())
                .where(CompetitorTrendFlag.tenant_id == tenant.id, CompetitorTrendFlag.as_of_day == partition.day)
                .group_by(CompetitorTrendFlag.flag)
            ).all()
        )
    return dg.MaterializeResult(metadata={"flags": raised, "by_flag": dg.MetadataValue.json(by_flag)})


@dg.asset_check(
    asset=shop_orders,
    name="order_days_complete",
    description=(
        "Freshness across partitions: every tenant's orders are synced for each of the last 14 days up to "
        "yesterday. A missed day fails the check (naming it) until the 06:00 schedule's catch-up fills it."
    ),
)
def order_days_complete(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    import datetime as dt

    from calibr_pipeline.defs.analytics.schedules import CATCH_UP_DAYS, ORDERS_ASSET, missing_order_days
    from calibr_pipeline.defs.partitions import TENANT_PARTITIONS

    yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    tenants = context.instance.get_dynamic_partitions(TENANT_PARTITIONS.name)
    gaps = missing_order_days(
        context.instance.get_materialized_partitions(ORDERS_ASSET), tenants, yesterday - dt.timedelta(days=CATCH_UP_DAYS - 1), yesterday
    )
    return dg.AssetCheckResult(
        passed=not gaps,
        severity=dg.AssetCheckSeverity.WARN,
        description="all days synced" if not gaps else f"{sum(map(len, gaps.values()))} missed day(s)",
        metadata={"missing_days": dg.MetadataValue.json({t: [d.isoformat() for d in days] for t, days in gaps.items()})},
    )


@dg.asset(
    partitions_def=DAILY_TENANT_PARTITIONS,
    group_name="analytics",
    kinds={"amazon", "sql"},
    deps=[shop_catalog],
    description=(
        "Amazon sales channels (optional per project, read-only SP-API): orders updated on the day "
        "(getOrders + getOrderItems) into `orders`/`order_lines` with channel `amazon`, and "
        "getCompetitivePricing for the mapped ASINs into `amazon_competitive_prices`. Tenants without "
        "an Amazon channel materialize an empty partition."
    ),
)
def amazon_orders(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    from calibr_pipeline.services.amazon_sync import client_for_account, sync_amazon_day

    partition = day_tenant(context)
    with warehouse.session() as session:
        tenant = tenant_by_slug(session, partition.tenant_slug)
        shops = [(s.id, s.name) for s in shops_for_tenant(session, tenant) if s.platform == "amazon"]
    per_channel, failures = {}, {}
    for shop_id, name in shops:
        try:
            result = sync_amazon_day(warehouse.resolved_url, shop_id, partition.day, client_for_account)
        except CalibrError as exc:
            failures[name] = str(exc)
            continue
        per_channel[name] = {"orders": result.stats.orders, "lines": result.stats.lines, "rejected_records": result.stats.rejected,
                             "unmapped_lines": result.stats.unmapped_lines, "competitive_prices": result.competitive_prices,
                             "api_requests": result.api_requests, "throttled": result.throttled}
    if failures:
        raise dg.Failure(description=f"Amazon sync failed for {len(failures)} channel(s)", metadata={"failures": dg.MetadataValue.json(failures)})
    return dg.MaterializeResult(metadata={"channels": len(per_channel), "per_channel": dg.MetadataValue.json(per_channel)})

"""Competitor monitoring assets: observations -> normalized snapshots -> market position."""


from datetime import timedelta

import dagster as dg
from sqlalchemy import select

from calibr_pipeline.defs.catalog.assets import shop_catalog
from calibr_pipeline.defs.partitions import DAILY_TENANT_PARTITIONS, day_tenant
from calibr_pipeline.defs.resources import ScraperResource, WarehouseResource
from calibr_pipeline.domain.errors import CalibrError
from calibr_pipeline.services.competitor_monitoring import scrape_tenant_day
from calibr_pipeline.warehouse.competitor_store import replace_market_positions, replace_snapshots
from calibr_pipeline.warehouse.models import MarketPosition, Variant
from calibr_pipeline.warehouse.tenancy import tenant_by_slug


# The daily schedule runs at 05:00 UTC; by 07:00 each day's data must be there (and be
# newer than 04:00), or the UI shows the asset as failing its freshness policy.
DAILY_FRESHNESS = dg.FreshnessPolicy.cron(deadline_cron="0 7 * * *", lower_bound_delta=timedelta(hours=3), timezone="UTC")


class ScrapeConfig(dg.Config):
    """Leave ``listing_ids`` empty to scrape every active listing of the tenant."""

    listing_ids: list[int] | None = None


@dg.asset(
    partitions_def=DAILY_TENANT_PARTITIONS,
    deps=[shop_catalog],
    group_name="competitors",
    freshness_policy=DAILY_FRESHNESS,
    kinds={"python", "sql"},
    description=(
        "Every competitor fetch outcome of the tenant's day, successful or not, in "
        "`competitor_price_observations` (status, HTTP code, error class, extracted offer). "
        "Re-running the partition replaces its rows; a run with `listing_ids` replaces only those listings' rows."
    ),
)
def competitor_price_observations(
    context: dg.AssetExecutionContext, config: ScrapeConfig, warehouse: WarehouseResource, scraper: ScraperResource
) -> dg.MaterializeResult:
    partition = day_tenant(context)
    with warehouse.session() as session:
        tenant_id = tenant_by_slug(session, partition.tenant_slug).id
    try:
        summary = scrape_tenant_day(
            warehouse.resolved_url,
            scraper.build(),
            tenant_id=tenant_id,
            day=partition.day,
            run_id=context.run.run_id,
            listing_ids=config.listing_ids,
        )
    except CalibrError as exc:
        raise dg.Failure(str(exc)) from exc
    context.log.info(f"{summary.ok}/{summary.listings} listings priced; failures by class: {summary.by_error_class}")
    return dg.MaterializeResult(
        metadata={
            "listings": summary.listings,
            "ok": summary.ok,
            "failed": summary.failed,
            "error_rate": dg.MetadataValue.float(round(summary.error_rate, 6)),
            "retried_listings": summary.retried,
            "total_attempts": summary.total_attempts,
            "errors_by_class": dg.MetadataValue.json(summary.by_error_class),
            "extraction_sources": dg.MetadataValue.json(summary.by_source),
            "scope": "listings " + ",".join(map(str, config.listing_ids)) if config.listing_ids else "all listings",
        }
    )


@dg.asset(
    partitions_def=DAILY_TENANT_PARTITIONS,
    deps=[competitor_price_observations],
    group_name="competitors",
    freshness_policy=DAILY_FRESHNESS,
    kinds={"sql"},
    description=(
        "One row per listing and day in `normalized_price_snapshots`: the day's latest successful "
        "observation with ISO currency, sale vs regular price, availability and the amount in the "
        "project currency (reference FX rates)."
    ),
)
def normalized_price_snapshots(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    partition = day_tenant(context)
    with warehouse.session() as session:
        tenant_id = tenant_by_slug(session, partition.tenant_slug).id
        stats = replace_snapshots(session, tenant_id=tenant_id, snapshot_date=partition.day)
    if stats.missing_fx:
        context.log.warning(f"no reference FX rate for {stats.missing_fx}; those prices are kept but not compared")
    if stats.stale_fx:
        context.log.warning(f"reference FX rate too old for {stats.stale_fx}; those prices are kept but not compared")
    return dg.MaterializeResult(
        metadata={
            "snapshots": stats.snapshots,
            "listings_without_price": stats.listings_without_price,
            "missing_fx": dg.MetadataValue.json(stats.missing_fx),
            "stale_fx": dg.MetadataValue.json(stats.stale_fx),
            "quarantined": stats.quarantined,
        }
    )


@dg.asset(
    partitions_def=DAILY_TENANT_PARTITIONS,
    deps=[normalized_price_snapshots],
    group_name="competitors",
    freshness_policy=DAILY_FRESHNESS,
    kinds={"sql"},
    description=(
        "Per SKU and day in `market_positions`: lowest, highest and median competitor price in our "
        "currency, spread, price index, and our position (lowest / middle / highest / no_data)."
    ),
)
def market_position(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    partition = day_tenant(context)
    with warehouse.session() as session:
        tenant_id = tenant_by_slug(session, partition.tenant_slug).id
        stats = replace_market_positions(session, tenant_id=tenant_id, position_date=partition.day)
        preview = session.execute(
            select(Variant.sku, MarketPosition.our_price, MarketPosition.lowest_price, MarketPosition.median_price, MarketPosition.position)
            .join(Variant, Variant.id == MarketPosition.variant_id)
            .where(MarketPosition.tenant_id == tenant_id, MarketPosition.position_date == partition.day)
            .order_by(Variant.sku)
            .limit(10)
        ).all()
    table = "| SKU | ours | lowest | median | position |\n|---|---|---|---|---|\n" + "\n".join(
        f"| {sku} | {ours} | {low if low is not None else '-'} | {mid if mid is not None else '-'} | {pos} |"
        for sku, ours, low, mid, pos in preview
    )
    return dg.MaterializeResult(
        metadata={
            "skus": stats.skus,
            "by_position": dg.MetadataValue.json(stats.by_position),
            "preview": dg.MetadataValue.md(table),
        }
    )

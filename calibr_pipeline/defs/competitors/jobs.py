"""Jobs over the competitor monitoring assets (checks on selected assets run with them)."""

import dagster as dg

from calibr_pipeline.defs.partitions import DAILY_TENANT_PARTITIONS

MONITORING_ASSETS = dg.AssetSelection.assets(
    "shop_catalog", "competitor_price_observations", "normalized_price_snapshots", "market_position"
)

competitor_monitoring_job = dg.define_asset_job(
    "competitor_monitoring",
    selection=MONITORING_ASSETS,
    partitions_def=DAILY_TENANT_PARTITIONS,
    description="The daily pipeline for one tenant and day: catalog, scrape, normalize, market position, checks.",
)

competitor_listing_scrape_job = dg.define_asset_job(
    "competitor_listing_scrape",
    selection=dg.AssetSelection.assets("competitor_price_observations", "normalized_price_snapshots", "market_position"),
    partitions_def=DAILY_TENANT_PARTITIONS,
    description="Scrape selected listings (config `listing_ids`) and refresh the day's snapshots and positions.",
)

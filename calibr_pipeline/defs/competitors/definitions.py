import dagster as dg

from calibr_pipeline.defs.competitors.assets import competitor_price_observations, market_position, normalized_price_snapshots
from calibr_pipeline.defs.competitors.checks import (
    listing_consecutive_failures,
    observation_error_rate,
    snapshot_expectations,
    snapshot_quarantine_rate,
)
from calibr_pipeline.defs.competitors.jobs import competitor_listing_scrape_job, competitor_monitoring_job
from calibr_pipeline.defs.competitors.schedules import daily_competitor_monitoring
from calibr_pipeline.defs.competitors.sensors import competitor_added_sensor, tenant_partitions_sensor

defs = dg.Definitions(
    assets=[competitor_price_observations, normalized_price_snapshots, market_position],
    asset_checks=[observation_error_rate, listing_consecutive_failures, snapshot_expectations, snapshot_quarantine_rate],
    jobs=[competitor_monitoring_job, competitor_listing_scrape_job],
    schedules=[daily_competitor_monitoring],
    sensors=[tenant_partitions_sensor, competitor_added_sensor],
)

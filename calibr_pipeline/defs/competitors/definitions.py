import dagster as dg

from calibr_pipeline.defs.competitors import assets, checks
from calibr_pipeline.defs.competitors.jobs import competitor_listing_scrape_job, competitor_monitoring_job
from calibr_pipeline.defs.competitors.schedules import daily_competitor_monitoring
from calibr_pipeline.defs.competitors.sensors import competitor_added_sensor, tenant_partitions_sensor

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([assets]),
    asset_checks=dg.load_asset_checks_from_modules([checks]),
    jobs=[competitor_monitoring_job, competitor_listing_scrape_job],
    schedules=[daily_competitor_monitoring],
    sensors=[tenant_partitions_sensor, competitor_added_sensor],
)

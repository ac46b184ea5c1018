import dagster as dg

from calibr_pipeline.defs.analytics.assets import amazon_orders, competitor_trends, order_days_complete, shop_orders
from calibr_pipeline.defs.analytics.dbt import analytics_models
from calibr_pipeline.defs.analytics.digest import WEEKLY_TENANT_PARTITIONS, weekly_digest
from calibr_pipeline.defs.analytics.schedules import SCHEDULES
from calibr_pipeline.defs.partitions import DAILY_TENANT_PARTITIONS

order_sync_job = dg.define_asset_job(
    "order_sync",
    selection=[shop_orders, amazon_orders],
    partitions_def=DAILY_TENANT_PARTITIONS,
    description="Read the orders updated on the partition's day from the tenant's shops (Shopify, and Amazon where configured).",
)

analytics_models_job = dg.define_asset_job(
    "analytics_models",
    selection=dg.AssetSelection.assets(analytics_models),
    description="dbt build of the analytics models (price history, sales, overview, top SKUs, change frequency) and their tests.",
)

trends_job = dg.define_asset_job(
    "trend_detection",
    selection=[competitor_trends],
    partitions_def=DAILY_TENANT_PARTITIONS,
    description="Trend flags (sustained moves, level shifts, undercutting, out of stock, margin erosion) as of the day.",
)

weekly_digest_job = dg.define_asset_job(
    "weekly_digest_delivery",
    selection=[weekly_digest],
    partitions_def=WEEKLY_TENANT_PARTITIONS,
    description="Render and deliver the tenant's weekly insight digest.",
)

order_freshness_job = dg.define_asset_job(
    "order_freshness",
    selection=dg.AssetSelection.checks(order_days_complete),
    description="Check that every tenant's orders are synced for each of the last 14 days.",
)

defs = dg.Definitions(
    assets=[shop_orders, amazon_orders, analytics_models, competitor_trends, weekly_digest],
    asset_checks=[order_days_complete],
    jobs=[order_sync_job, order_freshness_job, analytics_models_job, trends_job, weekly_digest_job],
    schedules=SCHEDULES,
)

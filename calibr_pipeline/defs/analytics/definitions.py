import dagster as dg

from calibr_pipeline.defs.analytics.assets import shop_orders
from calibr_pipeline.defs.analytics.dbt import analytics_models
from calibr_pipeline.defs.partitions import DAILY_TENANT_PARTITIONS

order_sync_job = dg.define_asset_job(
    "order_sync",
    selection=[shop_orders],
    partitions_def=DAILY_TENANT_PARTITIONS,
    description="Read the orders updated on the partition's day from the tenant's shops.",
)

analytics_models_job = dg.define_asset_job(
    "analytics_models",
    selection=dg.AssetSelection.assets(analytics_models),
    description="dbt build of the analytics models (price history, sales, overview, top SKUs, change frequency) and their tests.",
)

defs = dg.Definitions(assets=[shop_orders, analytics_models], jobs=[order_sync_job, analytics_models_job])

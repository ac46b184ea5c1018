import dagster as dg

from calibr_pipeline.defs.analytics.assets import shop_orders
from calibr_pipeline.defs.partitions import DAILY_TENANT_PARTITIONS

order_sync_job = dg.define_asset_job(
    "order_sync",
    selection=[shop_orders],
    partitions_def=DAILY_TENANT_PARTITIONS,
    description="Read the orders updated on the partition's day from the tenant's shops.",
)

defs = dg.Definitions(assets=[shop_orders], jobs=[order_sync_job])

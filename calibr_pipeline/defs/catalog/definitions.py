import dagster as dg

from calibr_pipeline.defs.catalog.assets import shop_catalog
from calibr_pipeline.defs.partitions import DAILY_TENANT_PARTITIONS

catalog_sync_job = dg.define_asset_job(
    "catalog_sync",
    selection=[shop_catalog],
    partitions_def=DAILY_TENANT_PARTITIONS,
    description="Read the tenant's shop catalogs (Shopify Admin API or CSV) into products and variants.",
)

defs = dg.Definitions(assets=[shop_catalog], jobs=[catalog_sync_job])

import dagster as dg

from calibr_pipeline.defs.catalog.assets import shop_catalog

defs = dg.Definitions(assets=[shop_catalog])

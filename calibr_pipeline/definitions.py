"""The one Definitions object: every area's definitions plus the resources they share."""

import dagster as dg

from calibr_pipeline.defs.catalog.definitions import defs as catalog_defs
from calibr_pipeline.defs.competitors.definitions import defs as competitor_defs
from calibr_pipeline.defs.resources import AlertsResource, ScraperResource, ShopifyAdminResource, WarehouseResource


def build_resources() -> dict:
    return {
        "warehouse": WarehouseResource(),
        "scraper": ScraperResource(),
        "shopify_admin": ShopifyAdminResource(),
        "alerts": AlertsResource(),
    }


defs = dg.Definitions.merge(catalog_defs, competitor_defs, dg.Definitions(resources=build_resources()))

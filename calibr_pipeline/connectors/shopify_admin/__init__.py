"""Shopify Admin GraphQL connector: cost-aware client, documents, catalog reader, price writes."""

from calibr_pipeline.connectors.shopify_admin.bucket import CostBucket, ThrottleStatus
from calibr_pipeline.connectors.shopify_admin.catalog import fetch_catalog
from calibr_pipeline.connectors.shopify_admin.client import (
    AdminAnswer,
    ClientStats,
    ShopifyAdminClient,
    admin_graphql_url,
)
from calibr_pipeline.connectors.shopify_admin.cost import (
    SINGLE_QUERY_MAX_COST,
    actual_query_cost,
    requested_query_cost,
)
from calibr_pipeline.connectors.shopify_admin.documents import (
    document_names,
    load_document,
)
from calibr_pipeline.connectors.shopify_admin.errors import ShopifyAdminError
from calibr_pipeline.connectors.shopify_admin.writes import (
    ROLLED_BACK,
    BulkUpdateResult,
    VariantPriceUpdate,
    VariantSnapshot,
    VariantWriteResult,
    bulk_update_prices,
    read_variant_prices,
    read_variants,
)

__all__ = [
    "ROLLED_BACK",
    "SINGLE_QUERY_MAX_COST",
    "AdminAnswer",
    "BulkUpdateResult",
    "ClientStats",
    "CostBucket",
    "ShopifyAdminClient",
    "ShopifyAdminError",
    "ThrottleStatus",
    "VariantPriceUpdate",
    "VariantSnapshot",
    "VariantWriteResult",
    "actual_query_cost",
    "admin_graphql_url",
    "bulk_update_prices",
    "document_names",
    "fetch_catalog",
    "load_document",
    "read_variant_prices",
    "read_variants",
    "requested_query_cost",
]

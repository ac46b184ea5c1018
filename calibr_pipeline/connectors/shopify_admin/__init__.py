"""Shopify Admin GraphQL connector: cost-aware client, documents, catalog reader."""

from calibr_pipeline.connectors.shopify_admin.bucket import CostBucket, ThrottleStatus
from calibr_pipeline.connectors.shopify_admin.catalog import fetch_catalog
from calibr_pipeline.connectors.shopify_admin.client import (
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

__all__ = [
    "SINGLE_QUERY_MAX_COST",
    "ClientStats",
    "CostBucket",
    "ShopifyAdminClient",
    "ShopifyAdminError",
    "ThrottleStatus",
    "actual_query_cost",
    "admin_graphql_url",
    "document_names",
    "fetch_catalog",
    "load_document",
    "requested_query_cost",
]

"""The Admin API schema the sandbox serves.

The sandbox checks the client, so it does not go through the client's loader in
``connectors/``: it reads Shopify's published schema from the neutral
:mod:`calibr_pipeline.vendor_schema` (data, not logic), which hands both sides the same
read-only object so that a process holds one copy of it.
"""

from __future__ import annotations

from graphql import GraphQLSchema

from calibr_pipeline.vendor_schema import ADMIN_API_VERSION, shared_admin_schema

SANDBOX_API_VERSION = ADMIN_API_VERSION


def sandbox_admin_schema() -> GraphQLSchema:
    """Shopify's published Admin schema (ISC licence, ``calibr_pipeline/vendor/shopify``)."""
    return shared_admin_schema()

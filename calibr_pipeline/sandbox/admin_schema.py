"""The Admin API schema the sandbox serves, loaded by the sandbox itself.

The sandbox checks the client, so it reads the vendored introspection file on its own
instead of going through the client's loader in ``connectors/``: a bug in one cannot
hide in the other.
"""

from __future__ import annotations

import functools
import gzip
import json
from importlib import resources

from graphql import GraphQLSchema, build_client_schema

SANDBOX_API_VERSION = "2025-01"
_SCHEMA_FILE = f"admin_schema_{SANDBOX_API_VERSION}.json.gz"


@functools.cache
def sandbox_admin_schema() -> GraphQLSchema:
    """Shopify's published Admin schema (ISC licence, ``calibr_pipeline/vendor/shopify``)."""
    ref = resources.files("calibr_pipeline").joinpath("vendor", "shopify", _SCHEMA_FILE)
    with ref.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as fh:
        payload = json.load(fh)
    return build_client_schema(payload.get("data", payload))

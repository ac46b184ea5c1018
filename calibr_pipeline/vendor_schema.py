"""Shopify's published Admin API schema (ISC licence, ``calibr_pipeline/vendor/shopify``), built once.

Neutral ground between the client (``connectors/``) and the sandbox that checks it: both
read the same *published data*, and neither imports the other's code. One shared,
read-only ``GraphQLSchema`` per process matters for speed too: a second copy of the
~20,000-object graph doubles the work of every full garbage collection (measured: +7 ms
per price write in ``bench_rate_floor``).
"""

from __future__ import annotations

import functools
import gzip
import json
from importlib import resources
from typing import Any

from graphql import GraphQLSchema, build_client_schema

ADMIN_API_VERSION = "2025-01"
_SCHEMA_FILE = f"admin_schema_{ADMIN_API_VERSION}.json.gz"


@functools.cache
def admin_introspection() -> dict[str, Any]:
    """The ``__schema`` introspection payload (the ``data`` member of the vendored file)."""
    ref = resources.files("calibr_pipeline").joinpath("vendor", "shopify", _SCHEMA_FILE)
    with ref.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as fh:
        payload = json.load(fh)
    return payload.get("data", payload)


@functools.cache
def shared_admin_schema() -> GraphQLSchema:
    """The process-wide read-only schema (building it takes ~1 s, hence the cache)."""
    return build_client_schema(admin_introspection())

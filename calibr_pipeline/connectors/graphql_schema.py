"""The vendored Shopify Admin API schema (introspection JSON, ISC licence).

The client validates its documents against it in tests, prices them with the static
cost calculator, and the sandbox builds its executable server from the same file, so
the three can never disagree about what a field is.
"""

from __future__ import annotations

import functools
import gzip
import json
from importlib import resources
from typing import Any

from graphql import GraphQLError, GraphQLSchema, build_client_schema, parse, validate

ADMIN_API_VERSION = "2025-01"
_SCHEMA_FILE = f"admin_schema_{ADMIN_API_VERSION}.json.gz"


@functools.cache
def load_admin_introspection() -> dict[str, Any]:
    """The ``__schema`` introspection payload (the ``data`` member of the vendored file)."""
    ref = resources.files("calibr_pipeline").joinpath("vendor", "shopify", _SCHEMA_FILE)
    with ref.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as fh:
        payload = json.load(fh)
    return payload.get("data", payload)


def build_admin_schema() -> GraphQLSchema:
    """A fresh, private schema object.

    The sandbox attaches resolvers to fields; doing that on a private copy keeps the
    shared cached schema free of server behaviour.
    """
    return build_client_schema(load_admin_introspection())


@functools.cache
def load_admin_schema() -> GraphQLSchema:
    """The shared read-only schema (building it takes ~1 s, hence the cache)."""
    return build_admin_schema()


def format_error(error: GraphQLError) -> str:
    if error.locations:
        where = ", ".join(f"{loc.line}:{loc.column}" for loc in error.locations)
        return f"{error.message} (at {where})"
    return error.message


def validate_document(source: str, schema: GraphQLSchema | None = None) -> list[str]:
    """Syntax and validation errors of a GraphQL document; empty when it is valid."""
    try:
        document = parse(source)
    except GraphQLError as exc:
        return [format_error(exc)]
    return [format_error(err) for err in validate(schema or load_admin_schema(), document)]

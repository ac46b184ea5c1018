"""The vendored Shopify Admin API schema (introspection JSON, ISC licence).

The client validates its documents against it in tests and prices them with its static
cost estimate; the sandbox serves the same published file (through the neutral
:mod:`calibr_pipeline.vendor_schema`, not through this module), so they can never
disagree about what a field is.
"""

from __future__ import annotations

from typing import Any

from graphql import GraphQLError, GraphQLSchema, build_client_schema, parse, validate

from calibr_pipeline.vendor_schema import ADMIN_API_VERSION, admin_introspection, shared_admin_schema

__all__ = ["ADMIN_API_VERSION", "build_admin_schema", "format_error", "load_admin_introspection", "load_admin_schema", "validate_document"]


def load_admin_introspection() -> dict[str, Any]:
    """The ``__schema`` introspection payload (the ``data`` member of the vendored file)."""
    return admin_introspection()


def build_admin_schema() -> GraphQLSchema:
    """A fresh, private schema object (for callers that must not share the cached one)."""
    return build_client_schema(load_admin_introspection())


def load_admin_schema() -> GraphQLSchema:
    """The shared read-only schema (:func:`calibr_pipeline.vendor_schema.shared_admin_schema`)."""
    return shared_admin_schema()


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

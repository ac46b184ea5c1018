"""Every GraphQL document shipped in the package validates against the vendored schema."""

from __future__ import annotations

from pathlib import Path

import pytest

import calibr_pipeline
from calibr_pipeline.connectors.graphql_schema import (
    load_admin_schema,
    validate_document,
)
from calibr_pipeline.connectors.shopify_admin import document_names, load_document

PACKAGE = Path(calibr_pipeline.__file__).parent
# Globbed rather than listed, so documents added later are checked without touching this test.
DOCUMENTS = sorted(PACKAGE.rglob("*.graphql"))


def test_the_known_documents_are_found():
    names = {p.stem for p in DOCUMENTS}
    assert {"CatalogProducts", "ProductVariantsPage", "ShopCurrency"} <= names
    assert set(document_names()) <= names


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_document_validates_against_the_admin_schema(path):
    assert validate_document(path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("name", document_names())
def test_document_defines_the_operation_it_is_named_after(name):
    # The client sends operationName=<file name>; a mismatch would fail at run time only.
    assert f"query {name}" in load_document(name) or f"mutation {name}" in load_document(name)


def test_an_invalid_field_is_caught():
    errors = validate_document("query Broken { products(first: 1) { nodes { id priceInCents } } }")
    assert len(errors) == 1
    assert "priceInCents" in errors[0] and "Product" in errors[0]


def test_syntax_and_argument_errors_are_caught():
    assert validate_document("query { shop { name ")  # syntax
    assert validate_document("query { products(first: \"ten\") { nodes { id } } }")  # wrong argument type
    assert validate_document("query($n: Int!) { shop { name } }")  # unused variable


def test_schema_is_the_2025_01_admin_api():
    schema = load_admin_schema()
    assert schema is load_admin_schema()  # cached
    assert schema.query_type.name == "QueryRoot"
    assert "productVariantsBulkUpdate" in schema.mutation_type.fields

"""GraphQL documents shipped as ``documents/<Name>.graphql`` files.

Keeping them as files (not Python strings) lets the schema test glob and validate every
document, and lets people paste them into GraphiQL unchanged.
"""

from __future__ import annotations

import functools
from importlib import resources

_PACKAGE = "calibr_pipeline.connectors.shopify_admin"


class UnknownDocumentError(KeyError):
    pass


def document_names() -> list[str]:
    folder = resources.files(_PACKAGE).joinpath("documents")
    return sorted(p.name[: -len(".graphql")] for p in folder.iterdir() if p.name.endswith(".graphql"))


@functools.cache
def load_document(name: str) -> str:
    """Source of ``documents/<name>.graphql``; the operation inside is named ``name``."""
    ref = resources.files(_PACKAGE).joinpath("documents", f"{name}.graphql")
    if not ref.is_file():
        raise UnknownDocumentError(f"no GraphQL document named {name!r}; known: {', '.join(document_names())}")
    return ref.read_text(encoding="utf-8")

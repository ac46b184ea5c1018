"""The client's view of Shopify's calculated query cost.

Two parts:

* :func:`requested_query_cost`, a **static, conservative estimate** computed from the
  document alone. It is what the client must assume before the shop has priced a
  document: it never undercharges the documents we send (every page is priced at
  ``first`` nodes), so waiting for it never gets us THROTTLED, but it overcharges
  nested pages by an order of magnitude (a 25 × 10 catalog page: 827 here, 57 on
  Shopify, whose connections grow with the square root of the page size).
* :class:`CostModel`, which **learns what the shop charges**: the
  ``requestedQueryCost`` every answer carries is the ground truth, remembered per
  document and page sizes. An unseen page size of a document already priced is
  extrapolated from the answers with the static estimate's shape, scaled by the
  dearest charged/estimated ratio seen for a page no larger, which over-estimates
  for a shop whose costs grow slower than linearly and never under-estimates one
  that is linear.

The sandbox (``calibr_pipeline.sandbox.admin_cost``) computes what it charges on its
own; nothing here is shared with it.

Static rules, after https://shopify.dev/docs/api/usage/rate-limits (cost calculation):

* scalars and enums cost 0;
* an object field costs 1 plus its selection;
* a connection (a type named ``...Connection``) costs 2 plus ``first``/``last`` times
  the cost of one node (1 for the node object plus its selection). ``edges``,
  ``cursor`` and ``pageInfo`` are covered by the 2; when both ``edges { node }`` and
  ``nodes`` are selected the dearer of the two counts, since they return the same
  objects;
* a plain list of objects is priced as one object (Shopify estimates list sizes we
  cannot know statically; the lists we select are short, e.g. ``selectedOptions``);
* every top-level mutation field costs 10, whatever its payload selects;
* fragments on a type other than the parent type are alternatives: the dearest one
  counts (worst case).

The *actual* cost walks the same document over the data really returned: connections
cost 2 plus the nodes actually present, null objects cost nothing.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    VariableNode,
    get_named_type,
    get_operation_ast,
    is_leaf_type,
    parse,
    value_from_ast_untyped,
)

SINGLE_QUERY_MAX_COST = 1000
OBJECT_COST = 1
CONNECTION_COST = 2
MUTATION_COST = 10

_MISSING = object()


class CostError(ValueError):
    """The document has no operation that could be priced."""


def requested_query_cost(
    document: DocumentNode | str,
    variables: Mapping[str, Any] | None = None,
    operation_name: str | None = None,
    *,
    schema: GraphQLSchema | None = None,
) -> int:
    """Worst-case cost Shopify charges up front for this operation."""
    walker, operation = _prepare(document, variables, operation_name, schema)
    return walker.operation_cost(operation, _MISSING)


def actual_query_cost(
    document: DocumentNode | str,
    data: Mapping[str, Any] | None,
    variables: Mapping[str, Any] | None = None,
    operation_name: str | None = None,
    *,
    schema: GraphQLSchema | None = None,
) -> int:
    """Cost of what ``data`` really holds (what Shopify keeps after refunding the rest)."""
    walker, operation = _prepare(document, variables, operation_name, schema)
    if data is None:
        return 0
    return walker.operation_cost(operation, data)


def _prepare(document, variables, operation_name, schema):
    if isinstance(document, str):
        document = parse(document)
    if schema is None:
        from calibr_pipeline.connectors.graphql_schema import load_admin_schema

        schema = load_admin_schema()
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        raise CostError(f"no operation named {operation_name!r} in document")
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    merged = _variable_defaults(operation)
    merged.update(variables or {})
    return _Walker(schema, fragments, merged), operation


def _variable_defaults(operation: OperationDefinitionNode) -> dict[str, Any]:
    defaults: dict[str, Any] = {}
    for definition in operation.variable_definitions or ():
        if definition.default_value is not None:
            defaults[definition.variable.name.value] = value_from_ast_untyped(definition.default_value)
    return defaults


def _is_connection(type_: Any) -> bool:
    return (
        isinstance(type_, GraphQLObjectType)
        and type_.name.endswith("Connection")
        and "pageInfo" in type_.fields
        and ("edges" in type_.fields or "nodes" in type_.fields)
    )


def _is_list(type_: Any) -> bool:
    if isinstance(type_, GraphQLNonNull):
        type_ = type_.of_type
    return isinstance(type_, GraphQLList)


class _Walker:
    """Prices a selection set; ``data is _MISSING`` means "static (requested) cost"."""

    def __init__(self, schema: GraphQLSchema, fragments: dict[str, FragmentDefinitionNode], variables: dict):
        self.schema = schema
        self.fragments = fragments
        self.variables = variables

    def operation_cost(self, operation: OperationDefinitionNode, data: Any) -> int:
        if operation.operation == OperationType.MUTATION:
            fields = [f for f in self._collect(operation.selection_set) if not f.name.value.startswith("__")]
            return MUTATION_COST * len(fields)
        root = self.schema.get_root_type(operation.operation)
        if root is None:
            raise CostError(f"schema has no {operation.operation.value} root")
        return self.selection_cost(operation.selection_set, root, data)

    # -- selections ---------------------------------------------------------------------

    def _collect(self, selection_set: SelectionSetNode | None) -> list[FieldNode]:
        """Fields of a selection set with every fragment flattened in (type conditions ignored)."""
        out: list[FieldNode] = []
        for selection in selection_set.selections if selection_set else ():
            if isinstance(selection, FieldNode):
                out.append(selection)
            elif isinstance(selection, InlineFragmentNode):
                out.extend(self._collect(selection.selection_set))
            elif isinstance(selection, FragmentSpreadNode):
                fragment = self.fragments.get(selection.name.value)
                if fragment is not None:
                    out.extend(self._collect(fragment.selection_set))
        return out

    def selection_cost(self, selection_set: SelectionSetNode | None, parent: Any, data: Any) -> int:
        if selection_set is None:
            return 0
        total = 0
        alternatives: dict[str, int] = {}
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                total += self.field_cost(selection, parent, data)
                continue
            if isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition.name.value if selection.type_condition else None
                sub_selection = selection.selection_set
            elif isinstance(selection, FragmentSpreadNode):
                fragment = self.fragments.get(selection.name.value)
                if fragment is None:
                    continue
                condition = fragment.type_condition.name.value
                sub_selection = fragment.selection_set
            else:  # pragma: no cover - graphql-core has no other selection kinds
                continue
            sub_type = self.schema.get_type(condition) if condition else parent
            cost = self.selection_cost(sub_selection, sub_type or parent, data)
            if condition is None or condition == getattr(parent, "name", None):
                total += cost
            else:
                alternatives[condition] = alternatives.get(condition, 0) + cost
        return total + max(alternatives.values(), default=0)

    def field_cost(self, field: FieldNode, parent: Any, data: Any) -> int:
        name = field.name.value
        fields = getattr(parent, "fields", None)
        if name.startswith("__") or not fields or name not in fields:
            return 0
        field_type = fields[name].type
        named = get_named_type(field_type)
        if is_leaf_type(named):
            return 0
        if data is _MISSING:
            value = _MISSING
        else:
            key = field.alias.value if field.alias else name
            if not isinstance(data, Mapping) or data.get(key) is None:
                return 0
            value = data[key]
        if _is_connection(named):
            return self.connection_cost(field, named, value)
        if _is_list(field_type) and value is not _MISSING:
            items = [item for item in value if item is not None]
            return max((OBJECT_COST + self.selection_cost(field.selection_set, named, item) for item in items), default=0)
        return OBJECT_COST + self.selection_cost(field.selection_set, named, value)

    # -- connections --------------------------------------------------------------------

    def connection_cost(self, field: FieldNode, connection: GraphQLObjectType, value: Any) -> int:
        node_type = _node_type(connection)
        via_edges: list[FieldNode] = []
        via_nodes: list[FieldNode] = []
        for sub in self._collect(field.selection_set):
            if sub.name.value == "nodes":
                via_nodes.append(sub)
            elif sub.name.value == "edges":
                via_edges.extend(n for n in self._collect(sub.selection_set) if n.name.value == "node")

        if value is _MISSING:
            per_node = max(
                [OBJECT_COST + self.selection_cost(n.selection_set, node_type, _MISSING) for n in via_edges + via_nodes]
                or [0]
            )
            return CONNECTION_COST + self._page_size(field) * per_node

        per_index: dict[int, int] = {}
        for sub in via_nodes:
            key = sub.alias.value if sub.alias else "nodes"
            for i, node in enumerate(value.get(key) or ()):
                if node is not None:
                    cost = OBJECT_COST + self.selection_cost(sub.selection_set, node_type, node)
                    per_index[i] = max(per_index.get(i, 0), cost)
        if via_edges:
            for edges_field in (f for f in self._collect(field.selection_set) if f.name.value == "edges"):
                key = edges_field.alias.value if edges_field.alias else "edges"
                for i, edge in enumerate(value.get(key) or ()):
                    for node_field in via_edges:
                        node_key = node_field.alias.value if node_field.alias else "node"
                        node = (edge or {}).get(node_key)
                        if node is not None:
                            cost = OBJECT_COST + self.selection_cost(node_field.selection_set, node_type, node)
                            per_index[i] = max(per_index.get(i, 0), cost)
        return CONNECTION_COST + sum(per_index.values())

    def _page_size(self, field: FieldNode) -> int:
        for argument in field.arguments or ():
            if argument.name.value not in ("first", "last"):
                continue
            node = argument.value
            if isinstance(node, IntValueNode):
                return int(node.value)
            if isinstance(node, VariableNode):
                size = self.variables.get(node.name.value)
                if isinstance(size, int) and not isinstance(size, bool):
                    return size
        # Shopify rejects a connection without first/last; pricing it at 0 lets the
        # executor report that error instead of a misleading cost error.
        return 0


def _node_type(connection: GraphQLObjectType) -> Any:
    if "nodes" in connection.fields:
        return get_named_type(connection.fields["nodes"].type)
    edge = get_named_type(connection.fields["edges"].type)
    return get_named_type(edge.fields["node"].type)


# --------------------------------------------------------------------------- learning


@dataclass(frozen=True)
class CostSample:
    """One price the shop announced: the static estimate and Shopify's ``requestedQueryCost``."""

    static: int
    requested: int


def page_signature(variables: Mapping[str, Any] | None) -> tuple:
    """What in the variables can change a document's cost: integers (page sizes) and list lengths.

    Ids, cursors and search strings do not change what Shopify charges, so a document
    learned on one page applies to every other page of the same size.
    """
    signature: list[tuple[str, Any]] = []
    for name, value in sorted((variables or {}).items()):
        if isinstance(value, bool):
            continue
        if isinstance(value, int):
            signature.append((name, value))
        elif isinstance(value, (list, tuple)):
            signature.append((name, ("len", len(value))))
    return tuple(signature)


class CostModel:
    """What the shop charges per document and page size, learned from its answers.

    Thread-safe; one per client (the shop's prices are the same for every caller,
    but a client is the natural owner of what it learned).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._exact: dict[tuple, int] = {}
        self._samples: dict[tuple, list[CostSample]] = {}

    @staticmethod
    def _document_key(source: str, operation_name: str | None) -> tuple:
        return (operation_name or "", source)

    def learned(self, source: str, variables: Mapping[str, Any] | None, operation_name: str | None = None) -> int | None:
        """Shopify's own price for exactly this document and page sizes, if it told us."""
        key = (self._document_key(source, operation_name), page_signature(variables))
        with self._lock:
            return self._exact.get(key)

    def estimate(self, source: str, variables: Mapping[str, Any] | None, operation_name: str | None, static: int) -> int:
        """The cost to reserve before sending: learned, else extrapolated, else ``static``."""
        document = self._document_key(source, operation_name)
        key = (document, page_signature(variables))
        with self._lock:
            exact = self._exact.get(key)
            if exact is not None:
                return exact
            ratios = [s.requested / s.static for s in self._samples.get(document, ()) if 0 < s.static <= static]
        if not ratios:
            return static
        return min(static, max(1, math.ceil(static * max(ratios))))

    def observe(self, source: str, variables: Mapping[str, Any] | None, operation_name: str | None, static: int, requested: object) -> None:
        """Remember Shopify's ``requestedQueryCost`` for this document and page sizes."""
        if isinstance(requested, bool) or not isinstance(requested, (int, float)) or requested < 0:
            return
        charged = int(math.ceil(requested))
        document = self._document_key(source, operation_name)
        key = (document, page_signature(variables))
        with self._lock:
            self._exact[key] = charged
            samples = self._samples.setdefault(document, [])
            sample = CostSample(static=static, requested=charged)
            if sample not in samples:
                samples.append(sample)
                del samples[:-32]  # a handful of page sizes per document is all we ever use

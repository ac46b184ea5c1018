"""What the sandbox shop charges for a GraphQL document: Shopify's calculated query cost.

Written for the sandbox alone (it imports nothing from ``connectors/``): the sandbox is
the yardstick of the client, so it must not share the client's arithmetic.

Sources: Shopify's documentation (https://shopify.dev/docs/api/usage/rate-limits,
"Cost calculation": scalars and enums cost 0, objects 1, connections are sized by their
``first``/``last`` argument, interfaces and unions cost their dearest selection,
mutations 10; requested cost is charged up front and the difference to the actual cost
is refunded) and live answers of the Admin API (2025-01) with ``extensions.cost``,
vendored in ``calibr_pipeline_tests/fixtures/shopify_cost/`` and replayed by
``test_sandbox_cost_fixtures.py``. Where the two disagree, the live answers win. What
those answers show, beyond the documentation:

* **Connections grow with the square root of the page size.** A connection costs
  ``2 + ceil(sqrt(first)) × node`` where ``node`` is 1 plus the node's selection:
  ``segments(first: 3) { nodes { name } }`` costs 4 (2 + 2 × 1), ``products(first: 10)``
  of scalar nodes 6, ``locations(first: 1)`` 3, ``companyLocations(first: 5)`` 5, and
  ``inventoryLevels(first: 3)`` of nodes holding three objects 10 (2 + 2 × 4). The
  fixtures only pin ``first`` ≤ 10 (1 → 1, 3 → 2, 5 → 3, 10 → 4); ``floor(log2 n) + 1``
  fits them as well, and the square root is the dearer of the two beyond, i.e. the
  conservative reading for a sandbox that must not flatter the client.
* **Money costs nothing.** ``MoneyBag`` and ``MoneyV2`` objects (``totalPriceSet {
  shopMoney { amount } }``) are free, like scalars; other plain objects
  (``LocationAddress``, ``InventoryItem``, lists such as ``quantities``) cost 1.
* **Mutations** cost 10 plus their payload's selection, where the objects directly in
  the payload come with the 10 (``draftOrderCreate { draftOrder { … } }`` costs 10,
  ``draftOrderComplete { draftOrder { order { … } } }`` 11,
  ``companyContactAssignRole`` with three objects under its assignment 13) and
  ``userErrors`` are free.
* A list of objects that is not a connection is priced as one object: the server
  cannot know its length before running the query.

The actual cost walks the same document over the data returned: a connection costs
``2 + ceil(sqrt(returned)) × dearest returned node``, null objects cost nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
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
OBJECT_POINTS = 1
CONNECTION_POINTS = 2
MUTATION_POINTS = 10
# Object types Shopify charges nothing for (seen in live answers).
FREE_TYPES = frozenset({"MoneyV2", "MoneyBag"})

_STATIC = object()  # "no data": price the request, not an answer


class UnpriceableDocument(ValueError):
    """No operation in the document can be priced (unknown operation name, no root)."""


def page_factor(size: int) -> int:
    """How many nodes' worth of cost a page of ``size`` is charged."""
    if size <= 0:
        return 0
    return math.isqrt(size - 1) + 1  # ceil(sqrt(size)) without floating point


def requested_cost(
    schema: GraphQLSchema,
    document: DocumentNode | str,
    variables: Mapping[str, Any] | None = None,
    operation_name: str | None = None,
) -> int:
    """The cost charged up front (``requestedQueryCost``)."""
    pricer, operation = _pricer(schema, document, variables, operation_name)
    return pricer.operation(operation, _STATIC)


def actual_cost(
    schema: GraphQLSchema,
    document: DocumentNode | str,
    data: Mapping[str, Any] | None,
    variables: Mapping[str, Any] | None = None,
    operation_name: str | None = None,
) -> int:
    """The cost of what ``data`` holds (``actualQueryCost``), never more than requested."""
    if data is None:
        return 0
    pricer, operation = _pricer(schema, document, variables, operation_name)
    return min(pricer.operation(operation, data), pricer.operation(operation, _STATIC))


def _pricer(schema, document, variables, operation_name):
    if isinstance(document, str):
        document = parse(document)
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        raise UnpriceableDocument(f"no operation named {operation_name!r} in the document")
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    values: dict[str, Any] = {}
    for definition in operation.variable_definitions or ():
        if definition.default_value is not None:
            values[definition.variable.name.value] = value_from_ast_untyped(definition.default_value)
    values.update(variables or {})
    return _Pricer(schema, fragments, values), operation


def _unwrap(type_: Any) -> Any:
    return type_.of_type if isinstance(type_, GraphQLNonNull) else type_


def _is_connection(type_: Any) -> bool:
    return (
        isinstance(type_, GraphQLObjectType)
        and type_.name.endswith("Connection")
        and "pageInfo" in type_.fields
        and ("edges" in type_.fields or "nodes" in type_.fields)
    )


class _Pricer:
    def __init__(self, schema: GraphQLSchema, fragments: dict[str, FragmentDefinitionNode], variables: dict[str, Any]):
        self.schema = schema
        self.fragments = fragments
        self.variables = variables

    def operation(self, operation: OperationDefinitionNode, data: Any) -> int:
        root = self.schema.get_root_type(operation.operation)
        if root is None:
            raise UnpriceableDocument(f"the schema has no {operation.operation.value} root")
        if operation.operation != OperationType.MUTATION:
            return self.selection(operation.selection_set, root, data)
        total = 0
        for field in self._fields(operation.selection_set):
            definition = root.fields.get(field.name.value)
            if definition is None:
                continue
            payload_type = get_named_type(definition.type)
            value = self._value(field, data)
            if value is None and data is not _STATIC:
                total += MUTATION_POINTS  # a mutation is paid for even when it answers null
                continue
            total += MUTATION_POINTS + self.selection(field.selection_set, payload_type, value, payload_level=True)
        return total

    # -- selections ---------------------------------------------------------------------

    def _fields(self, selection_set: SelectionSetNode | None) -> list[FieldNode]:
        out: list[FieldNode] = []
        for selection in selection_set.selections if selection_set else ():
            if isinstance(selection, FieldNode):
                if not selection.name.value.startswith("__"):
                    out.append(selection)
            elif isinstance(selection, InlineFragmentNode):
                out.extend(self._fields(selection.selection_set))
            elif isinstance(selection, FragmentSpreadNode) and selection.name.value in self.fragments:
                out.extend(self._fields(self.fragments[selection.name.value].selection_set))
        return out

    def selection(self, selection_set: SelectionSetNode | None, parent: Any, data: Any, *, payload_level: bool = False) -> int:
        """Fields of the parent's type add up; fragments on other types are alternatives."""
        if selection_set is None:
            return 0
        total = 0
        alternatives: dict[str, int] = {}
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                total += self.field(selection, parent, data, payload_level=payload_level)
                continue
            if isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition.name.value if selection.type_condition else None
                sub = selection.selection_set
            elif isinstance(selection, FragmentSpreadNode) and selection.name.value in self.fragments:
                fragment = self.fragments[selection.name.value]
                condition, sub = fragment.type_condition.name.value, fragment.selection_set
            else:
                continue
            sub_type = (self.schema.get_type(condition) if condition else None) or parent
            cost = self.selection(sub, sub_type, data, payload_level=payload_level)
            if condition is None or condition == getattr(parent, "name", None):
                total += cost
            else:
                alternatives[condition] = alternatives.get(condition, 0) + cost
        return total + max(alternatives.values(), default=0)

    def _value(self, field: FieldNode, data: Any) -> Any:
        if data is _STATIC:
            return _STATIC
        if not isinstance(data, Mapping):
            return None
        return data.get(field.alias.value if field.alias else field.name.value)

    def field(self, field: FieldNode, parent: Any, data: Any, *, payload_level: bool = False) -> int:
        definitions = getattr(parent, "fields", None)
        name = field.name.value
        if name.startswith("__") or not definitions or name not in definitions:
            return 0
        field_type = definitions[name].type
        named = get_named_type(field_type)
        if is_leaf_type(named):
            return 0
        value = self._value(field, data)
        if value is None:
            return 0
        if _is_connection(named):
            return self.connection(field, named, value)
        own = 0 if (payload_level or named.name in FREE_TYPES or named.name.endswith("UserError")) else OBJECT_POINTS
        if isinstance(_unwrap(field_type), GraphQLList) and value is not _STATIC:
            items = [item for item in value if item is not None] if isinstance(value, list) else []
            if not items:
                return 0
            return own + max(self.selection(field.selection_set, named, item) for item in items)
        return own + self.selection(field.selection_set, named, value)

    # -- connections --------------------------------------------------------------------

    def connection(self, field: FieldNode, connection: GraphQLObjectType, value: Any) -> int:
        node_type = _node_type(connection)
        node_fields: list[tuple[str, str, FieldNode]] = []  # (container key, node key, node field)
        for sub in self._fields(field.selection_set):
            key = sub.alias.value if sub.alias else sub.name.value
            if sub.name.value == "nodes":
                node_fields.append((key, "", sub))
            elif sub.name.value == "edges":
                for node in self._fields(sub.selection_set):
                    if node.name.value == "node":
                        node_fields.append((key, node.alias.value if node.alias else "node", node))

        if value is _STATIC:
            per_node = max((OBJECT_POINTS + self.selection(n.selection_set, node_type, _STATIC) for _, _, n in node_fields), default=0)
            return CONNECTION_POINTS + page_factor(self._page_size(field)) * per_node

        returned = 0
        dearest = 0
        for container_key, node_key, node_field in node_fields:
            entries = value.get(container_key) if isinstance(value, Mapping) else None
            nodes = [(entry or {}).get(node_key) if node_key else entry for entry in entries or ()]
            nodes = [n for n in nodes if n is not None]
            returned = max(returned, len(nodes))
            for node in nodes:
                dearest = max(dearest, OBJECT_POINTS + self.selection(node_field.selection_set, node_type, node))
        return CONNECTION_POINTS + page_factor(returned) * dearest

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
        return 0  # Shopify refuses a connection without first/last; execution says so


def _node_type(connection: GraphQLObjectType) -> Any:
    if "nodes" in connection.fields:
        return get_named_type(connection.fields["nodes"].type)
    edge = get_named_type(connection.fields["edges"].type)
    return get_named_type(edge.fields["node"].type)

"""Sales orders as the analytics read them: parsing and validating one order record.

Pure: no HTTP, no database. A source connector hands each order as the platform sent
it (Shopify Admin GraphQL ``Order`` nodes here) to :func:`parse_shopify_order`, which
returns an :class:`OrderRecord` or raises :class:`MalformedOrder` naming the field and
the reason. The caller stores a malformed order as an error row, whole and unchanged:
nothing is dropped silently and nothing half-valid reaches the sales tables.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any


class MalformedOrder(ValueError):
    """An order that cannot be trusted; ``field`` says where (``lineItems[2].quantity``)."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class OrderLineRecord:
    external_id: str
    variant_external_id: str | None
    sku: str | None
    quantity: int
    original_unit_price: Decimal
    discounted_unit_price: Decimal


@dataclass(frozen=True)
class RefundLineRecord:
    refund_external_id: str
    line_external_id: str
    refunded_at: dt.datetime
    quantity: int
    amount: Decimal  # subtotal refunded for this line, in the order currency


@dataclass(frozen=True)
class OrderRecord:
    external_id: str
    name: str
    created_at: dt.datetime
    updated_at: dt.datetime
    cancelled_at: dt.datetime | None
    currency: str
    test: bool
    source_name: str | None
    lines: tuple[OrderLineRecord, ...]
    refunds: tuple[RefundLineRecord, ...]

    @property
    def order_day(self) -> dt.date:
        return self.created_at.astimezone(dt.UTC).date()


def parse_datetime(value: Any, field: str) -> dt.datetime:
    if not isinstance(value, str):
        raise MalformedOrder(field, f"expected an ISO 8601 date-time, got {value!r}")
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise MalformedOrder(field, f"not an ISO 8601 date-time: {value!r}") from exc
    if parsed.tzinfo is None:
        raise MalformedOrder(field, f"date-time without a time zone: {value!r}")
    return parsed.astimezone(dt.UTC)


def _money(bag: Any, field: str, currency: str) -> Decimal:
    money = (bag or {}).get("shopMoney") if isinstance(bag, Mapping) else None
    if not isinstance(money, Mapping):
        raise MalformedOrder(field, "missing shopMoney")
    if money.get("currencyCode") != currency:
        raise MalformedOrder(f"{field}.currencyCode", f"{money.get('currencyCode')!r} is not the shop currency {currency}")
    raw = money.get("amount")
    if not isinstance(raw, (str, int)) or isinstance(raw, bool):
        raise MalformedOrder(f"{field}.amount", f"expected a decimal string, got {raw!r}")
    try:
        amount = Decimal(str(raw).strip())
    except InvalidOperation as exc:
        raise MalformedOrder(f"{field}.amount", f"not a decimal amount: {raw!r}") from exc
    if not amount.is_finite() or amount < 0:
        raise MalformedOrder(f"{field}.amount", f"must be a finite amount >= 0, got {raw!r}")
    return amount


def _text(node: Mapping[str, Any], key: str, field: str, *, required: bool = True) -> str | None:
    value = node.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise MalformedOrder(field, f"expected a non-empty string, got {value!r}")
    return value


def parse_shopify_order(
    node: Any, shop_currency: str, *, extra_lines: Sequence[Mapping[str, Any]] = ()
) -> OrderRecord:
    """Validate one Admin GraphQL ``Order`` node (the OrdersUpdated document's shape).

    ``extra_lines`` are line items read with OrderLineItemsPage beyond the first page.
    """
    if not isinstance(node, Mapping):
        raise MalformedOrder("order", f"expected an object, got {type(node).__name__}")
    external_id = _text(node, "id", "id")
    currency = _text(node, "currencyCode", "currencyCode")
    if currency != shop_currency:
        raise MalformedOrder("currencyCode", f"{currency!r} is not the shop currency {shop_currency}")
    created = parse_datetime(node.get("createdAt"), "createdAt")
    updated = parse_datetime(node.get("updatedAt"), "updatedAt")
    if updated < created:
        raise MalformedOrder("updatedAt", "is before createdAt")
    cancelled = node.get("cancelledAt")
    connection = node.get("lineItems")
    if not isinstance(connection, Mapping) or not isinstance(connection.get("nodes"), list):
        raise MalformedOrder("lineItems", "missing lineItems.nodes")
    raw_lines = [*connection["nodes"], *extra_lines]
    if not raw_lines:
        raise MalformedOrder("lineItems", "an order without line items")
    lines = []
    for index, line in enumerate(raw_lines):
        at = f"lineItems[{index}]"
        if not isinstance(line, Mapping):
            raise MalformedOrder(at, "expected an object")
        variant = line.get("variant")
        variant_id = variant.get("id") if isinstance(variant, Mapping) else None
        sku = line.get("sku") or None
        if variant_id is None and sku is None:
            raise MalformedOrder(f"{at}.variant", "neither a variant nor a SKU: the sale cannot be attributed")
        quantity = line.get("quantity")
        if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity <= 0:
            raise MalformedOrder(f"{at}.quantity", f"must be a positive integer, got {quantity!r}")
        original = _money(line.get("originalUnitPriceSet"), f"{at}.originalUnitPriceSet", currency)
        discounted = _money(line.get("discountedUnitPriceSet"), f"{at}.discountedUnitPriceSet", currency)
        if discounted > original:
            raise MalformedOrder(f"{at}.discountedUnitPriceSet", f"discounted {discounted} is above the original {original}")
        lines.append(
            OrderLineRecord(
                external_id=_text(line, "id", f"{at}.id"),
                variant_external_id=variant_id,
                sku=sku,
                quantity=quantity,
                original_unit_price=original,
                discounted_unit_price=discounted,
            )
        )
    line_ids = {line.external_id for line in lines}
    if len(line_ids) != len(lines):
        raise MalformedOrder("lineItems", "the same line item id appears twice")
    refunds = []
    for r_index, refund in enumerate(node.get("refunds") or []):
        at = f"refunds[{r_index}]"
        if not isinstance(refund, Mapping):
            raise MalformedOrder(at, "expected an object")
        refund_id = _text(refund, "id", f"{at}.id")
        refunded_at = parse_datetime(refund.get("createdAt"), f"{at}.createdAt")
        for l_index, item in enumerate(((refund.get("refundLineItems") or {}).get("nodes")) or []):
            item_at = f"{at}.refundLineItems[{l_index}]"
            line_id = ((item or {}).get("lineItem") or {}).get("id")
            if line_id not in line_ids:
                raise MalformedOrder(f"{item_at}.lineItem", f"refers to {line_id!r}, not a line of this order")
            quantity = item.get("quantity")
            if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity < 0:
                raise MalformedOrder(f"{item_at}.quantity", f"must be an integer >= 0, got {quantity!r}")
            refunds.append(
                RefundLineRecord(
                    refund_external_id=refund_id,
                    line_external_id=line_id,
                    refunded_at=refunded_at,
                    quantity=quantity,
                    amount=_money(item.get("subtotalSet"), f"{item_at}.subtotalSet", currency),
                )
            )
    return OrderRecord(
        external_id=external_id,
        name=_text(node, "name", "name"),
        created_at=created,
        updated_at=updated,
        cancelled_at=parse_datetime(cancelled, "cancelledAt") if cancelled is not None else None,
        currency=currency,
        test=bool(node.get("test")),
        source_name=node.get("sourceName"),
        lines=tuple(lines),
        refunds=tuple(refunds),
    )


def raw_json(node: Any) -> str:
    """The record as received, for the error row (sorted keys: byte-identical re-runs)."""
    try:
        return json.dumps(node, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return repr(node)

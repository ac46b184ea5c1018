"""Write synced orders (and rejected order records) for one shop and one partition day.

An order is written whole: its row, its lines and its refund lines are replaced together
(delete, then insert, in the caller's transaction), so a re-read order never mixes two
states. The error rows of the (tenant, day, shop) partition are replaced as a set.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from calibr_pipeline.domain.orders import OrderRecord, raw_json
from calibr_pipeline.warehouse.models import (
    OrderSyncError,
    SalesOrder,
    SalesOrderLine,
    SalesRefundLine,
    Shop,
    Variant,
)

_CHUNK = 400  # stays under SQLite's bound-parameter limit


class Rejected(Protocol):
    external_id: str | None
    field: str
    reason: str
    node: object


@dataclass(frozen=True)
class OrderWriteStats:
    orders: int
    lines: int
    refund_lines: int
    unmapped_lines: int  # lines whose variant is not (or no longer) in our catalog
    rejected: int


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def write_orders(
    session: Session,
    shop: Shop,
    tenant_id: int,
    partition_day: dt.date,
    orders: Sequence[OrderRecord],
    rejected: Sequence[Rejected],
    *,
    channel: str = "shopify",
) -> OrderWriteStats:
    by_external = dict(session.execute(select(Variant.external_id, Variant.id).where(Variant.shop_id == shop.id)).all())
    by_sku = dict(session.execute(select(Variant.sku, Variant.id).where(Variant.project_id == shop.project_id)).all())
    ids = sorted({o.external_id for o in orders})
    for chunk in _chunks(ids):
        for model in (SalesRefundLine, SalesOrderLine):
            session.execute(delete(model).where(model.shop_id == shop.id, model.order_external_id.in_(chunk)))
        session.execute(delete(SalesOrder).where(SalesOrder.shop_id == shop.id, SalesOrder.external_id.in_(chunk)))
    order_rows, line_rows, refund_rows = [], [], []
    unmapped = 0
    common = {"shop_id": shop.id, "tenant_id": tenant_id, "project_id": shop.project_id}
    for order in sorted(orders, key=lambda o: o.external_id):
        day = order.order_day
        order_rows.append(
            {
                **common,
                "external_id": order.external_id,
                "channel": channel,
                "name": order.name,
                "order_day": day,
                "created_at": order.created_at,
                "updated_at": order.updated_at,
                "cancelled_at": order.cancelled_at,
                "currency": order.currency,
                "test": order.test,
                "source_name": order.source_name,
                "synced_day": partition_day,
            }
        )
        for line in order.lines:
            variant_id = by_external.get(line.variant_external_id) or by_sku.get(line.sku)
            unmapped += variant_id is None
            line_rows.append(
                {
                    **common,
                    "external_id": line.external_id,
                    "order_external_id": order.external_id,
                    "channel": channel,
                    "order_day": day,
                    "variant_id": variant_id,
                    "variant_external_id": line.variant_external_id,
                    "sku": line.sku,
                    "quantity": line.quantity,
                    "original_unit_price": line.original_unit_price,
                    "discounted_unit_price": line.discounted_unit_price,
                    "currency": order.currency,
                }
            )
        for refund in order.refunds:
            refund_rows.append(
                {
                    **common,
                    "refund_external_id": refund.refund_external_id,
                    "line_external_id": refund.line_external_id,
                    "order_external_id": order.external_id,
                    "refunded_at": refund.refunded_at,
                    "refund_day": refund.refunded_at.date(),
                    "quantity": refund.quantity,
                    "amount": refund.amount,
                    "currency": order.currency,
                }
            )
    for model, rows in ((SalesOrder, order_rows), (SalesOrderLine, line_rows), (SalesRefundLine, refund_rows)):
        if rows:
            session.execute(insert(model), rows)
    session.execute(
        delete(OrderSyncError).where(
            OrderSyncError.tenant_id == tenant_id, OrderSyncError.partition_day == partition_day, OrderSyncError.shop_id == shop.id
        )
    )
    error_rows = [
        {
            "tenant_id": tenant_id,
            "partition_day": partition_day,
            "shop_id": shop.id,
            "position": position,
            "channel": channel,
            "external_id": bad.external_id,
            "field": bad.field[:200],
            "reason": bad.reason,
            "payload": raw_json(bad.node),
        }
        for position, bad in enumerate(rejected)
    ]
    if error_rows:
        session.execute(insert(OrderSyncError), error_rows)
    return OrderWriteStats(
        orders=len(order_rows), lines=len(line_rows), refund_lines=len(refund_rows), unmapped_lines=unmapped, rejected=len(error_rows)
    )

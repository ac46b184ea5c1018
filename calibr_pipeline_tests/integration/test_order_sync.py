"""The shop_orders asset (day × tenant) against the sandbox, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, text

from calibr_pipeline.definitions import build_definitions
from calibr_pipeline.defs.resources import WarehouseResource
from calibr_pipeline.demo import run_job_for_day, seed_tenant_shops
from calibr_pipeline.sandbox.runner import SandboxWorld, TenantSpec
from calibr_pipeline.warehouse.engine import session_scope
from calibr_pipeline.warehouse.models import OrderSyncError, SalesOrderLine

pytestmark = pytest.mark.integration

TABLES = ("orders", "order_lines", "order_refund_lines", "order_sync_errors")


def dump(url: str) -> dict[str, list[tuple]]:
    with session_scope(url) as session:
        return {t: [tuple(r) for r in session.execute(text(f"SELECT * FROM {t} ORDER BY 1, 2, 3"))] for t in TABLES}


def test_orders_land_per_day_malformed_records_become_error_rows_and_reruns_change_nothing(warehouse_url, instance):
    with SandboxWorld([TenantSpec("order-one", "USD", 20, n_competitors=2)], seed=4, date="2026-03-12") as world:
        defs = build_definitions(warehouse=WarehouseResource(url=warehouse_url))
        seed_tenant_shops(warehouse_url, world)
        assert run_job_for_day(defs, instance, "catalog_sync", ["order-one"], dt.date(2026, 3, 1)) == {"order-one": True}
        stream = world.tenant("order-one").admin_shop.orders
        bad = stream.orders_for_day(dt.date(2026, 3, 3))[1]
        stream.malform(bad.number, "negative_quantity")
        days = [dt.date(2026, 3, d) for d in range(1, 7)]
        for day in days:
            assert run_job_for_day(defs, instance, "order_sync", ["order-one"], day) == {"order-one": True}
        first = dump(warehouse_url)

        # Every order updated in the window is either stored or an error row, never dropped.
        expected = {
            o.gid for o in stream.orders_between(dt.date(2026, 2, 20), days[-1])
            if days[0] <= stream.updated_at(o).date() <= days[-1]
        }
        stored = {row[1] for row in first["orders"]}
        assert stored | {bad.gid} == expected and bad.gid not in stored
        errors = first["order_sync_errors"]
        assert len(errors) == 1
        with session_scope(warehouse_url) as session:
            error = session.scalars(select(OrderSyncError)).one()
            assert (error.partition_day, error.external_id, error.field) == (dt.date(2026, 3, 3), bad.gid, "lineItems[0].quantity")
            assert bad.gid in error.payload
            units = sum(session.scalars(select(SalesOrderLine.quantity)))
            assert session.scalar(select(SalesOrderLine.variant_id).where(SalesOrderLine.variant_id.is_(None))) is None
        truth = sum(l.quantity for o in stream.orders_between(dt.date(2026, 2, 20), days[-1])
                    if o.gid in stored for l in o.lines)
        assert units == truth
        assert first["order_refund_lines"], "the window includes refunds"

        # Re-running partitions in another order rewrites the very same rows.
        for day in (days[5], days[2], days[0]):
            assert run_job_for_day(defs, instance, "order_sync", ["order-one"], day) == {"order-one": True}
        assert dump(warehouse_url) == first

"""Cron stability: 60 days of sandbox history for both demo tenants, on SQLite and PostgreSQL.

Backfill every day but one, build the models, and then:

* the order-freshness check names the missed day, the 06:00 schedule's catch-up asks for
  exactly that day, and after it ran the check passes;
* re-running a random selection of partitions (and the models) leaves every table
  byte-identical.

The catalogs are reduced (8 variants per tenant), and the first 57 days go through the
fast backfill (the asset's service, materializations recorded on the instance) so the
test stays well under a minute per backend; the last days, the catch-up and the
re-runs are real Dagster runs.
"""

from __future__ import annotations

import datetime as dt
import random

import dagster as dg
import pytest
from sqlalchemy import text

from calibr_pipeline.definitions import build_definitions
from calibr_pipeline.defs.analytics.backfill import backfill_orders
from calibr_pipeline.defs.analytics.schedules import order_sync_requests
from calibr_pipeline.defs.partitions import DayTenant
from calibr_pipeline.defs.resources import WarehouseResource
from calibr_pipeline.demo import DEMO_TENANTS, run_job_for_day, seed_tenant_shops
from calibr_pipeline.sandbox.runner import SandboxWorld, TenantSpec
from calibr_pipeline.warehouse.engine import session_scope

pytestmark = pytest.mark.integration

TABLES = {
    "orders": "shop_id, external_id",
    "order_lines": "shop_id, external_id",
    "order_refund_lines": "shop_id, refund_external_id, line_external_id",
    "order_sync_errors": "tenant_id, partition_day, shop_id, position",
    "sales_daily": "project_id, sku, channel, day",
    "price_history": "variant_id, day",
    "analytics_overview": "project_id, day",
    "top_skus": "project_id, week_start, metric, rank",
}


def dump(url: str) -> dict[str, list[tuple]]:
    with session_scope(url) as session:
        return {t: [tuple(r) for r in session.execute(text(f"SELECT * FROM {t} ORDER BY {order}"))] for t, order in TABLES.items()}


def test_sixty_day_backfill_is_idempotent_and_a_missed_day_is_caught_and_filled(warehouse_url, instance):
    today = dt.datetime.now(dt.UTC).date()
    yesterday = today - dt.timedelta(days=1)
    days = [yesterday - dt.timedelta(days=i) for i in range(59, -1, -1)]
    missed = yesterday - dt.timedelta(days=3)
    specs = [TenantSpec(spec.name, spec.currency, 8, n_competitors=1) for spec in DEMO_TENANTS]
    tenants = [spec.name for spec in specs]
    with SandboxWorld(specs, seed=17, date=today) as world:
        defs = build_definitions(warehouse=WarehouseResource(url=warehouse_url))
        seed_tenant_shops(warehouse_url, world)
        assert run_job_for_day(defs, instance, "catalog_sync", tenants, today) == dict.fromkeys(tenants, True)
        # The bulk of the history through the fast backfill (same service, materializations
        # recorded), the last days as the daily schedule would run them.
        backfill_orders(instance, warehouse_url, tenants, [d for d in days[:-3] if d != missed])
        for day in days[-3:]:
            if day != missed:
                assert run_job_for_day(defs, instance, "order_sync", tenants, day) == dict.fromkeys(tenants, True)

        # The missed day is caught by the freshness check...
        check = defs.resolve_job_def("order_freshness").execute_in_process(instance=instance, raise_on_error=False)
        (evaluation,) = check.get_asset_check_evaluations()
        assert not evaluation.passed
        assert evaluation.metadata["missing_days"].value == {t: [missed.isoformat()] for t in tenants}
        # ...and filled by the next scheduled run, which asks for exactly that day.
        requests = order_sync_requests(instance, today)
        assert sorted(str(r.partition_key) for r in requests) == sorted(str(DayTenant(missed, t).key) for t in tenants)
        for request in requests:
            assert defs.resolve_job_def("order_sync").execute_in_process(instance=instance, partition_key=request.partition_key).success
        check = defs.resolve_job_def("order_freshness").execute_in_process(instance=instance)
        assert all(e.passed for e in check.get_asset_check_evaluations())
        assert order_sync_requests(instance, today) == []

        assert defs.resolve_job_def("analytics_models").execute_in_process(instance=instance).success
        before = dump(warehouse_url)
        assert len({row[5] for row in before["sales_daily"]}) >= 55, "sales on (nearly) every day of the 60"
        assert before["order_refund_lines"]

        # Re-run a random selection of partitions, then the models: nothing changes.
        rng = random.Random(17)
        for day, tenant in rng.sample([(d, t) for d in days for t in tenants], 4):
            assert run_job_for_day(defs, instance, "order_sync", [tenant], day) == {tenant: True}
        assert defs.resolve_job_def("analytics_models").execute_in_process(instance=instance).success
        assert dump(warehouse_url) == before

"""Analytics backfill benchmark: N days × SKUs × tenants of sandbox orders, then the dbt models.

    python -m calibr_pipeline_tests.benchmarks.bench_analytics [--skus 10000] [--days 90] [--tenants 2]
        [--demand-scale 0.05] [--warehouse-url URL] [--latency-queries 50]

``make bench-analytics`` runs it on SQLite and, when reachable, on the local PostgreSQL.

Measures (and prints):

* order backfill wall time (every (day, tenant) partition through the shop_orders service
  against the sandbox Admin API, materializations recorded on a Dagster instance);
* ``dbt build`` of the analytics models (wall time, through the Dagster asset);
* peak memory: this process (sandbox + connector + warehouse writes) and dbt's subprocess;
* overview query latency for one project-day (``api.analytics.overview_for``), p50/p95.

Orders come at a realistic rate: ``--demand-scale`` scales the sandbox's per-SKU demand
(0.05 with 10,000 SKUs ≈ 300 orders a day per tenant). Catalogs are seeded straight into
the warehouse (the catalog read is benchmarked elsewhere), and demand uses each SKU's
catalog price as the market reference (no competitor storefronts are started).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import statistics
import sys
import tempfile
import time

import dagster as dg
from sqlalchemy import text

from calibr_pipeline.api.analytics import overview_for
from calibr_pipeline.definitions import build_definitions
from calibr_pipeline.defs.analytics.backfill import backfill_orders
from calibr_pipeline.defs.resources import ShopifyAdminResource, WarehouseResource
from calibr_pipeline.demo import seed_tenant_shops
from calibr_pipeline.sandbox.runner import SandboxWorld, TenantSpec
from calibr_pipeline.sandbox.shopify_admin import BucketPreset
from calibr_pipeline.warehouse.catalog_store import upsert_catalog
from calibr_pipeline.warehouse.engine import session_scope, upgrade_to_head
from calibr_pipeline.warehouse.models import Shop

BENCH_BUCKET = BucketPreset("bench", 1e9, 1e9)  # the cost bucket is benchmarked elsewhere


def _peak_mib(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


def run(args: argparse.Namespace) -> dict:
    url = args.warehouse_url or f"sqlite:///{tempfile.mkdtemp(prefix='calibr-bench-analytics-')}/warehouse.db"
    upgrade_to_head(url)
    today = dt.datetime.now(dt.UTC).date()
    days = [today - dt.timedelta(days=i) for i in range(args.days, 0, -1)]
    currencies = ("USD", "EUR", "GBP", "CAD")
    specs = [TenantSpec(f"bench-an-{i}", currencies[i % len(currencies)], args.skus, preset=BENCH_BUCKET, n_competitors=1) for i in range(args.tenants)]
    with SandboxWorld(specs, seed=args.seed, date=today) as world, dg.instance_for_test() as instance:
        seed_tenant_shops(url, world)
        with session_scope(url) as session:
            for spec in specs:
                shop = session.query(Shop).join(Shop.project).filter_by(slug=spec.name).one()
                upsert_catalog(session, shop, world.tenant(spec.name).catalog)
        for spec in specs:
            stream = world.tenant(spec.name).admin_shop.orders
            stream.set_market_price(None)
            stream.demand_scale = args.demand_scale
        started = time.perf_counter()
        orders = backfill_orders(instance, url, [s.name for s in specs], days, ShopifyAdminResource(timeout_s=120))
        backfill_s = time.perf_counter() - started
        defs = build_definitions(warehouse=WarehouseResource(url=url))
        started = time.perf_counter()
        built = defs.resolve_job_def("analytics_models").execute_in_process(instance=instance, raise_on_error=False).success
        dbt_s = time.perf_counter() - started
        if not built:
            print("dbt build FAILED; see the run output above", file=sys.stderr)
            return {"dbt_build_ok": False}
        with session_scope(url) as session:
            tenant_id = session.execute(text("SELECT id FROM tenants WHERE slug = :s"), {"s": specs[0].name}).scalar()
            counts = {t: session.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar() for t in ("orders", "order_lines", "price_history", "sales_daily")}
        latencies = []
        day = days[len(days) // 2]
        for _ in range(args.latency_queries):
            t0 = time.perf_counter()
            body = overview_for(url, tenant_id, specs[0].name, day, day)
            latencies.append((time.perf_counter() - t0) * 1000)
        if body is None or len(body["days"]) != 1:
            raise SystemExit(f"overview for {specs[0].name} on {day} returned {body and body['days']}")
    backend = "postgresql" if url.startswith("postgres") else "sqlite"
    result = {
        "backend": backend,
        "tenants": args.tenants, "skus_per_tenant": args.skus, "days": args.days,
        "orders": sum(orders.values()), **counts,
        "backfill_seconds": round(backfill_s, 1),
        "dbt_build_seconds": round(dbt_s, 1), "dbt_build_ok": built,
        "peak_rss_mib_process": round(_peak_mib(resource.RUSAGE_SELF)),
        "peak_rss_mib_dbt": round(_peak_mib(resource.RUSAGE_CHILDREN)),
        "overview_ms_p50": round(statistics.median(latencies), 2),
        "overview_ms_p95": round(sorted(latencies)[int(0.95 * (len(latencies) - 1))], 2),
        "load_average": os.getloadavg()[0],
    }
    for key, value in result.items():
        print(f"{key:>24}: {value}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skus", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--tenants", type=int, default=2)
    parser.add_argument("--demand-scale", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--latency-queries", type=int, default=50)
    parser.add_argument("--warehouse-url", default="")
    result = run(parser.parse_args(argv))
    return 0 if result["dbt_build_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

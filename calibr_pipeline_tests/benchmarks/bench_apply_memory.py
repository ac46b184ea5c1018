"""Benchmark: peak memory and SQL statements of a 100,000-target apply (goal: RSS < 500 MB).

    python -m calibr_pipeline_tests.benchmarks.bench_apply_memory [--products 25000] [--variants-per-product 4]

The apply streams its targets a page of products at a time (never every target, never
their explain JSON) and issues a constant number of SQL statements per product write. This
benchmark checks both on a big run: a sandbox shop of ``products × variants`` variants on
a bucket large enough that the rate limit is not what is measured, a rule changing every
price (``compute_targets``), then ``apply_run`` in a *child process* so that its peak RSS
(``ru_maxrss``) is the apply's own and not the sandbox's. The child counts the SQL
statements it sends (SQLAlchemy ``before_cursor_execute``) and reports per product.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from sqlalchemy import func, select

from calibr_pipeline.sandbox.runner import SandboxWorld
from calibr_pipeline.sandbox.shopify_admin import BucketPreset
from calibr_pipeline.services.rule_runs import compute_targets, create_run, save_rule
from calibr_pipeline.warehouse.catalog_store import upsert_catalog
from calibr_pipeline.warehouse.engine import session_scope
from calibr_pipeline.warehouse.models import RuleTarget, Shop
from calibr_pipeline_tests.benchmarks._common import add_common_arguments, bench_date, verdict, warehouse
from calibr_pipeline_tests.benchmarks.bench_rate_floor import RULE, TENANT, build_catalog, seed_shop

GOAL_RSS_MB = 500
# A bucket no apply can exhaust: this benchmark measures memory and SQL, not the rate limit.
UNLIMITED = BucketPreset("bench-unlimited", 10_000_000.0, 10_000_000.0)

CHILD = r"""
import json, resource, sys, time
from sqlalchemy import event
from calibr_pipeline.defs.resources import ShopifyAdminResource
from calibr_pipeline.services.price_apply import apply_run
from calibr_pipeline.warehouse.engine import get_engine
url, run_id = sys.argv[1], sys.argv[2]
statements = [0]
event.listen(get_engine(url), "before_cursor_execute", lambda *a, **k: statements.__setitem__(0, statements[0] + 1))
t0 = time.perf_counter()
summary = apply_run(url, run_id, ShopifyAdminResource().client_for, actor="bench")
print(json.dumps({"state": summary.state, "applied": summary.applied, "write_requests": summary.write_requests,
                  "read_requests": summary.read_requests, "seconds": time.perf_counter() - t0, "statements": statements[0],
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench_apply_memory", description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--products", type=int, default=25_000, help="products (default 25,000 → 100,000 targets)")
    parser.add_argument("--variants-per-product", type=int, default=4)
    return parser


def run(argv: list[str] | None = None) -> bool:
    args = build_parser().parse_args(argv)
    n = args.products * args.variants_per_product
    print(f"=== bench_apply_memory: apply of {n:,} targets ({args.products:,} products × {args.variants_per_product}); goal peak RSS < {GOAL_RSS_MB} MB ===")
    with warehouse(args.warehouse_url, "applymem", keep=args.keep_warehouse) as url, SandboxWorld([], seed=args.seed, date=bench_date(args.date)) as world:
        t0 = time.perf_counter()
        shop = world.admin.add_shop(TENANT, build_catalog(args.products, args.variants_per_product), preset=UNLIMITED, currency="USD", seed=args.seed)
        shop_id = seed_shop(url, world, shop)
        with session_scope(url) as session:
            upsert_catalog(session, session.get(Shop, shop_id), shop.catalog())
        with session_scope(url) as session:
            save_rule(session, project_slug=TENANT, definition=RULE, actor="bench")
            run_id = create_run(session, project_slug=TENANT, rule_name=RULE["name"], actor="bench").id
        with session_scope(url) as session:
            stats = compute_targets(session, run_id)
        print(f"setup: {stats.to_write:,} targets to write in {time.perf_counter() - t0:.1f} s")
        child = subprocess.run([sys.executable, "-c", CHILD, url, run_id], capture_output=True, text=True)
        if child.returncode != 0:
            print(child.stderr[-3000:])
            print("bench_apply_memory: FAIL (the apply process failed)")
            return False
        result = json.loads(child.stdout.strip().splitlines()[-1])
        with session_scope(url) as session:
            applied = session.scalar(select(func.count()).select_from(RuleTarget).where(RuleTarget.run_id == run_id, RuleTarget.state == "APPLIED"))
        twice = sum(1 for c in shop.write_counts().values() if c > 1)
    per_product = result["statements"] / max(1, result["write_requests"])
    print()
    print("results")
    print(f"  run state:              {result['state']}; {applied:,} targets APPLIED; variants written twice: {twice}")
    print(f"  wall time (apply):      {result['seconds']:.1f} s ({result['write_requests']:,} writes, {result['read_requests']:,} write-time reads)")
    print(f"  SQL statements:         {result['statements']:,} ({per_product:.1f} per product write, {result['statements'] / max(1, applied):.2f} per target)")
    print(f"  peak RSS (apply proc):  {result['peak_rss_mb']:.0f} MB")
    ok = result["peak_rss_mb"] < GOAL_RSS_MB and result["state"] == "APPLIED" and applied == n and twice == 0
    print(f"goal: peak RSS < {GOAL_RSS_MB} MB and every target applied once: {verdict(ok)}")
    return ok


def main(argv: list[str] | None = None) -> int:
    return 0 if run(argv) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

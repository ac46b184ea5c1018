"""Benchmark: a 10,000-variant catalog sync on the Standard bucket, read wall time vs its read floor (goal ≤ 1.2×).

    python -m calibr_pipeline_tests.benchmarks.bench_catalog_sync [--products 2500] [--variants-per-product 4]

A sandbox shop with ``--products`` products of ``--variants-per-product`` variants on the
Standard preset (2,000-point bucket, 100 points/s). The catalog is read by the code the
``shop_catalog`` asset runs (``read_shop_catalog`` with the client
``ShopifyAdminResource`` builds), then upserted into the warehouse (``upsert_catalog``);
both phases are timed, the goal is on the read.

**Read floor**: the fastest the shop can hand over the catalog. The ideal plan is
``ShopCurrency`` plus one ``CatalogProducts`` page per 250 products (the largest page
Shopify allows); the floor is the larger of

* its rate-limit floor, ``(Σ requested cost − bucket size) / restore rate`` (0 when the
  whole plan fits in a full bucket, as 10,000 variants do on the live cost model), and
* its service floor: the ideal plan's requests sent back to back over a raw HTTP session
  (no client, no pacing) from a full bucket, timed on the same sandbox.

Before the learned cost model the client priced each 25-product page at the static 827
points and read 10,000 variants in 101 requests (43.8 s); ``--static-pages`` pins the
page to 25 products to show the request count of that plan for comparison.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import requests
from sqlalchemy import func, select

from calibr_pipeline.connectors.shopify_admin import load_document
from calibr_pipeline.connectors.shopify_admin.catalog import DEFAULT_VARIANTS_PAGE_SIZE
from calibr_pipeline.defs.resources import ShopifyAdminResource
from calibr_pipeline.sandbox.runner import SandboxWorld
from calibr_pipeline.sandbox.shopify_admin import PRESETS, AdminShop
from calibr_pipeline.services.catalog_sync import read_shop_catalog
from calibr_pipeline.warehouse.catalog_store import upsert_catalog
from calibr_pipeline.warehouse.engine import session_scope
from calibr_pipeline.warehouse.models import Shop, Variant
from calibr_pipeline_tests.benchmarks._common import add_common_arguments, bench_date, verdict, warehouse
from calibr_pipeline_tests.benchmarks.bench_rate_floor import build_catalog, seed_shop, wait_for_full_bucket

GOAL_RATIO = 1.2
MAX_PAGE = 250


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench_catalog_sync", description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--products", type=int, default=2500, help="products in the shop (default 2500)")
    parser.add_argument("--variants-per-product", type=int, default=4, help="variants per product (default 4)")
    parser.add_argument("--preset", default="standard", choices=sorted(PRESETS), help="sandbox bucket preset (default standard)")
    parser.add_argument("--goal", type=float, default=GOAL_RATIO, help="read wall / read floor the sync must stay under")
    parser.add_argument("--static-pages", action="store_true", help="pin pages to 25 products (the pre-learning plan), for comparison")
    parser.add_argument("--floor-samples", type=int, default=3, help="timed runs of the ideal plan; the fastest is the floor")
    return parser


def ideal_plan_seconds(endpoint: str, token: str, n_products: int, variants_first: int) -> tuple[float, int, int]:
    """(seconds, requests, Σ requestedQueryCost) of the ideal plan over a raw HTTP session."""
    catalog_page = load_document("CatalogProducts")
    headers = {"X-Shopify-Access-Token": token, "Content-Type": "application/json"}
    requested = 0
    with requests.Session() as session:
        started = time.perf_counter()
        answer = session.post(endpoint, data=json.dumps({"query": load_document("ShopCurrency"), "operationName": "ShopCurrency"}), headers=headers, timeout=60).json()
        requested += answer["extensions"]["cost"]["requestedQueryCost"]
        after, calls = None, 1
        while True:
            body = {"query": catalog_page, "operationName": "CatalogProducts", "variables": {"first": MAX_PAGE, "after": after, "variantsFirst": variants_first}}
            answer = session.post(endpoint, data=json.dumps(body), headers=headers, timeout=60).json()
            calls += 1
            if "data" not in answer:
                raise RuntimeError(f"the ideal plan was refused: {answer.get('errors')}")
            requested += answer["extensions"]["cost"]["requestedQueryCost"]
            info = answer["data"]["products"]["pageInfo"]
            if not info["hasNextPage"]:
                break
            after = info["endCursor"]
        elapsed = time.perf_counter() - started
    if calls != 1 + math.ceil(n_products / MAX_PAGE):
        raise RuntimeError(f"ideal plan took {calls} requests, expected {1 + math.ceil(n_products / MAX_PAGE)}")
    return elapsed, calls, requested


def run(argv: list[str] | None = None) -> bool:
    args = build_parser().parse_args(argv)
    preset = PRESETS[args.preset]
    n_variants = args.products * args.variants_per_product
    print(
        f"=== bench_catalog_sync: {n_variants} variants ({args.products} products × {args.variants_per_product}) on the "
        f"{preset.name} bucket ({preset.maximum_available:g} points, {preset.restore_rate:g}/s); goal read wall ≤ {args.goal:g} × read floor ==="
    )
    day = bench_date(args.date)
    variants_first = max(DEFAULT_VARIANTS_PAGE_SIZE, args.variants_per_product)
    with warehouse(args.warehouse_url, "catalog", keep=args.keep_warehouse) as url, SandboxWorld([], seed=args.seed, date=day) as world:
        shop: AdminShop = world.admin.add_shop("catalogbench", build_catalog(args.products, args.variants_per_product), preset=preset, currency="USD", seed=args.seed)
        shop_id = seed_shop(url, world, shop)
        endpoint = world.admin.endpoint(shop.name)

        samples = []
        for _ in range(max(1, args.floor_samples)):
            wait_for_full_bucket(shop)
            samples.append(ideal_plan_seconds(endpoint, shop.access_token, args.products, variants_first))
        service_floor, plan_requests, plan_cost = min(samples)
        rate_floor = max(0.0, plan_cost - preset.maximum_available) / preset.restore_rate
        floor = max(service_floor, rate_floor)
        waited = wait_for_full_bucket(shop)
        print(
            f"ideal plan: {plan_requests} requests, {plan_cost} points requested; service floor {service_floor:.2f} s "
            f"(fastest of {len(samples)}), rate floor {rate_floor:.2f} s; waited {waited:.1f} s for a full bucket"
        )

        resource = ShopifyAdminResource()
        clients = []

        def client_factory(row):
            client = resource.client_for(row)
            clients.append(client)
            return client

        with session_scope(url) as session:
            row = session.get(Shop, shop_id)
            session.expunge(row)
        before_requests = shop.stats.requests
        if args.static_pages:
            from calibr_pipeline.connectors.shopify_admin import catalog as catalog_module

            original = catalog_module.PRODUCT_PAGE_SIZES
            catalog_module.PRODUCT_PAGE_SIZES = (25,)
        try:
            started = time.perf_counter()
            source, variants, client = read_shop_catalog(row, client_factory)
            read_wall = time.perf_counter() - started
        finally:
            if args.static_pages:
                catalog_module.PRODUCT_PAGE_SIZES = original
        started = time.perf_counter()
        with session_scope(url) as session:
            stats = upsert_catalog(session, session.merge(row), variants)
        upsert_wall = time.perf_counter() - started
        with session_scope(url) as session:
            stored = session.scalar(select(func.count()).select_from(Variant).where(Variant.shop_id == shop_id))
        requests_ = shop.stats.requests - before_requests
        client_stats = client.stats

    ratio = read_wall / floor if floor else float("inf")
    print()
    print("results")
    print(f"  variants read / stored:    {len(variants)} / {stored} ({source}; upsert {stats.as_metadata() if hasattr(stats, 'as_metadata') else stats})")
    print(f"  read wall time:            {read_wall:.2f} s in {requests_} requests (ideal plan: {plan_requests})")
    print(f"  read floor:                {floor:.2f} s (service {service_floor:.2f} s, rate {rate_floor:.2f} s)")
    print(f"  read wall / floor:         {ratio:.3f}  (overhead {read_wall - floor:+.2f} s)")
    print(f"  warehouse upsert:          {upsert_wall:.2f} s (not part of the goal); sync total {read_wall + upsert_wall:.2f} s")
    print(
        f"  client stats:              {client_stats.requests} requests, {client_stats.throttled} throttled, "
        f"{client_stats.bucket_waits} bucket waits ({client_stats.bucket_wait_seconds:.2f} s), requested cost "
        f"{client_stats.requested_cost}, actual {client_stats.actual_cost}, estimate misses {client_stats.estimate_misses}"
    )
    correct = len(variants) == n_variants == stored
    fast = ratio <= args.goal
    print()
    print(f"goal: read wall / read floor ≤ {args.goal:g}: {ratio:.3f} -> {verdict(fast)}")
    print(f"correctness: every variant read and stored: {verdict(correct)}")
    passed = fast and correct
    print(f"bench_catalog_sync: {verdict(passed)}")
    return passed


def main(argv: list[str] | None = None) -> int:
    return 0 if run(argv) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

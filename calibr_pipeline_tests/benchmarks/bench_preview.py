"""Benchmark: the preview of a competitor rule over 100,000 SKUs on the embedded SQLite warehouse (goal < 30 s).

    python -m calibr_pipeline_tests.benchmarks.bench_preview [--skus 100000] [--coverage 0.3] [--competitors 3] [--profile]

Seeding writes the warehouse directly with bulk Core inserts (no sandbox, no Admin API):
one tenant/project/shop, ``--skus`` variants over products of 4 variants each (prices
10.00–209.99, cost at 55–75 % of the price, one in ten without a cost), ``--competitors``
competitors, and for ``--coverage`` of the SKUs one listing per competitor with an
observation and a normalized snapshot from a few hours ago (one in twenty out of stock).

Timed: ``compute_targets`` for one QUEUED apply run of the rule "beat the lowest
competitor by 5 %, floor cost + 20 %, max change 15 %, charm .99" — the work of the
``rule_targets`` asset — then the rest of the asset (reading the targets back for its
preview table) and the commit. ``--profile`` runs cProfile around ``compute_targets`` and
prints the top functions by cumulative and by own time.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import pstats
import random
import sys
import time
from decimal import Decimal

from sqlalchemy import delete, func, insert, select

from calibr_pipeline.defs.pricing.assets import _targets_table
from calibr_pipeline.services.rule_runs import compute_targets, create_run, save_rule
from calibr_pipeline.warehouse.engine import get_engine, session_scope
from calibr_pipeline.warehouse.models import (
    Competitor,
    CompetitorListing,
    CompetitorPriceObservation,
    NormalizedPriceSnapshot,
    PriceAudit,
    Product,
    RuleRun,
    RuleRunMetrics,
    RuleTarget,
    Variant,
)
from calibr_pipeline.warehouse.tenancy import (
    get_or_create_project,
    get_or_create_tenant,
    upsert_shop,
)
from calibr_pipeline.warehouse.types import utcnow
from calibr_pipeline_tests.benchmarks._common import (
    add_common_arguments,
    verdict,
    warehouse,
)

GOAL_SECONDS = 30.0
TENANT = "previewbench-usd"
VARIANTS_PER_PRODUCT = 4
CHUNK = 5000
RULE = {
    "name": "Beat lowest competitor by 5%",
    "transform": {"kind": "competitor", "reference": "lowest", "mode": "beat", "by_percent": "5"},
    "scope": {"kind": "project"},
    "guardrails": {"min_margin_pct": "20", "max_change_pct": "15", "max_observation_age_hours": 48},
    "rounding": {"mode": "charm", "ending": "0.99"},
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench_preview", description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--skus", type=int, default=100_000, help="variants in the project (default 100000)")
    parser.add_argument("--coverage", type=float, default=0.3, help="share of SKUs with competitor listings (default 0.3)")
    parser.add_argument("--competitors", type=int, default=3, help="competitors, each listing every covered SKU (default 3)")
    parser.add_argument("--profile", action="store_true", help="run compute_targets under cProfile and print the hot spots")
    parser.add_argument("--goal", type=float, default=GOAL_SECONDS, help="seconds compute_targets must stay under")
    return parser


def _insert_returning_ids(connection, table, rows: list[dict]) -> list[int]:
    """Bulk insert in chunks; ids in the order of ``rows`` (insertmanyvalues with RETURNING)."""
    ids: list[int] = []
    stmt = insert(table).returning(table.c.id, sort_by_parameter_order=True)
    for start in range(0, len(rows), CHUNK):
        ids.extend(connection.execute(stmt, rows[start : start + CHUNK]).scalars().all())
    return ids


def seed(url: str, *, n_skus: int, coverage: float, n_competitors: int, seed_value: int) -> dict[str, float | int]:
    rng = random.Random(seed_value)
    timings: dict[str, float | int] = {}
    t0 = time.perf_counter()
    with session_scope(url) as session:
        tenant = get_or_create_tenant(session, TENANT, "Preview Bench")
        project = get_or_create_project(session, tenant, TENANT, name="Preview Bench store", currency="USD")
        shop = upsert_shop(session, project, "main", platform="shopify", admin_endpoint="https://previewbench.example/admin/api/2025-01/graphql.json",
                           api_version="2025-01", access_token="shpat_previewbench", rate_limit_preset="standard", currency="USD")
        session.flush()
        tenant_id, project_id, shop_id = tenant.id, project.id, shop.id
        # Re-runs against a kept/shared warehouse: start the project over.
        run_ids = select(RuleRun.id).where(RuleRun.project_id == project_id)
        for model in (PriceAudit, RuleRunMetrics, RuleTarget):
            session.execute(delete(model).where(model.run_id.in_(run_ids)))
        session.execute(delete(RuleRun).where(RuleRun.project_id == project_id))
        for model in (NormalizedPriceSnapshot, CompetitorPriceObservation, CompetitorListing):
            session.execute(delete(model).where(model.project_id == project_id))
        session.execute(delete(Variant).where(Variant.project_id == project_id))
        session.execute(delete(Product).where(Product.project_id == project_id))
        session.execute(delete(Competitor).where(Competitor.project_id == project_id))

    now = utcnow()
    today = now.date()
    n_products = -(-n_skus // VARIANTS_PER_PRODUCT)
    types = ("Jackets", "Tents", "Boots", "Backpacks", "Stoves", "Lamps", "Chairs", "Mugs")
    with get_engine(url).begin() as connection:
        product_rows = [
            {
                "shop_id": shop_id,
                "project_id": project_id,
                "external_id": f"gid://shopify/Product/{9_000_000_000_000 + p}",
                "title": f"Preview product {p:06d}",
                "product_type": types[p % len(types)],
                "vendor": f"Vendor {p % 37}",
                "tags": ["bench", types[p % len(types)].lower()],
                "updated_at": now,
            }
            for p in range(n_products)
        ]
        product_ids = _insert_returning_ids(connection, Product.__table__, product_rows)
        variant_rows = []
        for i in range(n_skus):
            p = i // VARIANTS_PER_PRODUCT
            price = Decimal(rng.randint(1000, 20999)).scaleb(-2)
            cost = None if rng.random() < 0.1 else (price * Decimal(rng.randint(55, 75)) / 100).quantize(Decimal("0.01"))
            variant_rows.append(
                {
                    "product_id": product_ids[p],
                    "shop_id": shop_id,
                    "project_id": project_id,
                    "external_id": f"gid://shopify/ProductVariant/{95_000_000_000_000 + i}",
                    "sku": f"PV-{i:06d}",
                    "title": f"Size {i % VARIANTS_PER_PRODUCT + 1}",
                    "price": price,
                    "compare_at_price": None,
                    "cost": cost,
                    "map_price": None,
                    "currency": "USD",
                    "updated_at": now,
                }
            )
        variant_ids = _insert_returning_ids(connection, Variant.__table__, variant_rows)
        timings["variants"] = len(variant_ids)
        timings["catalog insert s"] = time.perf_counter() - t0

        t1 = time.perf_counter()
        competitor_ids = _insert_returning_ids(
            connection,
            Competitor.__table__,
            [{"project_id": project_id, "name": f"Rival {c + 1}", "domain": f"rival{c + 1}.example", "currency": "USD", "trusted": True, "created_at": now}
             for c in range(n_competitors)],
        )
        covered = sorted(rng.sample(range(n_skus), int(n_skus * coverage)))
        listing_rows, listing_meta = [], []
        for i in covered:
            for c, competitor_id in enumerate(competitor_ids):
                listing_rows.append({
                    "project_id": project_id, "competitor_id": competitor_id, "variant_id": variant_ids[i],
                    "url": f"https://rival{c + 1}.example/products/pv-{i:06d}", "page_kind": "html", "variant_hint": None,
                    "match_type": "exact", "active": True, "created_at": now,
                })
                listing_meta.append((i, competitor_id))
        listing_ids = _insert_returning_ids(connection, CompetitorListing.__table__, listing_rows)
        observed = now - dt.timedelta(hours=3)
        observation_rows, amounts = [], []
        for listing_id, (i, _), listing in zip(listing_ids, listing_meta, listing_rows):
            ours = variant_rows[i]["price"]
            amount = (ours * Decimal(rng.randint(80, 115)) / 100).quantize(Decimal("0.01"))
            availability = "OutOfStock" if rng.random() < 0.05 else "InStock"
            amounts.append((amount, availability))
            observation_rows.append({
                "tenant_id": tenant_id, "project_id": project_id, "listing_id": listing_id, "observation_date": today,
                "dagster_run_id": "previewbench", "url": listing["url"], "status": "ok", "http_status": 200, "amount": amount,
                "currency": "USD", "regular_amount": None, "availability": availability, "extraction_source": "json_ld",
                "attempts": 1, "elapsed_ms": 120, "fetched_at": observed,
            })
        observation_ids = _insert_returning_ids(connection, CompetitorPriceObservation.__table__, observation_rows)
        snapshot_rows = [
            {
                "tenant_id": tenant_id, "project_id": project_id, "listing_id": listing_id, "competitor_id": competitor_id,
                "variant_id": variant_ids[i], "observation_id": observation_id, "snapshot_date": today, "amount": amount,
                "currency": "USD", "regular_amount": None, "on_sale": False, "availability": availability, "project_currency": "USD",
                "fx_rate": None, "amount_in_project_currency": amount, "observed_at": observed,
            }
            for listing_id, (i, competitor_id), observation_id, (amount, availability) in zip(listing_ids, listing_meta, observation_ids, amounts)
        ]
        _insert_returning_ids(connection, NormalizedPriceSnapshot.__table__, snapshot_rows)
        timings["covered skus"] = len(covered)
        timings["listings"] = len(listing_ids)
        timings["competitor insert s"] = time.perf_counter() - t1
    return timings


def run(argv: list[str] | None = None) -> bool:
    args = build_parser().parse_args(argv)
    print(
        f"=== bench_preview: preview of '{RULE['name']}' (floor cost + 20 %, max change 15 %, charm .99) over "
        f"{args.skus} SKUs (goal compute_targets < {args.goal:g} s) ==="
    )
    with warehouse(args.warehouse_url, "preview", keep=args.keep_warehouse) as url:
        seeded = seed(url, n_skus=args.skus, coverage=args.coverage, n_competitors=args.competitors, seed_value=args.seed)
        print(
            f"setup: {seeded['variants']} variants ({VARIANTS_PER_PRODUCT} per product) in {seeded['catalog insert s']:.1f} s; "
            f"{args.competitors} competitors × {seeded['covered skus']} SKUs ({args.coverage:.0%}) = {seeded['listings']} listings, "
            f"observations and snapshots in {seeded['competitor insert s']:.1f} s"
        )
        with session_scope(url) as session:
            save_rule(session, project_slug=TENANT, definition=RULE, actor="bench")
            run_id = create_run(session, project_slug=TENANT, rule_name=RULE["name"], actor="bench").id

        profiler = cProfile.Profile() if args.profile else None
        session_cm = session_scope(url)
        session = session_cm.__enter__()
        try:
            t0 = time.perf_counter()
            if profiler:
                profiler.enable()
            stats = compute_targets(session, run_id, preset="standard")
            if profiler:
                profiler.disable()
            t_compute = time.perf_counter() - t0
            # The rest of the rule_targets asset: its preview table (25 rows, writes first).
            t1 = time.perf_counter()
            shown = session.scalars(
                select(RuleTarget).where(RuleTarget.run_id == run_id).order_by(RuleTarget.action.desc(), RuleTarget.sku).limit(25)
            ).all()
            _targets_table(list(shown), total=stats.total)
            t_table = time.perf_counter() - t1
            t2 = time.perf_counter()
        except BaseException:
            session_cm.__exit__(*sys.exc_info())
            raise
        session_cm.__exit__(None, None, None)
        t_commit = time.perf_counter() - t2
        with session_scope(url) as session:
            stored = session.scalar(select(func.count()).select_from(RuleTarget).where(RuleTarget.run_id == run_id))
            with_competitors = session.scalar(
                select(func.count()).select_from(RuleTarget).where(RuleTarget.run_id == run_id, RuleTarget.proposal_status != "kept")
            )

    print()
    print("results")
    print(f"  targets:            {stats.total} stored {stored}; by proposal {stats.by_status}; {stats.to_write} to write over {stats.products} products")
    print(f"                      ({with_competitors} SKUs not 'kept', i.e. priced from competitor data; the preview estimates {stats.estimated_apply_seconds:g} s to apply)")
    print(f"  compute_targets:    {t_compute:.2f} s  ({stats.total / t_compute:,.0f} SKUs/s)")
    print(f"  preview table read: {t_table:.2f} s  (the rule_targets asset's 25-row preview table)")
    print(f"  commit:             {t_commit:.2f} s")
    print(f"  asset work total:   {t_compute + t_table + t_commit:.2f} s  ({stats.total / (t_compute + t_table + t_commit):,.0f} SKUs/s)")
    if profiler:
        for key, title in (("cumulative", "cumulative time"), ("tottime", "own time")):
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats(key).print_stats(25)
            print(f"\nprofile of compute_targets, top 25 by {title}:")
            print("\n".join(line for line in out.getvalue().splitlines() if line.strip())[:12000])
    fast = t_compute < args.goal
    correct = stored == stats.total == args.skus
    print()
    print(f"goal: compute_targets for {args.skus} SKUs < {args.goal:g} s: {t_compute:.2f} s -> {verdict(fast)}")
    print(f"correctness: one target per SKU: {verdict(correct)}")
    passed = fast and correct
    print(f"bench_preview: {verdict(passed)}")
    return passed


def main(argv: list[str] | None = None) -> int:
    return 0 if run(argv) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

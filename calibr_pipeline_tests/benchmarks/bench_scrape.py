"""Benchmark: 1,000 competitor listings scraped and normalized against the sandbox (goal < 60 s).

    python -m calibr_pipeline_tests.benchmarks.bench_scrape [--warehouse-url URL] [--listings 1000]

Per tenant it runs what the ``competitor_monitoring`` job runs for one partition:
``scrape_tenant_day`` (fetch + extract + write observations) with a scraper built by
``ScraperResource`` with its defaults, then ``replace_snapshots`` and
``replace_market_positions``, each in its own transaction like the Dagster assets. The
timed section starts after seeding (catalog sync, listing registration) and covers every
tenant one after the other, as the job's partitions would run on a single worker.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections import Counter

from sqlalchemy import select

from calibr_pipeline.defs.resources import ScraperResource
from calibr_pipeline.domain import offer_extraction, shopify_storefront  # noqa: F401 - imported up front, as in a warm worker
from calibr_pipeline.sandbox.runner import SandboxWorld
from calibr_pipeline.services.competitor_monitoring import scrape_tenant_day
from calibr_pipeline.warehouse.competitor_store import (
    replace_market_positions,
    replace_snapshots,
)
from calibr_pipeline.warehouse.engine import session_scope
from calibr_pipeline.warehouse.models import CompetitorPriceObservation
from calibr_pipeline_tests.benchmarks._common import (
    Correctness,
    TimedScraper,
    add_common_arguments,
    bench_date,
    fmt_counts,
    print_setup,
    quiet_client_resets,
    seed_world,
    tenant_specs,
    variants_for,
    verdict,
    warehouse,
)

GOAL_SECONDS = 60.0
PHASES = ("scrape", "write observations", "snapshots", "market positions")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench_scrape", description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--listings", type=int, default=1000, help="competitor listings to scrape in total (default 1000)")
    parser.add_argument("--tenants", type=int, default=4, help="sandbox tenants (default 4: USD, EUR, JPY, GBP)")
    parser.add_argument("--competitors", type=int, default=4, help="competitor storefronts per tenant (default 4)")
    parser.add_argument("--variants", type=int, default=0, help="catalog variants per tenant (default: enough for --listings)")
    parser.add_argument("--goal", type=float, default=GOAL_SECONDS, help="seconds the timed section must stay under")
    return parser


def run(argv: list[str] | None = None) -> bool:
    args = build_parser().parse_args(argv)
    print(f"=== bench_scrape: {args.listings} competitor listings scraped and normalized (goal < {args.goal:g} s) ===")
    n_variants = args.variants or variants_for(args.listings / args.tenants, args.competitors)
    specs = tenant_specs(args.tenants, n_variants, args.competitors)
    day = bench_date(args.date)
    resource = None
    with warehouse(args.warehouse_url, "scrape", keep=args.keep_warehouse) as url, SandboxWorld(specs, seed=args.seed, date=day) as world:
        quiet_client_resets(world)
        seeded = seed_world(url, world, total_listings=args.listings)
        print_setup(world, seeded)
        resource = ScraperResource(allowed_hosts=list(world.allowed_hosts))
        print(
            f"scraper: ScraperResource defaults: timeout ({resource.connect_timeout_s:g}, {resource.read_timeout_s:g}) s, "
            f"{resource.max_attempts} attempts, backoff base {resource.backoff_base_s:g} s, "
            f"per_domain_concurrency {resource.per_domain_concurrency}, max_workers {resource.max_workers}; "
            "one scraper per tenant run, tenants one after the other"
        )

        phases = dict.fromkeys(PHASES, 0.0)
        per_tenant: list[tuple[str, int, float]] = []
        errors: Counter[str] = Counter()
        sources: Counter[str] = Counter()
        ok = failed = retried = requests_sent = body_bytes = 0
        run_id = f"bench-{uuid.uuid4().hex[:12]}"
        started = time.perf_counter()
        for tenant in seeded.tenants:
            t0 = time.perf_counter()
            scraper = TimedScraper(resource.build())
            try:
                summary = scrape_tenant_day(url, scraper, tenant_id=tenant.tenant_id, day=day, run_id=run_id)
            finally:
                scraper.close()
            t1 = time.perf_counter()
            with session_scope(url) as session:
                replace_snapshots(session, tenant_id=tenant.tenant_id, snapshot_date=day)
            t2 = time.perf_counter()
            with session_scope(url) as session:
                replace_market_positions(session, tenant_id=tenant.tenant_id, position_date=day)
            t3 = time.perf_counter()
            phases["scrape"] += scraper.seconds
            phases["write observations"] += (t1 - t0) - scraper.seconds
            phases["snapshots"] += t2 - t1
            phases["market positions"] += t3 - t2
            per_tenant.append((tenant.name, summary.listings, t3 - t0))
            ok += summary.ok
            failed += summary.failed
            retried += summary.retried
            errors.update(summary.by_error_class)
            sources.update(summary.by_source)
            stats = scraper.stats
            requests_sent += stats.requests_sent
            body_bytes += stats.bytes_received
        total = time.perf_counter() - started

        # Correctness: read back what the pipeline stored, not what the scraper returned.
        correctness = Correctness()
        with session_scope(url) as session:
            for tenant in seeded.tenants:
                rows = session.execute(
                    select(
                        CompetitorPriceObservation.listing_id,
                        CompetitorPriceObservation.amount,
                        CompetitorPriceObservation.currency,
                        CompetitorPriceObservation.regular_amount,
                        CompetitorPriceObservation.availability,
                    ).where(
                        CompetitorPriceObservation.tenant_id == tenant.tenant_id,
                        CompetitorPriceObservation.observation_date == day,
                        CompetitorPriceObservation.status == "ok",
                    )
                ).all()
                for listing_id, amount, currency, regular, availability in rows:
                    correctness.add(listing_id, tenant.expected[listing_id], amount, currency, regular, availability)
            stored = session.query(CompetitorPriceObservation).filter(
                CompetitorPriceObservation.observation_date == day,
                CompetitorPriceObservation.tenant_id.in_([t.tenant_id for t in seeded.tenants]),
            ).count()

    listings = ok + failed
    print()
    print("results")
    print(f"  listings scraped:   {listings} ({stored} observations stored)")
    for name, n, seconds in per_tenant:
        print(f"    {name:<10} {n:>4} listings  {seconds:6.2f} s")
    print(f"  wall time (timed):  {total:.2f} s")
    for phase in PHASES:
        print(f"    {phase:<19} {phases[phase]:6.2f} s  ({phases[phase] / total:5.1%})")
    print(f"  throughput:         {listings / total:.1f} listings/s (scrape phase alone: {listings / phases['scrape']:.1f} listings/s)")
    print(f"  HTTP requests:      {requests_sent} ({body_bytes / 1e6:.1f} MB received); listings retried: {retried}")
    print(f"  ok:                 {ok}")
    print(f"  failed:             {failed} ({fmt_counts(errors)})")
    print(f"  extraction sources: {fmt_counts(sources)}")
    print("correctness")
    for line in correctness.lines():
        print(line)
    correct = failed == 0 and correctness.price_mismatches == 0 and correctness.currency == 0 and stored == listings
    fast = total < args.goal
    print()
    print(f"goal: {listings} listings in < {args.goal:g} s: {total:.2f} s -> {verdict(fast)}")
    print(f"correctness: every listing priced and every price equal to the sandbox's: {verdict(correct)}")
    passed = fast and correct and listings == args.listings
    print(f"bench_scrape: {verdict(passed)}")
    return passed


def main(argv: list[str] | None = None) -> int:
    return 0 if run(argv) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

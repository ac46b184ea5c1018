"""Benchmark: the 24-hour scrape error-rate validation, time-compressed (goal < 1 % after retries).

    python -m calibr_pipeline_tests.benchmarks.bench_error_rate [--warehouse-url URL] [--hours 24]

Every competitor storefront of the sandbox injects transient faults on 5 % of requests
(FaultInjector probability rules): 5xx answers, answers slower than the read timeout,
and 429s with ``Retry-After``. Each "hour" is one scrape round of every listing of every
tenant through ``scrape_tenant_day`` (fetch, retries, extraction, observations written
to the warehouse). The effective error rate is the share of listings still failed after
the scraper's retries.

Time compression: the retry policy keeps the production shape (attempts, exponential
multiplier, jitter) with a smaller base; read/connect timeouts are shorter and the
injected slow answers are scaled with them (always longer than the read timeout); the
sandbox's ``Retry-After: 1`` is honoured but capped (``retry_after_cap``). The factors
are printed with the results.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

from calibr_pipeline.connectors.storefront import StorefrontScraper
from calibr_pipeline.defs.resources import ScraperResource
from calibr_pipeline.domain import offer_extraction, shopify_storefront  # noqa: F401 - imported up front, as in a warm worker
from calibr_pipeline.domain.backoff import RetryPolicy
from calibr_pipeline.sandbox.faults import FAULT_KINDS, FaultRule
from calibr_pipeline.sandbox.runner import SandboxWorld
from calibr_pipeline.services.competitor_monitoring import scrape_tenant_day
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
    verdict,
    warehouse,
)

GOAL_RATE = 0.01
FIVE_XX_STATUSES = (500, 502, 503, 504)  # one per competitor, round robin
TRANSIENT_KINDS = ("5xx", "timeout", "429")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench_error_rate", description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--hours", type=int, default=24, help="scrape rounds (default 24)")
    parser.add_argument("--tenants", type=int, default=2, help="sandbox tenants (default 2: USD, EUR)")
    parser.add_argument("--variants", type=int, default=100, help="catalog variants per tenant (default 100, ~250 listings)")
    parser.add_argument("--competitors", type=int, default=4, help="competitor storefronts per tenant (default 4)")
    parser.add_argument("--fault-rate", type=float, default=0.05, help="share of storefront requests faulted (default 0.05)")
    parser.add_argument(
        "--fault-mix", default="5xx=0.4,timeout=0.3,429=0.3",
        help="how the faults split between 5xx, timeout and 429 (default 5xx=0.4,timeout=0.3,429=0.3)",
    )
    parser.add_argument("--backoff-compression", type=float, default=40.0, help="production backoff base / benchmark base (default 40)")
    parser.add_argument("--timeout-compression", type=float, default=20.0, help="production read timeout / benchmark read timeout (default 20)")
    parser.add_argument("--connect-timeout", type=float, default=0.5, help="benchmark connect timeout, s (default 0.5; loopback)")
    parser.add_argument("--retry-after", default="1", help="Retry-After header the sandbox's 429s carry (default 1 s)")
    parser.add_argument("--retry-after-cap", type=float, default=0.05, help="benchmark retry_after_cap, s (default 0.05)")
    parser.add_argument("--goal", type=float, default=GOAL_RATE, help="effective error rate to stay under (default 0.01)")
    return parser


def parse_mix(text: str) -> dict[str, float]:
    mix: dict[str, float] = {}
    for part in text.split(","):
        kind, _, share = part.partition("=")
        if kind.strip() not in TRANSIENT_KINDS:
            raise SystemExit(f"--fault-mix kinds are {', '.join(TRANSIENT_KINDS)}; got {kind!r}")
        mix[kind.strip()] = float(share)
    total = sum(mix.values())
    if total <= 0:
        raise SystemExit("--fault-mix shares must add up to more than 0")
    return {k: mix.get(k, 0.0) / total for k in TRANSIENT_KINDS}


@dataclass
class Hour:
    hour: int
    listings: int = 0
    requests: int = 0  # counted by the sandbox
    scraper_requests: int = 0  # counted by the scraper
    faults: Counter[str] = field(default_factory=Counter)
    first_attempt_failures: int = 0
    retried: int = 0
    failed: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    attempts: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.failed / self.listings if self.listings else 0.0


def run(argv: list[str] | None = None) -> bool:
    args = build_parser().parse_args(argv)
    mix = parse_mix(args.fault_mix)
    prod = ScraperResource()
    policy = RetryPolicy(
        max_attempts=prod.max_attempts,
        base_seconds=prod.backoff_base_s / args.backoff_compression,
        max_seconds=RetryPolicy().max_seconds / args.backoff_compression,
        retry_after_cap=args.retry_after_cap,
    )
    read_timeout = prod.read_timeout_s / args.timeout_compression
    timeout_delay = 2 * read_timeout  # the injected slow answer: must outlast the read timeout
    print(
        f"=== bench_error_rate: {args.hours} hourly scrape rounds, {args.fault_rate:.0%} transient faults "
        f"(goal: effective error rate < {args.goal:.0%}) ==="
    )
    day = bench_date(args.date)
    specs = tenant_specs(args.tenants, args.variants, args.competitors, prefix="errbench")
    with warehouse(args.warehouse_url, "error-rate", keep=args.keep_warehouse) as url, SandboxWorld(specs, seed=args.seed, date=day) as world:
        quiet_client_resets(world)
        seeded = seed_world(url, world, total_listings=None)
        print_setup(world, seeded)

        slugs = [slug for t in seeded.tenants for slug in t.competitors]
        for i, slug in enumerate(slugs):
            world.faults.add(
                FaultRule(
                    shop=slug,
                    path="*",
                    error_rate=args.fault_rate * mix["5xx"],
                    error_status=FIVE_XX_STATUSES[i % len(FIVE_XX_STATUSES)],
                    timeout_rate=args.fault_rate * mix["timeout"],
                    timeout_delay=timeout_delay,
                    rate_limit_rate=args.fault_rate * mix["429"],
                    retry_after=args.retry_after,
                )
            )
        print(
            f"faults: every storefront route, p = {args.fault_rate:.3f} per request: "
            + ", ".join(f"{k} {args.fault_rate * mix[k]:.4f}" for k in TRANSIENT_KINDS)
            + f"; 5xx status {'/'.join(map(str, FIVE_XX_STATUSES))} by competitor; slow answers after {timeout_delay:g} s; "
            f"429 with Retry-After: {args.retry_after}"
        )
        retry_after_s = float(args.retry_after)
        print("time compression (production -> benchmark):")
        print(
            f"  backoff:      base {prod.backoff_base_s:g} s -> {policy.base_seconds:g} s "
            f"(x{args.backoff_compression:g}), multiplier {policy.multiplier:g}, jitter +-{policy.jitter:.0%}, "
            f"{policy.max_attempts} attempts (unchanged)"
        )
        print(
            f"  read timeout: {prod.read_timeout_s:g} s -> {read_timeout:g} s (x{args.timeout_compression:g}); "
            f"connect timeout {prod.connect_timeout_s:g} s -> {args.connect_timeout:g} s "
            f"(x{prod.connect_timeout_s / args.connect_timeout:g})"
        )
        print(
            f"  Retry-After:  {retry_after_s:g} s sent; slept min(Retry-After, cap): cap {RetryPolicy().retry_after_cap:g} s -> "
            f"{args.retry_after_cap:g} s (x{retry_after_s / min(retry_after_s, args.retry_after_cap):g} for this header)"
        )
        print("  an hour:      one scrape round of every listing, back to back (x3600 / round time)")
        print(
            f"scraper: per_domain_concurrency {prod.per_domain_concurrency}, max_workers {prod.max_workers}, "
            "one scraper per tenant and hour"
        )

        hours: list[Hour] = []
        correctness = Correctness()
        print()
        header = (
            f"{'hour':>4} {'listings':>8} {'requests':>8} {'faults':>6} {'5xx':>4} {'t/o':>4} {'429':>4} "
            f"{'fault%':>6} {'1st-fail':>8} {'failed':>6} {'eff.err':>7} {'secs':>6}"
        )
        print(header)
        print("-" * len(header))
        started = time.perf_counter()
        for h in range(args.hours):
            world.faults.reset_counters()
            hour = Hour(h)
            t0 = time.perf_counter()
            for tenant in seeded.tenants:
                scraper = TimedScraper(
                    StorefrontScraper(
                        timeout=(args.connect_timeout, read_timeout),
                        retry_policy=policy,
                        per_domain_concurrency=prod.per_domain_concurrency,
                        max_workers=prod.max_workers,
                        allowed_hosts=world.allowed_hosts,
                        rng=random.Random(args.seed * 1000 + h),
                    )
                )
                try:
                    scrape_tenant_day(url, scraper, tenant_id=tenant.tenant_id, day=day, run_id=f"bench-h{h:02d}-{uuid.uuid4().hex[:8]}")
                finally:
                    scraper.close()
                hour.scraper_requests += scraper.stats.requests_sent
                for outcome in scraper.outcomes:
                    hour.listings += 1
                    hour.attempts += outcome.attempts
                    if outcome.attempts > 1 or not outcome.ok:
                        hour.first_attempt_failures += 1
                    if outcome.attempts > 1:
                        hour.retried += 1
                    if outcome.ok:
                        correctness.add_outcome(outcome, tenant.expected[outcome.listing_id])
                    else:
                        hour.failed += 1
                        hour.errors[outcome.error_class.value if outcome.error_class else "?"] += 1
            hour.seconds = time.perf_counter() - t0
            hour.requests = sum(world.faults.requests(shop=slug) for slug in slugs)
            for kind in FAULT_KINDS:
                n = sum(world.faults.faults(kind, shop=slug) for slug in slugs)
                if n:
                    hour.faults[kind] = n
            hours.append(hour)
            n_faults = sum(hour.faults.values())
            print(
                f"{h:>4} {hour.listings:>8} {hour.requests:>8} {n_faults:>6} {hour.faults['5xx']:>4} "
                f"{hour.faults['timeout']:>4} {hour.faults['429']:>4} {n_faults / hour.requests:>6.2%} "
                f"{hour.first_attempt_failures:>8} {hour.failed:>6} {hour.rate:>7.3%} {hour.seconds:>6.2f}",
                flush=True,
            )
        total_seconds = time.perf_counter() - started

    listings = sum(h.listings for h in hours)
    requests = sum(h.requests for h in hours)
    scraper_requests = sum(h.scraper_requests for h in hours)
    faults: Counter[str] = sum((h.faults for h in hours), Counter())
    first = sum(h.first_attempt_failures for h in hours)
    failed = sum(h.failed for h in hours)
    errors: Counter[str] = sum((h.errors for h in hours), Counter())
    rate = failed / listings if listings else 0.0
    worst = max(hours, key=lambda h: h.rate)
    p = args.fault_rate
    print()
    print("totals")
    print(f"  listings scraped:        {listings} ({listings // max(1, args.hours)} per hour) in {total_seconds:.1f} s "
          f"({listings / total_seconds:.0f} listings/s, {total_seconds / max(1, args.hours):.2f} s per 'hour')")
    print(f"  requests (sandbox):      {requests} (scraper sent {scraper_requests}); "
          f"{sum(h.attempts for h in hours) / listings:.3f} attempts per listing")
    print(f"  faults injected:         {sum(faults.values())} = {sum(faults.values()) / requests:.2%} of requests "
          f"({fmt_counts(faults)})")
    print(f"  first-attempt failures:  {first} = {first / listings:.2%} of listings")
    print(f"  failed after retries:    {failed} ({fmt_counts(errors)})")
    print(f"  effective error rate:    {rate:.4%} (worst hour {worst.hour}: {worst.rate:.3%}); "
          f"with independent faults one expects ~{p ** policy.max_attempts:.4%} (p^{policy.max_attempts})")
    print("correctness of the successful scrapes")
    for line in correctness.lines():
        print(line)
    passed = rate < args.goal and correctness.price_mismatches == 0 and correctness.currency == 0
    print()
    print(f"goal: effective error rate after retries < {args.goal:.0%}: {rate:.4%} -> {verdict(rate < args.goal)}")
    print(f"bench_error_rate: {verdict(passed)}")
    return passed


def main(argv: list[str] | None = None) -> int:
    return 0 if run(argv) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

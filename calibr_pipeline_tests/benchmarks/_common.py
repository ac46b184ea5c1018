"""Shared plumbing of the benchmarks: warehouse, sandbox world, seeding, timing, output.

Seeding goes through exactly the functions ``make demo`` uses (``calibr_pipeline.demo``)
and the catalog is read from the sandbox Shopify Admin API by ``sync_shop`` with the
client the Dagster resource builds, so the benchmarks measure the code the pipeline runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.engine import make_url

from calibr_pipeline.connectors.storefront import ScrapeOutcome
from calibr_pipeline.defs.resources import ShopifyAdminResource
from calibr_pipeline.demo import (
    register_sandbox_listings,
    seed_fx_rates,
    seed_tenant_shops,
)
from calibr_pipeline.domain.url_policy import validate_competitor_url
from calibr_pipeline.sandbox.runner import SandboxWorld, TenantSpec
from calibr_pipeline.sandbox.storefronts import CompetitorListing as SandboxListing
from calibr_pipeline.services.catalog_sync import sync_shop
from calibr_pipeline.warehouse.engine import get_engine, session_scope, upgrade_to_head
from calibr_pipeline.warehouse.models import CompetitorListing, Project, Shop

# One currency per tenant; every one has a demo FX rate, so snapshots convert them all.
TENANT_CURRENCIES = ("USD", "EUR", "JPY", "GBP", "CHF", "SEK", "CAD", "AUD")
# StorefrontWorld.add_tenant's default: a competitor carries ~65 % of our products.
COVERAGE = 0.65


# --------------------------------------------------------------------------- CLI


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--warehouse-url",
        default="",
        help="SQLAlchemy URL of the warehouse (migrated to head; bench-* tenants are written into it). "
        "Default: a fresh SQLite file in a temporary directory, deleted afterwards.",
    )
    parser.add_argument("--seed", type=int, default=7, help="sandbox seed (catalogs, URLs, prices, fault rolls)")
    parser.add_argument("--date", help="pin the sandbox date (YYYY-MM-DD); default: today in UTC")
    parser.add_argument("--keep-warehouse", action="store_true", help="keep the temporary SQLite warehouse and print its path")


def bench_date(text: str | None) -> dt.date:
    # Pinned for the whole run: crossing midnight UTC mid-benchmark would move every price.
    return dt.date.fromisoformat(text) if text else dt.datetime.now(dt.UTC).date()


# --------------------------------------------------------------------------- warehouse


def display_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


@contextmanager
def warehouse(url: str, label: str, *, keep: bool = False) -> Iterator[str]:
    """``url`` migrated to head, or a fresh temporary SQLite warehouse when empty."""
    tmp: str | None = None
    if not url:
        tmp = tempfile.mkdtemp(prefix=f"calibr-bench-{label}-")
        url = f"sqlite:///{tmp}/warehouse.db"
    t0 = time.perf_counter()
    upgrade_to_head(url)
    print(f"warehouse: {display_url(url)} (migrated in {time.perf_counter() - t0:.1f} s)")
    try:
        yield url
    finally:
        get_engine(url).dispose()
        if tmp and not keep:
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp:
            print(f"warehouse kept: {tmp}/warehouse.db")


# --------------------------------------------------------------------------- sandbox + seeding


def tenant_specs(n_tenants: int, n_variants: int, n_competitors: int, prefix: str = "bench") -> list[TenantSpec]:
    if not 1 <= n_tenants <= len(TENANT_CURRENCIES):
        raise SystemExit(f"--tenants must be between 1 and {len(TENANT_CURRENCIES)}")
    return [
        TenantSpec(f"{prefix}-{cur.lower()}", cur, n_variants, n_competitors=n_competitors)
        for cur in TENANT_CURRENCIES[:n_tenants]
    ]


def variants_for(listings_per_tenant: float, n_competitors: int) -> int:
    """Catalog size that yields about 20 % more listings than wanted (coverage varies by seed)."""
    return max(10, math.ceil(listings_per_tenant * 1.2 / (n_competitors * COVERAGE * 0.95)))


@dataclass
class SeededTenant:
    name: str
    currency: str
    tenant_id: int
    shop_id: int
    available_listings: int
    registered: int = 0
    catalog_variants: int = 0
    catalog_requests: int = 0
    # warehouse listing id -> what the sandbox says a correct scraper reads there today
    expected: dict[int, SandboxListing] = field(default_factory=dict)
    competitors: list[str] = field(default_factory=list)  # competitor slugs (fault rules match on them)


@dataclass
class Seeded:
    tenants: list[SeededTenant]
    timings: dict[str, float]

    @property
    def listings(self) -> int:
        return sum(t.registered for t in self.tenants)


def split_limit(total: int | None, available: Sequence[int]) -> list[int | None]:
    """Spread ``total`` listings over tenants as evenly as their available listings allow."""
    if total is None:
        return [None] * len(available)
    if total > sum(available):
        raise SystemExit(
            f"the sandbox has only {sum(available)} listings ({list(available)} per tenant) but {total} were "
            "asked for; raise --variants or --tenants"
        )
    limits = [0] * len(available)
    remaining = total
    open_ = [i for i in range(len(available))]
    while remaining:
        share = max(1, remaining // len(open_))
        for i in list(open_):
            take = min(share, available[i] - limits[i], remaining)
            limits[i] += take
            remaining -= take
            if limits[i] == available[i]:
                open_.remove(i)
            if not remaining:
                break
    return list(limits)


def seed_world(warehouse_url: str, world: SandboxWorld, *, total_listings: int | None) -> Seeded:
    """FX rates, tenants/shops, catalogs (Admin API -> sync_shop), competitor listings."""
    day = world.today()
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    seed_fx_rates(warehouse_url, day - dt.timedelta(days=30))
    tenant_ids = seed_tenant_shops(warehouse_url, world)
    timings["tenants, shops, FX rates"] = time.perf_counter() - t0

    with session_scope(warehouse_url) as session:
        shop_ids = dict(
            session.execute(
                select(Project.slug, Shop.id).join(Shop, Shop.project_id == Project.id).where(
                    Project.slug.in_(list(tenant_ids)), Shop.name == "main"
                )
            ).all()
        )
    tenants = [
        SeededTenant(
            name=name,
            currency=handle.currency,
            tenant_id=tenant_ids[name],
            shop_id=shop_ids[name],
            available_listings=len(world.listings_for(name)),
            competitors=[c.slug for c in handle.competitors],
        )
        for name, handle in world.tenants.items()
    ]

    t0 = time.perf_counter()
    admin = ShopifyAdminResource()
    for tenant in tenants:
        result = sync_shop(warehouse_url, tenant.shop_id, admin.client_for)
        tenant.catalog_variants = result.variants_read
        tenant.catalog_requests = result.api_requests
    timings["catalog sync (Admin API)"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    limits = split_limit(total_listings, [t.available_listings for t in tenants])
    for tenant, limit in zip(tenants, limits):
        register_sandbox_listings(warehouse_url, world, tenant.name, limit=limit)
    timings["listing registration"] = time.perf_counter() - t0

    allowed = world.allowed_hosts
    for tenant, limit in zip(tenants, limits):
        wanted = {validate_competitor_url(l.url, allowed_hosts=allowed): l for l in world.listings_for(tenant.name, day)[:limit]}
        with session_scope(warehouse_url) as session:
            rows = session.execute(
                select(CompetitorListing.id, CompetitorListing.url)
                .join(Project, Project.id == CompetitorListing.project_id)
                .where(Project.slug == tenant.name, CompetitorListing.active.is_(True))
            ).all()
        tenant.expected = {listing_id: wanted[url] for listing_id, url in rows if url in wanted}
        tenant.registered = len(rows)
        if len(tenant.expected) != len(rows):
            raise RuntimeError(f"{tenant.name}: {len(rows) - len(tenant.expected)} active listings are not sandbox listings")
    return Seeded(tenants, timings)


def print_setup(world: SandboxWorld, seeded: Seeded) -> None:
    print(f"sandbox: seed {world.seed}, date {world.today()}, {len(world.allowed_hosts) - 1} competitor storefronts")
    for t in seeded.tenants:
        kinds = ", ".join(c.kind.key for c in world.tenant(t.name).competitors)
        print(
            f"  {t.name:<10} {t.currency}  {t.catalog_variants:>4} variants ({t.catalog_requests} Admin API requests)  "
            f"{t.registered:>4}/{t.available_listings} listings registered  [{kinds}]"
        )
    print("setup: " + ", ".join(f"{k} {v:.1f} s" for k, v in seeded.timings.items()))


def quiet_client_resets(world: SandboxWorld) -> None:
    """Workaround for a sandbox nit (see README, "Findings"): ``socketserver`` prints a full
    traceback when a client resets an idle keep-alive connection, which the scraper does
    after a timed-out or faulted attempt. That is a normal client action, not a sandbox
    failure, so drop those (and only those) from the benchmark output. No-op if the
    sandbox's internals change."""
    servers = [getattr(world.admin, "server", None), *(getattr(c, "server", None) for c in world.storefronts.competitors())]
    for server in servers:
        inner = getattr(server, "_server", None)
        if inner is None or not hasattr(inner, "handle_error"):
            continue
        original = inner.handle_error

        def handle_error(request, client_address, _original=original):
            if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
                return
            _original(request, client_address)

        inner.handle_error = handle_error


# --------------------------------------------------------------------------- scraping


class TimedScraper:
    """Wraps the scraper ``scrape_tenant_day`` is given: times ``scrape_many`` and keeps the
    outcomes, so the scrape phase can be told apart from the warehouse write."""

    def __init__(self, scraper):
        self.scraper = scraper
        self.seconds = 0.0
        self.outcomes: list[ScrapeOutcome] = []

    def scrape_many(self, targets):
        t0 = time.perf_counter()
        outcomes = self.scraper.scrape_many(targets)
        self.seconds += time.perf_counter() - t0
        self.outcomes.extend(outcomes)
        return outcomes

    @property
    def stats(self):
        return self.scraper.stats

    def close(self) -> None:
        self.scraper.close()


@dataclass
class Correctness:
    checked: int = 0
    amount: int = 0
    currency: int = 0
    compare_at: int = 0
    compare_at_by_kind: Counter[str] = field(default_factory=Counter)
    availability: int = 0
    availability_unstated: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, listing_id: int, expected: SandboxListing, amount, currency, regular_amount, availability) -> None:
        self.checked += 1
        problems = []
        if amount is None or Decimal(amount) != expected.expected_amount:
            self.amount += 1
            problems.append(f"amount {amount} != {expected.expected_amount}")
        if currency != expected.expected_currency:
            self.currency += 1
            problems.append(f"currency {currency} != {expected.expected_currency}")
        want_regular = expected.expected_compare_at
        if (regular_amount is None) != (want_regular is None) or (
            regular_amount is not None and Decimal(regular_amount) != want_regular
        ):
            self.compare_at += 1
            if expected.kind not in self.compare_at_by_kind:
                self.examples.append(
                    f"listing {listing_id} {expected.kind} {expected.url}: compare-at {regular_amount} != {want_regular}"
                )
            self.compare_at_by_kind[expected.kind] += 1
        if availability is None:
            self.availability_unstated += 1
        elif (availability == "InStock") != expected.expected_available:
            self.availability += 1
            problems.append(f"availability {availability} != {'InStock' if expected.expected_available else 'OutOfStock'}")
        if problems and len(self.examples) < 10:
            self.examples.append(f"listing {listing_id} {expected.kind} {expected.url}: {'; '.join(problems)}")

    def add_outcome(self, outcome: ScrapeOutcome, expected: SandboxListing) -> None:
        offer = outcome.offer
        assert offer is not None
        self.add(outcome.listing_id, expected, offer.amount, offer.currency, offer.regular_amount, offer.availability)

    @property
    def price_mismatches(self) -> int:
        return self.amount

    def lines(self) -> list[str]:
        out = [
            f"  checked {self.checked} successful observations against the sandbox's expected offer",
            f"    amount (price a shopper pays today) mismatches: {self.amount}",
            f"    currency mismatches:                            {self.currency}",
            f"    compare-at (regular price when on sale):        {self.compare_at}"
            + (f" (by page kind: {fmt_counts(self.compare_at_by_kind)}; informational)" if self.compare_at else ""),
            f"    availability mismatches:                        {self.availability}"
            + f" ({self.availability_unstated} pages state no availability)",
        ]
        out += [f"    e.g. {e}" for e in self.examples]
        return out


def fmt_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"

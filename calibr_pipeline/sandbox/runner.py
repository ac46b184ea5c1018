"""Start a whole sandbox world: the Shopify Admin API and every tenant's competitors.

In-process::

    with SandboxWorld([TenantSpec("acme", "USD", 120)], seed=7) as world:
        acme = world.tenant("acme")
        acme.shop_url, acme.admin_endpoint, acme.access_token, acme.catalog
        world.listings_for("acme")          # competitor URL -> our SKU, expected offer today
        world.set_date("2025-03-01")        # daily prices move with the sandbox date
        world.faults.add(shop="acme-shopify", path="/products/*", fail_next=2)

Foreground (``calibr sandbox`` calls :func:`main`)::

    python -m calibr_pipeline.sandbox.runner --tenant acme:USD:120 --seed 7 [--json]

Everything is seeded: the same seed, tenants and date give the same catalogs, tokens,
competitor URLs and prices (ports aside, which are ephemeral unless given).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import signal
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Self

from calibr_pipeline.domain.catalog import CatalogVariant
from calibr_pipeline.sandbox._http import SandboxControl
from calibr_pipeline.sandbox.clock import SandboxClock
from calibr_pipeline.sandbox.demo_catalog import DEMO_FX_PER_USD, generate_demo_catalog
from calibr_pipeline.sandbox.faults import FaultInjector
from calibr_pipeline.sandbox.shopify_admin import (
    PRESETS,
    AdminShop,
    BucketPreset,
    ShopifyAdminSandbox,
)
from calibr_pipeline.sandbox.storefronts import (
    CompetitorListing,
    CompetitorShop,
    StorefrontWorld,
)


@dataclass(frozen=True)
class TenantSpec:
    name: str  # lower-case letters, digits, dashes; also the admin shop name
    currency: str = "USD"
    n_variants: int = 60
    preset: str | BucketPreset = "standard"
    n_competitors: int = 4
    competitor_kinds: tuple[str, ...] | None = None


DEMO_TENANTS: tuple[TenantSpec, ...] = (
    TenantSpec("acme-outdoor", "USD", 120),
    TenantSpec("berlin-living", "EUR", 80),
    TenantSpec("tokyo-gear", "JPY", 60),
)


@dataclass
class TenantHandle:
    name: str
    currency: str
    shop_url: str  # what ShopifyAdminClient takes as endpoint_url
    admin_endpoint: str  # the full .../graphql.json URL
    access_token: str = field(repr=False)
    catalog: list[CatalogVariant] = field(repr=False)  # as generated; admin_shop.catalog() is live
    admin_shop: AdminShop = field(repr=False)
    competitors: list[CompetitorShop] = field(repr=False)


class SandboxWorld:
    def __init__(
        self,
        tenants: Sequence[TenantSpec] = DEMO_TENANTS,
        *,
        seed: int = 0,
        host: str = "127.0.0.1",
        admin_port: int = 0,
        date: dt.date | str | None = None,
        admin_clock: Callable[[], float] = time.monotonic,
    ):
        self.seed = seed
        self.specs = list(tenants)
        self.control = SandboxControl(clock=SandboxClock(), faults=FaultInjector(seed))
        if date is not None:
            self.control.clock.set_date(date)
        self.admin = ShopifyAdminSandbox(host=host, port=admin_port, control=self.control, clock=admin_clock)
        self.storefronts = StorefrontWorld(seed=seed, host=host, control=self.control)
        self._tenants: dict[str, TenantHandle] = {}
        self._catalogs: dict[str, list[CatalogVariant]] = {}
        for spec in self.specs:
            catalog = generate_demo_catalog(spec.name, spec.n_variants, seed, spec.currency)
            self._catalogs[spec.name] = catalog
            self.admin.add_shop(spec.name, catalog, preset=spec.preset, currency=spec.currency, seed=seed)
            competitors = self.storefronts.add_tenant(
                spec.name, catalog, kinds=spec.competitor_kinds, n_competitors=spec.n_competitors
            )
            # Demand reacts to our price relative to these competitors' (see shopify_orders).
            self.admin.shop(spec.name).orders.set_market_price(_market_price(competitors, spec.currency))

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> Self:
        self.admin.start()
        try:
            self.storefronts.start()
        except BaseException:
            self.admin.stop()
            raise
        for spec in self.specs:
            shop = self.admin.shop(spec.name)
            self._tenants[spec.name] = TenantHandle(
                name=spec.name,
                currency=shop.currency,
                shop_url=self.admin.shop_url(spec.name),
                admin_endpoint=self.admin.endpoint(spec.name),
                access_token=shop.access_token,
                catalog=self._catalogs[spec.name],
                admin_shop=shop,
                competitors=self.storefronts.competitors(spec.name),
            )
        return self

    def stop(self) -> None:
        self.storefronts.stop()
        self.admin.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- access -----------------------------------------------------------------------------

    def tenant(self, name: str) -> TenantHandle:
        if not self._tenants:
            raise RuntimeError("start the SandboxWorld first")
        return self._tenants[name]

    @property
    def tenants(self) -> dict[str, TenantHandle]:
        return dict(self._tenants)

    def listings_for(self, tenant: str, day: dt.date | None = None) -> list[CompetitorListing]:
        return self.storefronts.listings_for(tenant, day)

    @property
    def faults(self) -> FaultInjector:
        return self.control.faults

    def set_date(self, date: dt.date | str | None) -> None:
        self.control.clock.set_date(date)

    def today(self) -> dt.date:
        return self.control.clock.today()

    @property
    def allowed_hosts(self) -> tuple[str, ...]:
        """Every sandbox ``host:port``; the scraper must be told these are fine to fetch."""
        return (self.admin.server.netloc, *self.storefronts.allowed_hosts)

    def summary(self) -> dict[str, Any]:
        """JSON-able description of the running world (tokens included: it is a sandbox)."""
        return {
            "seed": self.seed,
            "date": self.today().isoformat(),
            "admin": {"base_url": self.admin.base_url, "control": f"{self.admin.base_url}/__sandbox/"},
            "allowed_hosts": list(self.allowed_hosts),
            "tenants": [
                {
                    "name": t.name,
                    "currency": t.currency,
                    "shop_url": t.shop_url,
                    "admin_endpoint": t.admin_endpoint,
                    "access_token": t.access_token,
                    "preset": t.admin_shop.preset.name,
                    "variants": len(t.catalog),
                    "competitors": [
                        {"slug": c.slug, "name": c.name, "kind": c.kind.key, "currency": c.currency, "base_url": c.base_url}
                        for c in t.competitors
                    ],
                    "listings": len(self.listings_for(t.name)),
                }
                for t in self._tenants.values()
            ],
        }


def _market_price(competitors: Sequence[CompetitorShop], currency: str) -> Callable[[str, dt.date], Decimal | None]:
    """Median of the competitors' in-stock prices that day, converted to ``currency``."""
    by_variant: dict[str, list[tuple[CompetitorShop, Any]]] = {}
    for shop in competitors:
        for _product, item in shop.items():
            by_variant.setdefault(item.our_variant_id, []).append((shop, item))

    def market(variant_gid: str, day: dt.date) -> Decimal | None:
        prices = []
        for shop, item in by_variant.get(variant_gid, ()):
            offer = shop.offer(item, day)
            if offer.available:
                prices.append(offer.price / DEMO_FX_PER_USD[shop.currency] * DEMO_FX_PER_USD[currency])
        return statistics.median(prices) if prices else None

    return market


# -- CLI --------------------------------------------------------------------------------------


def _tenant_arg(text: str) -> TenantSpec:
    parts = text.split(":")
    if not 1 <= len(parts) <= 4:
        raise argparse.ArgumentTypeError("expected NAME[:CURRENCY[:VARIANTS[:PRESET]]]")
    name = parts[0]
    currency = parts[1].upper() if len(parts) > 1 and parts[1] else "USD"
    try:
        n_variants = int(parts[2]) if len(parts) > 2 and parts[2] else 60
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"variant count must be an integer: {parts[2]!r}") from exc
    preset = parts[3] if len(parts) > 3 and parts[3] else "standard"
    if preset not in PRESETS:
        raise argparse.ArgumentTypeError(f"preset must be one of {sorted(PRESETS)}")
    return TenantSpec(name, currency, n_variants, preset)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="calibr sandbox",
        description="Run the loopback Shopify Admin API and competitor storefronts until Ctrl-C.",
    )
    parser.add_argument("--tenant", action="append", type=_tenant_arg, metavar="NAME[:CUR[:N[:PRESET]]]",
                        help="a tenant shop (repeatable); default: three demo tenants")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--admin-port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--date", help="pin the sandbox date (YYYY-MM-DD); default: today in UTC")
    parser.add_argument("--json", action="store_true", help="print the world as one JSON line")
    return parser


def main(argv: Sequence[str] | None = None, *, stop: threading.Event | None = None) -> int:
    args = build_parser().parse_args(argv)
    stop = stop or threading.Event()
    tenants = args.tenant or list(DEMO_TENANTS)
    try:
        world = SandboxWorld(tenants, seed=args.seed, host=args.host, admin_port=args.admin_port, date=args.date)
    except ValueError as exc:
        print(f"calibr sandbox: {exc}", file=sys.stderr)
        return 2
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    try:
        with world:
            summary = world.summary()
            if args.json:
                print(json.dumps(summary), flush=True)
            else:
                _print_human(summary)
            while not stop.wait(0.5):
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("sandbox stopped", file=sys.stderr, flush=True)
    return 0


def _print_human(summary: dict[str, Any]) -> None:
    print(f"Calibrate sandbox (seed {summary['seed']}, date {summary['date']})")
    print(f"  control:  {summary['admin']['control']}  (clock, faults, counters)")
    for tenant in summary["tenants"]:
        print(f"\n  tenant {tenant['name']} ({tenant['currency']}, {tenant['variants']} variants, {tenant['preset']} bucket)")
        print(f"    admin:  {tenant['admin_endpoint']}")
        print(f"    token:  {tenant['access_token']}")
        for comp in tenant["competitors"]:
            print(f"    rival:  {comp['base_url']:<28} {comp['kind']:<17} {comp['currency']}  {comp['name']}")
        print(f"    listings: {tenant['listings']}")
    print(f"\n  CALIBR_SANDBOX_ALLOWED_HOSTS={','.join(summary['allowed_hosts'])}")
    print("\nCtrl-C to stop.", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())

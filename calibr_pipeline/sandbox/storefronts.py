"""Loopback competitor storefronts with deterministic, daily-moving prices.

Every competitor shop is its own threaded server (own port, so own ``host:port``, the
way real competitors are separate domains and per-domain politeness applies), and all
of them share one :class:`~calibr_pipeline.sandbox._http.SandboxControl`: the sandbox
clock and the fault injector (match rules with ``shop=<competitor slug>``).

Markup kinds (``CompetitorKind.key``), one per demo competitor:

============== ======== ===================== =============================================
key            currency visible format        what the product page carries
============== ======== ===================== =============================================
shopify        USD      ``$1,299.00``         ``/products/<h>`` HTML (``og:price:amount``
                                              "1,299.00" as Shopify themes print it),
                                              ``/products/<h>.json`` (decimal strings),
                                              ``/products/<h>.js`` (integer cents),
                                              ``/cart.js`` (shop currency)
jsonld-offer   EUR      ``1.299,00 €``        JSON-LD Product with one Offer (strings)
jsonld-offers  GBP      ``£1,299.00``         JSON-LD ``offers: [Offer]`` (JSON numbers)
jsonld-aggr…   JPY      ``¥12,000``           JSON-LD AggregateOffer lowPrice/highPrice
jsonld-pricesp CHF      ``CHF 1'299.00``      JSON-LD Offer.priceSpecification, ListPrice
microdata      EUR      ``1 299,00 €`` (fr)   schema.org microdata ``itemprop=price``
opengraph      SEK      ``1 299,00 kr``       ``product:price:amount``/``:currency``
============== ======== ===================== =============================================

Expected values (:class:`CompetitorListing`): the amount is the price a shopper pays
today (the sale price when on sale; ``lowPrice`` for an AggregateOffer); the
compare-at is the struck-through regular price when on sale, else ``None``. HTML shops
sell one variant per page; the Shopify shop mirrors our products and a listing URL
names its variant with ``?variant=<id>`` when the product has several.

Prices: ``price(item, day)`` = the item's base (our price × a per-item markup,
converted with the fixed demo rates) × a factor in [0.95, 1.05] hashed from
(competitor, item, day), rounded like a shop would. About one item in six is on sale
for an ISO week, about one in ten is out of stock on a given day.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Self

from calibr_pipeline.domain.catalog import CatalogVariant
from calibr_pipeline.domain.money import quantize
from calibr_pipeline.sandbox._http import (
    SandboxControl,
    SandboxHTTPServer,
    SandboxRequest,
    SandboxResponse,
)
from calibr_pipeline.sandbox.demo_catalog import (
    DEMO_FX_PER_USD,
    gid_number,
    retail_round,
    slugify,
    stable_int,
)

SCHEMA_ORG = "https://schema.org"


# -- money formats ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PriceFormat:
    prefix: str
    suffix: str
    group: str
    decimal: str
    decimals: int

    def format(self, amount: Decimal) -> str:
        amount = amount.quantize(Decimal(1).scaleb(-self.decimals))
        sign = "-" if amount < 0 else ""
        whole, _, frac = f"{abs(amount):f}".partition(".")
        groups = []
        while len(whole) > 3:
            groups.insert(0, whole[-3:])
            whole = whole[:-3]
        groups.insert(0, whole)
        text = self.group.join(groups)
        if self.decimals:
            text += self.decimal + frac
        return f"{sign}{self.prefix}{text}{self.suffix}"


NBSP, NNBSP = "\u00a0", "\u202f"
FORMATS: dict[str, PriceFormat] = {
    "en-US": PriceFormat("$", "", ",", ".", 2),
    "de-DE": PriceFormat("", f"{NBSP}€", ".", ",", 2),
    "en-GB": PriceFormat("£", "", ",", ".", 2),
    "ja-JP": PriceFormat("¥", "", ",", ".", 0),
    "de-CH": PriceFormat("CHF ", "", "'", ".", 2),
    "fr-FR": PriceFormat("", f"{NBSP}€", NNBSP, ",", 2),
    "sv-SE": PriceFormat("", f"{NBSP}kr", NBSP, ",", 2),
}


@dataclass(frozen=True)
class CompetitorKind:
    key: str
    display_name: str
    currency: str
    locale: str
    path: str  # product page path, "{handle}" replaced
    ending: int  # cents ending of retail prices (ignored for zero-decimal currencies)
    in_stock_text: str
    out_of_stock_text: str

    @property
    def price_format(self) -> PriceFormat:
        return FORMATS[self.locale]

    @property
    def sku_prefix(self) -> str:
        return "".join(word[0] for word in self.display_name.split() if word[0].isalpha()).upper()


COMPETITOR_KINDS: dict[str, CompetitorKind] = {
    k.key: k
    for k in (
        CompetitorKind("shopify", "Trailhead Outfitters", "USD", "en-US", "/products/{handle}", 99, "In stock", "Sold out"),
        CompetitorKind("jsonld-offer", "Bergsport Kaufhaus", "EUR", "de-DE", "/artikel/{handle}.html", 95, "Auf Lager", "Ausverkauft"),
        CompetitorKind("jsonld-offers", "Fell & Dale Supply", "GBP", "en-GB", "/product/{handle}", 0, "In stock", "Out of stock"),
        CompetitorKind("jsonld-aggregate", "Yamanote Gear Market", "JPY", "ja-JP", "/item/{handle}", 0, "在庫あり", "在庫切れ"),
        CompetitorKind("jsonld-pricespec", "Gipfelhaus Zürich", "CHF", "de-CH", "/de/p/{handle}", 90, "An Lager", "Nicht an Lager"),
        CompetitorKind("microdata", "Maison du Plein Air", "EUR", "fr-FR", "/produit/{handle}", 99, "En stock", "Rupture de stock"),
        CompetitorKind("opengraph", "Fjällbutiken", "SEK", "sv-SE", "/produkt/{handle}", 0, "I lager", "Slut i lager"),
    )
}
# Order in which tenants get competitors: the Shopify one first (most common in the
# wild), then the others rotate so a few tenants cover every markup kind.
_OTHER_KINDS = [k for k in COMPETITOR_KINDS if k != "shopify"]


# -- catalog of one competitor -----------------------------------------------------------------


@dataclass(eq=False)
class CompetitorItem:
    """One sellable thing at a competitor, mapped to one of our variants."""

    key: str  # stable identity used for hashing prices
    handle: str  # page handle (product handle for the Shopify kind)
    variant_id: int
    title: str
    variant_title: str
    sku: str  # the competitor's own SKU
    our_sku: str
    our_variant_id: str
    base_price: Decimal  # in the competitor's currency, before the daily factor
    position: int


@dataclass(eq=False)
class CompetitorProduct:
    handle: str
    product_id: int
    title: str
    vendor: str
    product_type: str
    tags: tuple[str, ...]
    items: list[CompetitorItem] = field(default_factory=list)


@dataclass(frozen=True)
class DailyOffer:
    price: Decimal  # what a shopper pays today
    regular_price: Decimal
    compare_at_price: Decimal | None  # regular price when on sale
    available: bool
    high_price: Decimal  # AggregateOffer highPrice (other marketplace sellers)


@dataclass(frozen=True)
class CompetitorListing:
    """A competitor URL that a tenant registers against one of its SKUs, with what a
    correct scraper must read there on ``day``."""

    tenant: str
    competitor: str  # competitor slug (fault rules match on it)
    competitor_name: str
    kind: str
    url: str
    our_sku: str
    our_variant_id: str
    expected_amount: Decimal
    expected_currency: str
    expected_compare_at: Decimal | None
    expected_available: bool
    day: dt.date


class CompetitorShop:
    def __init__(self, world: StorefrontWorld, tenant: str, kind: CompetitorKind, products: list[CompetitorProduct]):
        self.world = world
        self.tenant = tenant
        self.kind = kind
        self.slug = f"{tenant}-{kind.key}"
        self.name = kind.display_name
        self.currency = kind.currency
        self.products = products
        self._by_handle = {p.handle: p for p in products}
        self._items_by_handle = {i.handle: (p, i) for p in products for i in p.items}
        self.server = SandboxHTTPServer(_CompetitorApp(self), name=self.slug, host=world.host, control=world.control)

    def __repr__(self) -> str:
        return f"CompetitorShop({self.slug!r}, kind={self.kind.key!r}, items={sum(len(p.items) for p in self.products)})"

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def items(self) -> list[tuple[CompetitorProduct, CompetitorItem]]:
        return [(p, i) for p in self.products for i in p.items]

    def url_for(self, product: CompetitorProduct, item: CompetitorItem) -> str:
        if self.kind.key == "shopify":
            url = self.base_url + self.kind.path.format(handle=product.handle)
            return f"{url}?variant={item.variant_id}" if len(product.items) > 1 else url
        return self.base_url + self.kind.path.format(handle=item.handle)

    def offer(self, item: CompetitorItem, day: dt.date) -> DailyOffer:
        return daily_offer(self.slug, item, day, self.currency, self.kind.ending)


def daily_offer(shop_slug: str, item: CompetitorItem, day: dt.date, currency: str, ending: int) -> DailyOffer:
    factor_bp = 9500 + stable_int("day", shop_slug, item.key, day.isoformat()) % 1001  # 0.95 .. 1.05
    regular = retail_round(item.base_price * factor_bp / 10000, currency, ending)
    iso_year, iso_week, _ = day.isocalendar()
    on_sale = stable_int("sale", shop_slug, item.key, iso_year, iso_week) % 6 == 0
    price = regular
    if on_sale:
        pct = 75 + stable_int("sale-pct", shop_slug, item.key, iso_year, iso_week) % 16  # 75..90 %
        price = retail_round(regular * pct / 100, currency, ending)
        if price >= regular:
            on_sale, price = False, regular
    available = stable_int("stock", shop_slug, item.key, day.isoformat()) % 10 != 0
    high = retail_round(price * Decimal("1.12"), currency, ending)
    return DailyOffer(
        price=price,
        regular_price=regular,
        compare_at_price=regular if on_sale else None,
        available=available,
        high_price=max(high, price),
    )


def _competitor_catalog(tenant: str, kind: CompetitorKind, catalog: Sequence[CatalogVariant], coverage_pct: int) -> list[CompetitorProduct]:
    by_product: dict[str, list[CatalogVariant]] = {}
    for row in catalog:
        by_product.setdefault(row.product_external_id, []).append(row)
    products: list[CompetitorProduct] = []
    handles: set[str] = set()
    for product_gid, rows in by_product.items():
        if stable_int("carries", tenant, kind.key, product_gid) % 100 >= coverage_pct:
            continue
        rows = [r for r in rows if r.sku]  # a listing needs one of our SKUs to map to
        if not rows:
            continue
        first = rows[0]
        handle = base = slugify(first.product_title)
        n = 2
        while handle in handles:
            handle, n = f"{base}-{n}", n + 1
        handles.add(handle)
        product_id = 6_900_000_000_000 + stable_int("pid", kind.key, tenant, product_gid) % 99_000_000_000
        product = CompetitorProduct(
            handle=handle,
            product_id=product_id,
            title=first.product_title,
            vendor=first.vendor,
            product_type=first.product_type,
            tags=first.tags,
        )
        for position, row in enumerate(rows, start=1):
            markup_bp = 8800 + stable_int("markup", tenant, kind.key, row.variant_external_id) % 2701  # 0.88 .. 1.15
            in_usd = row.price / DEMO_FX_PER_USD[row.currency]
            base = retail_round(in_usd * DEMO_FX_PER_USD[kind.currency] * markup_bp / 10000, kind.currency, kind.ending)
            item_handle = handle if kind.key == "shopify" or len(rows) == 1 else f"{handle}-{slugify(row.variant_title)}"
            product.items.append(
                CompetitorItem(
                    key=f"{product_gid}|{row.variant_external_id}",
                    handle=item_handle,
                    variant_id=39_000_000_000_000 + stable_int("vid", kind.key, tenant, row.variant_external_id) % 9_000_000_000_000,
                    title=row.product_title,
                    variant_title=row.variant_title,
                    sku=f"{kind.sku_prefix}-{gid_number(row.variant_external_id) % 1_000_000:06d}",
                    our_sku=row.sku or "",
                    our_variant_id=row.variant_external_id,
                    base_price=base,
                    position=position,
                )
            )
        products.append(product)
    return products


# -- the world -----------------------------------------------------------------------------------


class StorefrontWorld:
    """All competitor storefronts of a sandbox; ``with StorefrontWorld() as world:``."""

    def __init__(self, *, seed: int = 0, host: str = "127.0.0.1", control: SandboxControl | None = None):
        self.seed = seed
        self.host = host
        self.control = control or SandboxControl(seed=seed)
        self._tenants: dict[str, tuple[list[CatalogVariant], list[CompetitorShop]]] = {}
        self._lock = threading.Lock()
        self._running = False

    @property
    def clock(self):
        return self.control.clock

    @property
    def faults(self):
        return self.control.faults

    def set_date(self, date: dt.date | str | None) -> None:
        self.control.clock.set_date(date)

    def today(self) -> dt.date:
        return self.control.clock.today()

    # -- tenants ------------------------------------------------------------------------------

    def add_tenant(
        self,
        tenant: str,
        catalog: Sequence[CatalogVariant],
        *,
        kinds: Sequence[str] | None = None,
        n_competitors: int = 4,
        coverage_pct: int = 65,
    ) -> list[CompetitorShop]:
        """Create the tenant's competitors (the Shopify one plus rotating HTML kinds)."""
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", tenant):
            raise ValueError(f"tenant name {tenant!r} must be lower-case letters, digits and dashes")
        with self._lock:
            if tenant in self._tenants:
                raise ValueError(f"tenant {tenant!r} already has storefronts")
            if kinds is None:
                offset = 3 * len(self._tenants)
                rotated = _OTHER_KINDS[offset % len(_OTHER_KINDS):] + _OTHER_KINDS[: offset % len(_OTHER_KINDS)]
                kinds = ["shopify", *rotated][: max(1, n_competitors)]
            shops = [
                CompetitorShop(self, tenant, COMPETITOR_KINDS[k], _competitor_catalog(tenant, COMPETITOR_KINDS[k], catalog, coverage_pct))
                for k in kinds
            ]
            self._tenants[tenant] = (list(catalog), shops)
            running = self._running
        if running:
            for shop in shops:
                shop.server.start()
        return shops

    def tenants(self) -> list[str]:
        return list(self._tenants)

    def competitors(self, tenant: str | None = None) -> list[CompetitorShop]:
        if tenant is not None:
            return list(self._tenants[tenant][1])
        return [shop for _, shops in self._tenants.values() for shop in shops]

    def competitor(self, slug: str) -> CompetitorShop:
        for shop in self.competitors():
            if shop.slug == slug:
                return shop
        raise KeyError(slug)

    def listings_for(self, tenant: str | Sequence[CatalogVariant], day: dt.date | None = None) -> list[CompetitorListing]:
        """Every competitor URL mapped to one of the tenant's SKUs, with today's expected offer.

        ``tenant`` is a tenant name or the catalog it was registered with.
        """
        name = tenant if isinstance(tenant, str) else self._tenant_of(tenant)
        day = day or self.today()
        listings = []
        for shop in self._tenants[name][1]:
            for product, item in shop.items():
                offer = shop.offer(item, day)
                listings.append(
                    CompetitorListing(
                        tenant=name,
                        competitor=shop.slug,
                        competitor_name=shop.name,
                        kind=shop.kind.key,
                        url=shop.url_for(product, item),
                        our_sku=item.our_sku,
                        our_variant_id=item.our_variant_id,
                        expected_amount=offer.price,
                        expected_currency=shop.currency,
                        expected_compare_at=offer.compare_at_price,
                        expected_available=offer.available,
                        day=day,
                    )
                )
        return listings

    def _tenant_of(self, catalog: Sequence[CatalogVariant]) -> str:
        wanted = list(catalog)
        for name, (registered, _) in self._tenants.items():
            if registered == wanted:
                return name
        raise KeyError("no tenant was registered with this catalog")

    @property
    def allowed_hosts(self) -> tuple[str, ...]:
        """``host:port`` of every storefront, for ``CALIBR_SANDBOX_ALLOWED_HOSTS``."""
        return tuple(shop.server.netloc for shop in self.competitors())

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> Self:
        with self._lock:
            self._running = True
            shops = self.competitors()
        for shop in shops:
            shop.server.start()
        return self

    def stop(self) -> None:
        with self._lock:
            self._running = False
            shops = self.competitors()
        # Each shutdown waits for its server's poll tick; in parallel that is one tick.
        stoppers = [threading.Thread(target=shop.server.stop, daemon=True) for shop in shops]
        for thread in stoppers:
            thread.start()
        for thread in stoppers:
            thread.join(timeout=10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- HTTP app of one competitor ------------------------------------------------------------------


class _CompetitorApp:
    def __init__(self, shop: CompetitorShop):
        self.shop = shop
        kind = shop.kind
        prefix, _, suffix = kind.path.partition("{handle}")
        self._page = re.compile("^" + re.escape(prefix) + r"(?P<handle>[a-z0-9-]+)" + re.escape(suffix) + "$")

    def shop_for(self, request: SandboxRequest) -> str | None:
        return self.shop.slug

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        shop = self.shop
        if request.method != "GET":
            return SandboxResponse.html(_not_found(shop), status=405)
        if request.path == "/robots.txt":
            return SandboxResponse(200, b"User-agent: *\nDisallow: /checkout\nDisallow: /cart\n", content_type="text/plain; charset=utf-8")
        day = shop.world.today()
        if shop.kind.key == "shopify":
            return self._shopify(request, day)
        match = self._page.match(request.path)
        found = shop._items_by_handle.get(match["handle"]) if match else None
        if found is None:
            return SandboxResponse.html(_not_found(shop), status=404)
        product, item = found
        offer = shop.offer(item, day)
        page = render_product_page(shop, product, item, offer, with_price=True)
        broken = render_product_page(shop, product, item, offer, with_price=False)
        return SandboxResponse.html(page, malformed_body=broken.encode("utf-8"))

    def _shopify(self, request: SandboxRequest, day: dt.date) -> SandboxResponse:
        shop = self.shop
        if request.path == "/cart.js":
            return SandboxResponse.json({"token": "sandbox", "note": None, "items": [], "item_count": 0, "total_price": 0, "currency": shop.currency})
        match = re.fullmatch(r"/products/(?P<handle>[a-z0-9-]+?)(?P<ext>\.json|\.js)?", request.path)
        product = shop._by_handle.get(match["handle"]) if match else None
        if product is None:
            if match and match["ext"]:
                return SandboxResponse.json({"errors": "Not Found"}, status=404)
            return SandboxResponse.html(_not_found(shop), status=404)
        offers = [(item, shop.offer(item, day)) for item in product.items]
        if match["ext"] == ".json":
            return SandboxResponse.json(_shopify_product_json(product, offers, shop.currency))
        if match["ext"] == ".js":
            return SandboxResponse.json(_shopify_product_js(product, offers))
        wanted = (request.query.get("variant") or [""])[0]
        item, offer = next(((i, o) for i, o in offers if str(i.variant_id) == wanted), offers[0])
        page = render_product_page(shop, product, item, offer, with_price=True)
        broken = render_product_page(shop, product, item, offer, with_price=False)
        return SandboxResponse.html(page, malformed_body=broken.encode("utf-8"))


def _money_str(amount: Decimal | None, currency: str) -> str | None:
    return None if amount is None else str(quantize(amount, currency))


def _shopify_cents(amount: Decimal | None) -> int | None:
    # Shopify's storefront .js API reports money ×100 whatever the currency's exponent.
    return None if amount is None else int((amount * 100).to_integral_value())


def _shopify_product_json(product: CompetitorProduct, offers: list[tuple[CompetitorItem, DailyOffer]], currency: str) -> dict[str, Any]:
    multi = len(product.items) > 1
    return {
        "product": {
            "id": product.product_id,
            "title": product.title,
            "handle": product.handle,
            "vendor": product.vendor,
            "product_type": product.product_type,
            "tags": ", ".join(product.tags),
            "body_html": f"<p>{html.escape(product.title)}</p>",
            "options": [{"name": "Option" if multi else "Title", "position": 1, "values": [i.variant_title for i in product.items]}],
            "variants": [
                {
                    "id": item.variant_id,
                    "product_id": product.product_id,
                    "title": item.variant_title,
                    "option1": item.variant_title,
                    "sku": item.sku,
                    "position": item.position,
                    "price": _money_str(offer.price, currency),
                    "compare_at_price": _money_str(offer.compare_at_price, currency),
                    "available": offer.available,
                    "requires_shipping": True,
                    "taxable": True,
                }
                for item, offer in offers
            ],
        }
    }


def _shopify_product_js(product: CompetitorProduct, offers: list[tuple[CompetitorItem, DailyOffer]]) -> dict[str, Any]:
    prices = [o.price for _, o in offers]
    compare = [o.compare_at_price for _, o in offers if o.compare_at_price is not None]
    return {
        "id": product.product_id,
        "title": product.title,
        "handle": product.handle,
        "vendor": product.vendor,
        "type": product.product_type,
        "tags": list(product.tags),
        "available": any(o.available for _, o in offers),
        "price": _shopify_cents(min(prices)),
        "price_min": _shopify_cents(min(prices)),
        "price_max": _shopify_cents(max(prices)),
        "compare_at_price": _shopify_cents(min(compare)) if compare else None,
        "variants": [
            {
                "id": item.variant_id,
                "title": item.variant_title,
                "public_title": None if len(product.items) == 1 else item.variant_title,
                "name": product.title if len(product.items) == 1 else f"{product.title} - {item.variant_title}",
                "option1": item.variant_title,
                "sku": item.sku,
                "available": offer.available,
                "price": _shopify_cents(offer.price),
                "compare_at_price": _shopify_cents(offer.compare_at_price),
            }
            for item, offer in offers
        ],
    }


# -- HTML rendering ----------------------------------------------------------------------------------


def _availability(offer: DailyOffer) -> str:
    return f"{SCHEMA_ORG}/{'InStock' if offer.available else 'OutOfStock'}"


def _plain(amount: Decimal, currency: str) -> str:
    """Machine-readable amount for structured data: ``1299.00`` / ``12000``."""
    return f"{quantize(amount, currency):f}"


def _jsonld(data: dict[str, Any]) -> str:
    text = json.dumps(data, ensure_ascii=False, indent=2)
    # Markers become bare JSON numbers: some shops emit prices as numbers, and
    # json.dumps cannot write a Decimal without going through float.
    text = re.sub(r'"@@num:([0-9.]+)@@"', r"\1", text)
    return '<script type="application/ld+json">\n' + text.replace("</", "<\\/") + "\n</script>"


def _visible_price(shop: CompetitorShop, offer: DailyOffer) -> str:
    fmt = shop.kind.price_format
    if offer.compare_at_price is not None:
        return (
            f'<span class="price price--sale">{html.escape(fmt.format(offer.price))}</span> '
            f'<s class="price price--regular">{html.escape(fmt.format(offer.compare_at_price))}</s>'
        )
    return f'<span class="price">{html.escape(fmt.format(offer.price))}</span>'


def render_product_page(shop: CompetitorShop, product: CompetitorProduct, item: CompetitorItem, offer: DailyOffer, *, with_price: bool) -> str:
    """A product page in the shop's markup kind; ``with_price=False`` is the broken page a
    "malformed" fault serves (same layout, no price anywhere)."""
    kind, cur = shop.kind, shop.currency
    name = item.title if len(product.items) == 1 or kind.key == "shopify" else f"{item.title} – {item.variant_title}"
    head: list[str] = [
        f'<meta property="og:title" content="{html.escape(name)}">',
        f'<meta property="og:site_name" content="{html.escape(shop.name)}">',
    ]
    body_offer = ""
    product_ld: dict[str, Any] = {
        "@context": SCHEMA_ORG,
        "@type": "Product",
        "name": name,
        "sku": item.sku,
        "brand": {"@type": "Brand", "name": product.vendor},
        "category": product.product_type,
    }
    if with_price:
        if kind.key == "shopify":
            head += [
                '<meta property="og:type" content="product">',
                # Shopify themes print og:price:amount with money_without_currency,
                # thousands separators included.
                f'<meta property="og:price:amount" content="{html.escape(kind.price_format.format(offer.price).lstrip("$"))}">',
                f'<meta property="og:price:currency" content="{cur}">',
            ]
        elif kind.key == "jsonld-offer":
            product_ld["offers"] = {
                "@type": "Offer",
                "price": _plain(offer.price, cur),
                "priceCurrency": cur,
                "availability": _availability(offer),
                "itemCondition": f"{SCHEMA_ORG}/NewCondition",
            }
            head.append(_jsonld(product_ld))
        elif kind.key == "jsonld-offers":
            product_ld["offers"] = [
                {
                    "@type": "Offer",
                    "price": f"@@num:{_plain(offer.price, cur)}@@",
                    "priceCurrency": cur,
                    "availability": _availability(offer),
                    "seller": {"@type": "Organization", "name": shop.name},
                }
            ]
            head.append(_jsonld(product_ld))
        elif kind.key == "jsonld-aggregate":
            product_ld["offers"] = {
                "@type": "AggregateOffer",
                "lowPrice": _plain(offer.price, cur),
                "highPrice": _plain(offer.high_price, cur),
                "priceCurrency": cur,
                "offerCount": 3,
                "availability": _availability(offer),
            }
            head.append(_jsonld(product_ld))
        elif kind.key == "jsonld-pricespec":
            specs: list[dict[str, Any]] = [{"@type": "UnitPriceSpecification", "price": _plain(offer.price, cur), "priceCurrency": cur}]
            if offer.compare_at_price is not None:
                specs.append(
                    {
                        "@type": "UnitPriceSpecification",
                        "priceType": f"{SCHEMA_ORG}/ListPrice",
                        "price": _plain(offer.compare_at_price, cur),
                        "priceCurrency": cur,
                    }
                )
            product_ld["offers"] = {
                "@type": "Offer",
                "availability": _availability(offer),
                "priceSpecification": specs if len(specs) > 1 else specs[0],
            }
            head.append(_jsonld(product_ld))
        elif kind.key == "microdata":
            body_offer = (
                '<div itemprop="offers" itemscope itemtype="https://schema.org/Offer">'
                f'<span itemprop="price" content="{_plain(offer.price, cur)}">{html.escape(kind.price_format.format(offer.price))}</span>'
                f'<meta itemprop="priceCurrency" content="{cur}">'
                f'<link itemprop="availability" href="{_availability(offer)}">'
                "</div>"
            )
        elif kind.key == "opengraph":
            head += [
                '<meta property="og:type" content="product">',
                f'<meta property="product:price:amount" content="{_plain(offer.price, cur)}">',
                f'<meta property="product:price:currency" content="{cur}">',
                f'<meta property="product:availability" content="{"in stock" if offer.available else "out of stock"}">',
            ]
            if offer.compare_at_price is not None:
                head += [
                    f'<meta property="product:original_price:amount" content="{_plain(offer.compare_at_price, cur)}">',
                    f'<meta property="product:original_price:currency" content="{cur}">',
                ]
    else:
        if kind.key.startswith("jsonld"):
            head.append(_jsonld(product_ld))  # the block is there, the offer is not

    if not with_price:
        visible = ""
    elif kind.key == "microdata":
        # The price itself sits in the itemprop element; only the struck regular price is extra.
        regular = offer.compare_at_price
        visible = "" if regular is None else f' <s class="price price--regular">{html.escape(kind.price_format.format(regular))}</s>'
    else:
        visible = _visible_price(shop, offer)
    stock = kind.in_stock_text if offer.available else kind.out_of_stock_text
    threshold = retail_round(DEMO_FX_PER_USD[cur] * 49, cur, 0)
    # A second amount on the page, as on real shops; left out of the broken page, which
    # must carry no price at all.
    footer = (
        f'<footer><p class="shipping-note">Free shipping from {html.escape(kind.price_format.format(threshold))}</p></footer>'
        if with_price
        else "<footer></footer>"
    )
    microdata_open = ' itemscope itemtype="https://schema.org/Product"' if kind.key == "microdata" else ""
    return f"""<!doctype html>
<html lang="{kind.locale}">
<head>
<meta charset="utf-8">
<title>{html.escape(name)} | {html.escape(shop.name)}</title>
{chr(10).join(head)}
</head>
<body>
<header><a href="/">{html.escape(shop.name)}</a></header>
<main class="product"{microdata_open}>
<h1 class="product__title"{' itemprop="name"' if microdata_open else ""}>{html.escape(name)}</h1>
<p class="product__vendor">{html.escape(product.vendor)}</p>
<div class="product__price">{body_offer}{visible}</div>
<p class="product__stock">{html.escape(stock)}</p>
<p class="product__sku">SKU {html.escape(item.sku)}</p>
</main>
{footer}
</body>
</html>
"""


def _not_found(shop: CompetitorShop) -> str:
    return f"<!doctype html><html><head><title>404 | {html.escape(shop.name)}</title></head><body><h1>Page not found</h1></body></html>"

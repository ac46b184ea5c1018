"""Deterministic demo catalogs: realistic products, exact prices.

Everything is drawn from ``random.Random(f"{shop_name}:{seed}")`` (string seeds are
hashed with SHA-512, so runs agree regardless of ``PYTHONHASHSEED``), and every amount
is integer minor units turned into ``Decimal``: no float ever touches a price.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal

from calibr_pipeline.domain.catalog import CatalogVariant
from calibr_pipeline.domain.money import from_minor_units, minor_unit_exponent, quantize

# Demo exchange rates (units of currency per 1 USD). Fixed on purpose: demo prices must
# not drift with a real rate feed.
DEMO_FX_PER_USD: dict[str, Decimal] = {
    "USD": Decimal(1),
    "EUR": Decimal("0.92"),
    "GBP": Decimal("0.79"),
    "JPY": Decimal(151),
    "CHF": Decimal("0.88"),
    "SEK": Decimal("10.60"),
    "CAD": Decimal("1.37"),
    "AUD": Decimal("1.52"),
}


@dataclass(frozen=True)
class _Category:
    product_type: str
    code: str
    usd_range: tuple[int, int]  # whole dollars
    nouns: tuple[str, ...]
    axis: tuple[str, ...]  # variant option values
    vendors: tuple[str, ...]
    tags: tuple[str, ...]


_CATEGORIES: tuple[_Category, ...] = (
    _Category("Jackets", "JKT", (89, 349), ("Insulated Jacket", "Rain Shell", "Down Parka", "Softshell Jacket"),
              ("S", "M", "L", "XL"), ("Nordhaven", "Alpine Forge"), ("outerwear", "waterproof")),
    _Category("Backpacks", "BPK", (49, 229), ("Daypack 24L", "Travel Pack 40L", "Hydration Pack", "Trail Pack 32L"),
              ("Black", "Forest Green", "Slate Blue", "Rust"), ("Summit Supply Co.", "Nordhaven"), ("bags", "hiking")),
    _Category("Tents", "TNT", (149, 899), ("Dome Tent", "Ultralight Tent", "Tunnel Tent"),
              ("2-Person", "3-Person", "4-Person"), ("Alpine Forge", "Summit Supply Co."), ("camping", "shelter")),
    _Category("Sleeping Bags", "SLP", (79, 459), ("Down Sleeping Bag", "Synthetic Sleeping Bag", "Quilt"),
              ("Regular", "Long"), ("Nordhaven", "Cobalt & Pine"), ("camping", "sleep")),
    _Category("Headlamps", "HLM", (19, 89), ("Headlamp 400", "Headlamp 900", "Rechargeable Headlamp"),
              ("Black", "Orange", "Teal"), ("Lumen Works",), ("lighting", "camping")),
    _Category("Espresso Machines", "ESP", (399, 2499), ("Espresso Machine", "Dual Boiler Espresso", "Lever Espresso"),
              ("Stainless", "Matte Black"), ("Brava Coffee Works", "Hearthline"), ("coffee", "kitchen", "premium")),
    _Category("E-Bikes", "EBK", (1299, 3999), ("Commuter E-Bike", "Trail E-Bike", "Folding E-Bike"),
              ("M", "L"), ("Velotrek",), ("cycling", "premium")),
    _Category("Kitchen Knives", "KNF", (39, 289), ("Chef Knife", "Santoku", "Bread Knife"),
              ("20 cm", "25 cm"), ("Hearthline", "Cobalt & Pine"), ("kitchen", "cutlery")),
    _Category("Water Bottles", "BTL", (14, 49), ("Insulated Bottle", "Trail Bottle", "Flask"),
              ("500 ml", "750 ml", "1 l"), ("Summit Supply Co.", "Cobalt & Pine"), ("hydration",)),
    _Category("Running Shoes", "RUN", (89, 199), ("Trail Runner", "Road Runner", "Racing Flat"),
              ("US 8", "US 9", "US 10", "US 11"), ("Velotrek", "Nordhaven"), ("footwear", "running")),
)
_ADJECTIVES = (
    "Ridgeline", "Aurora", "Basecamp", "Granite", "Tundra", "Cascade", "Ember", "Fjord",
    "Meridian", "Pioneer", "Sierra", "Solstice", "Timberline", "Vista", "Zephyr", "Harbor",
)
_EXTRA_TAGS = ("new", "bestseller", "sustainable", "gift-idea", "limited", "clearance")
_PRODUCT_ID_BASE = 7_400_000_000_000
_VARIANT_ID_BASE = 42_100_000_000_000


def product_gid(numeric_id: int) -> str:
    return f"gid://shopify/Product/{numeric_id}"


def variant_gid(numeric_id: int) -> str:
    return f"gid://shopify/ProductVariant/{numeric_id}"


def gid_number(gid: str) -> int:
    return int(gid.rsplit("/", 1)[-1])


def slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def stable_int(*parts: object) -> int:
    """A process-independent hash (``hash()`` is salted per process)."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


def convert_usd(amount_usd: Decimal, currency: str) -> Decimal:
    try:
        rate = DEMO_FX_PER_USD[currency]
    except KeyError as exc:
        raise ValueError(f"no demo exchange rate for {currency}; known: {sorted(DEMO_FX_PER_USD)}") from exc
    return amount_usd * rate


def retail_round(amount: Decimal, currency: str, ending: int) -> Decimal:
    """Round to a price a shop would print: whole yen in tens/hundreds, else x.99 / x.95 / x.50 / x.00.

    ``ending`` is the cents part to use (99, 95, 50 or 0) for two-decimal currencies.
    """
    if minor_unit_exponent(currency) == 0:
        step = Decimal(100) if amount >= 1000 else Decimal(10)
        rounded = (amount / step).to_integral_value() * step
        return max(rounded, step)
    whole = amount.to_integral_value(rounding=ROUND_FLOOR)
    if whole < 1:
        whole = Decimal(1)
    return quantize(whole + Decimal(ending).scaleb(-2), currency)


def generate_demo_catalog(shop_name: str, n_variants: int, seed: int = 0, currency: str = "USD") -> list[CatalogVariant]:
    """``n_variants`` rows in product-id then variant-position order (the order the
    Admin API connector reads them back in), 1–4 variants per product, cost < price,
    about one product in five with a compare-at price, a few variants without a cost.
    """
    if n_variants < 0:
        raise ValueError("n_variants must be >= 0")
    rng = random.Random(f"{shop_name}:{seed}")
    next_product = _PRODUCT_ID_BASE + stable_int("product-base", shop_name, seed) % 10_000_000 * 1000
    next_variant = _VARIANT_ID_BASE + stable_int("variant-base", shop_name, seed) % 10_000_000 * 1000
    rows: list[CatalogVariant] = []
    titles: set[str] = set()
    while len(rows) < n_variants:
        category = rng.choice(_CATEGORIES)
        title = f"{rng.choice(_ADJECTIVES)} {rng.choice(category.nouns)}"
        generation = 2
        base_title = title
        while title in titles:
            title = f"{base_title} {generation}"
            generation += 1
        titles.add(title)
        vendor = rng.choice(category.vendors)
        tags = sorted({*category.tags, *rng.sample(_EXTRA_TAGS, rng.randint(0, 2))})
        n_here = min(rng.randint(1, min(4, len(category.axis))), n_variants - len(rows))
        options = category.axis[:n_here] if n_here > 1 else ()
        next_product += rng.randint(1, 40)
        product_id = product_gid(next_product)
        base_cents = rng.randint(category.usd_range[0] * 100, category.usd_range[1] * 100)
        ending = rng.choice((99, 99, 95, 50, 0))
        on_sale = rng.random() < 0.2
        code = f"{category.code}-{len(titles):04d}"
        for position in range(max(1, n_here)):
            option = options[position] if options else None
            # Bigger sizes/capacities cost a little more, as in real catalogs.
            step_pct = 100 + position * rng.choice((0, 5, 10))
            usd = Decimal(base_cents * step_pct).scaleb(-4)
            price = retail_round(convert_usd(usd, currency), currency, ending)
            compare_at = None
            if on_sale:
                uplift = rng.randint(110, 140)
                compare_at = retail_round(price * uplift / 100, currency, 0 if ending == 0 else 99)
                if compare_at <= price:
                    compare_at = None
            cost = None
            if rng.random() >= 0.03:
                cost_pct = rng.randint(35, 70)
                minor = int((price * cost_pct / 100).scaleb(minor_unit_exponent(currency)).to_integral_value(rounding=ROUND_FLOOR))
                cost = from_minor_units(max(minor, 1), currency)
            next_variant += rng.randint(1, 9)
            sku = f"{code}-{slugify(option).upper()}" if option else code
            rows.append(
                CatalogVariant(
                    product_external_id=product_id,
                    product_title=title,
                    product_type=category.product_type,
                    vendor=vendor,
                    tags=tuple(tags),
                    variant_external_id=variant_gid(next_variant),
                    sku=sku,
                    variant_title=option or "Default Title",
                    price=price,
                    compare_at_price=compare_at,
                    cost=cost,
                    currency=currency,
                )
            )
    return rows

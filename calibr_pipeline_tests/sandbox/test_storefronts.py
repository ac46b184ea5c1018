"""Competitor storefronts over real HTTP: payload shapes, formats, daily prices."""

from __future__ import annotations

import datetime as dt
import html as htmllib
import json
import re
from decimal import Decimal

import pytest
import requests

from calibr_pipeline.domain.money import minor_unit_exponent
from calibr_pipeline.sandbox.demo_catalog import generate_demo_catalog
from calibr_pipeline.sandbox.storefronts import (
    COMPETITOR_KINDS,
    FORMATS,
    StorefrontWorld,
)

pytestmark = pytest.mark.integration

DAY = dt.date(2025, 3, 3)
CATALOG = generate_demo_catalog("acme", 80, seed=5, currency="USD")


@pytest.fixture(scope="module")
def world():
    with StorefrontWorld(seed=5) as w:
        w.add_tenant("acme", CATALOG, kinds=list(COMPETITOR_KINDS))
        yield w


@pytest.fixture(autouse=True)
def pinned_day(world):
    world.set_date(DAY)
    world.faults.clear()
    yield
    world.faults.clear()


def jsonld(page: str) -> dict:
    block = re.search(r'<script type="application/ld\+json">(.*?)</script>', page, re.DOTALL)
    assert block, "no JSON-LD block"
    return json.loads(block.group(1), parse_float=Decimal)


def meta(page: str, prop: str) -> str | None:
    m = re.search(rf'<meta (?:property|itemprop)="{re.escape(prop)}" content="([^"]*)"', page)
    return htmllib.unescape(m.group(1)) if m else None


def listings(world, kind, day=None):
    found = [l for l in world.listings_for("acme", day) if l.kind == kind]
    assert found, kind
    return found


def test_listings_map_competitor_urls_to_our_skus(world):
    all_listings = world.listings_for("acme")
    our_skus = {row.sku for row in CATALOG}
    assert {l.kind for l in all_listings} == set(COMPETITOR_KINDS)
    assert all(l.our_sku in our_skus for l in all_listings)
    assert all(l.day == DAY for l in all_listings)
    # every competitor carries only part of our range, and one URL per (competitor, SKU)
    for slug in {l.competitor for l in all_listings}:
        mine = [l for l in all_listings if l.competitor == slug]
        assert 0 < len(mine) < len(CATALOG)
        assert len({l.our_sku for l in mine}) == len({l.url for l in mine}) == len(mine)
    assert world.listings_for(CATALOG) == all_listings  # lookup by catalog works too
    currencies = {l.kind: l.expected_currency for l in all_listings}
    assert currencies == {"shopify": "USD", "jsonld-offer": "EUR", "jsonld-offers": "GBP", "jsonld-aggregate": "JPY",
                          "jsonld-pricespec": "CHF", "microdata": "EUR", "opengraph": "SEK"}
    for l in all_listings:
        assert l.expected_amount == l.expected_amount.quantize(Decimal(1).scaleb(-minor_unit_exponent(l.expected_currency)))
        assert l.expected_amount > 0
        assert l.expected_compare_at is None or l.expected_compare_at > l.expected_amount


def test_shopify_json_and_js_payloads(world):
    for listing in listings(world, "shopify"):
        base = listing.url.split("?")[0]
        product = requests.get(base + ".json", timeout=5).json()["product"]
        js = requests.get(base + ".js", timeout=5).json()
        variant_id = int(listing.url.split("variant=")[1]) if "variant=" in listing.url else product["variants"][0]["id"]
        variant = next(v for v in product["variants"] if v["id"] == variant_id)
        js_variant = next(v for v in js["variants"] if v["id"] == variant_id)
        assert isinstance(variant["price"], str) and Decimal(variant["price"]) == listing.expected_amount
        assert variant["compare_at_price"] == (None if listing.expected_compare_at is None else str(listing.expected_compare_at))
        assert variant["available"] is js_variant["available"] is listing.expected_available
        assert js_variant["price"] == int(listing.expected_amount * 100)  # integer cents
        assert js_variant["compare_at_price"] == (None if listing.expected_compare_at is None else int(listing.expected_compare_at * 100))
        assert set(product) >= {"id", "title", "handle", "vendor", "product_type", "variants"}
        assert js["price"] == min(v["price"] for v in js["variants"])
    some = listings(world, "shopify")[0].url.split("?")[0]
    assert requests.get(some.rsplit("/", 1)[0] + "/nope.json", timeout=5).status_code == 404
    cart = requests.get(some.split("/products/")[0] + "/cart.js", timeout=5).json()
    assert cart["currency"] == "USD"


def test_shopify_html_page_carries_og_price_of_the_selected_variant(world):
    listing = max(listings(world, "shopify"), key=lambda l: l.expected_amount)
    page = requests.get(listing.url, timeout=5).text
    assert meta(page, "og:price:currency") == "USD"
    # Shopify themes print money_without_currency: thousands separators included.
    assert Decimal(meta(page, "og:price:amount").replace(",", "")) == listing.expected_amount
    assert FORMATS["en-US"].format(listing.expected_amount) in page


@pytest.mark.parametrize("kind", [k for k in COMPETITOR_KINDS if k != "shopify"])
def test_html_pages_carry_the_expected_offer(world, kind):
    fmt = COMPETITOR_KINDS[kind].price_format
    for listing in listings(world, kind):
        response = requests.get(listing.url, timeout=5)
        assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/html")
        page = response.text
        availability = "https://schema.org/" + ("InStock" if listing.expected_available else "OutOfStock")
        if kind.startswith("jsonld"):
            offers = jsonld(page)["offers"]
            if kind == "jsonld-offer":
                assert Decimal(offers["price"]) == listing.expected_amount and offers["priceCurrency"] == listing.expected_currency
                assert offers["availability"] == availability
            elif kind == "jsonld-offers":
                assert isinstance(offers, list) and len(offers) == 1
                assert offers[0]["price"] == listing.expected_amount  # a bare JSON number
                assert offers[0]["availability"] == availability
            elif kind == "jsonld-aggregate":
                assert offers["@type"] == "AggregateOffer"
                assert Decimal(offers["lowPrice"]) == listing.expected_amount <= Decimal(offers["highPrice"])
            elif kind == "jsonld-pricespec":
                specs = offers["priceSpecification"]
                specs = specs if isinstance(specs, list) else [specs]
                current = [s for s in specs if "priceType" not in s]
                list_price = [s for s in specs if s.get("priceType") == "https://schema.org/ListPrice"]
                assert Decimal(current[0]["price"]) == listing.expected_amount
                assert (Decimal(list_price[0]["price"]) if list_price else None) == listing.expected_compare_at
        elif kind == "microdata":
            m = re.search(r'itemprop="price" content="([^"]+)">([^<]+)<', page)
            assert Decimal(m.group(1)) == listing.expected_amount
            assert htmllib.unescape(m.group(2)) == fmt.format(listing.expected_amount)
            assert f'<meta itemprop="priceCurrency" content="{listing.expected_currency}">' in page
            assert f'href="{availability}"' in page
        elif kind == "opengraph":
            assert Decimal(meta(page, "product:price:amount")) == listing.expected_amount
            assert meta(page, "product:price:currency") == listing.expected_currency
            original = meta(page, "product:original_price:amount")
            assert (Decimal(original) if original else None) == listing.expected_compare_at
        # the visible text uses the shop's local format
        assert fmt.format(listing.expected_amount) in htmllib.unescape(page)
        if listing.expected_compare_at is not None:
            assert f"<s class=\"price price--regular\">{htmllib.escape(fmt.format(listing.expected_compare_at))}</s>" in page


def test_local_number_formats():
    amount = Decimal("1299.00")
    assert FORMATS["en-US"].format(amount) == "$1,299.00"
    assert FORMATS["de-DE"].format(amount) == "1.299,00\u00a0€"
    assert FORMATS["en-GB"].format(amount) == "£1,299.00"
    assert FORMATS["ja-JP"].format(Decimal(12000)) == "¥12,000"
    assert FORMATS["de-CH"].format(amount) == "CHF 1'299.00"
    assert FORMATS["fr-FR"].format(Decimal("1234567.5")) == "1\u202f234\u202f567,50\u00a0€"
    assert FORMATS["sv-SE"].format(Decimal(999)) == "999,00\u00a0kr"


def test_thousands_separators_appear_in_visible_text(world):
    expensive = [l for l in world.listings_for("acme") if l.expected_amount >= 1000]
    assert {l.kind for l in expensive} >= {"jsonld-aggregate"}  # yen prices are always in the thousands
    for listing in expensive[:10]:
        page = htmllib.unescape(requests.get(listing.url, timeout=5).text)
        assert COMPETITOR_KINDS[listing.kind].price_format.format(listing.expected_amount) in page


def test_prices_move_from_day_to_day_deterministically(world):
    monday = {l.url: l.expected_amount for l in world.listings_for("acme", DAY)}
    tuesday = {l.url: l.expected_amount for l in world.listings_for("acme", DAY + dt.timedelta(days=1))}
    assert monday.keys() == tuesday.keys()
    moved = sum(monday[u] != tuesday[u] for u in monday)
    assert moved > len(monday) * 0.5
    for url, amount in monday.items():  # small moves only (±5 % plus retail rounding; sales start on Mondays)
        ratio = tuesday[url] / amount
        assert Decimal("0.70") < ratio < Decimal("1.40")
    assert {l.url: l.expected_amount for l in world.listings_for("acme", DAY)} == monday

    listing = listings(world, "jsonld-offer")[0]
    world.set_date(DAY + dt.timedelta(days=1))
    assert Decimal(jsonld(requests.get(listing.url, timeout=5).text)["offers"]["price"]) == tuesday[listing.url]


def test_clock_can_be_set_over_http(world):
    listing = listings(world, "opengraph")[0]
    base = listing.url.split("/produkt/")[0]
    other_day = dt.date(2025, 7, 14)
    answer = requests.post(f"{base}/__sandbox/clock", json={"date": other_day.isoformat()}, timeout=5).json()
    assert answer == {"date": "2025-07-14", "pinned": True}
    assert world.today() == other_day
    expected = next(l for l in world.listings_for("acme", other_day) if l.url == listing.url)
    assert Decimal(meta(requests.get(listing.url, timeout=5).text, "product:price:amount")) == expected.expected_amount
    assert requests.post(f"{base}/__sandbox/clock", json={"date": None}, timeout=5).json()["pinned"] is False
    assert world.today() == dt.datetime.now(dt.UTC).date()


def test_sales_and_stock_outs_happen(world):
    days = [DAY + dt.timedelta(days=i) for i in range(14)]
    everything = [l for d in days for l in world.listings_for("acme", d)]
    assert any(l.expected_compare_at is not None for l in everything)
    out = [l for l in everything if not l.expected_available]
    assert 0.03 < len(out) / len(everything) < 0.2
    sample = next(l for l in out if l.kind == "jsonld-offer")
    world.set_date(sample.day)
    page = requests.get(sample.url, timeout=5).text
    assert jsonld(page)["offers"]["availability"] == "https://schema.org/OutOfStock"
    assert "Ausverkauft" in page


def test_unknown_pages_are_404(world):
    shop = world.competitor("acme-microdata")
    assert requests.get(shop.base_url + "/produit/does-not-exist", timeout=5).status_code == 404
    assert requests.get(shop.base_url + "/robots.txt", timeout=5).text.startswith("User-agent: *")


def test_competitors_are_separate_hosts(world):
    hosts = world.allowed_hosts
    assert len(hosts) == len(set(hosts)) == len(COMPETITOR_KINDS)
    assert all(h.startswith("127.0.0.1:") for h in hosts)

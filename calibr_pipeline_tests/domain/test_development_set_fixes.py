"""Extraction rules added while growing the development set (fixtures/pages/), each checked on
the vendored page that showed the gap and on a minimal page that isolates the rule."""

import json
from decimal import Decimal

import pytest

from calibr_pipeline.domain.errors import ErrorClass, ExtractionError
from calibr_pipeline.domain.offer_extraction import extract_offer
from calibr_pipeline_tests.extraction_report import PAGES

MANIFEST = {e["file"]: e for e in json.loads((PAGES / "manifest.json").read_text(encoding="utf-8"))}


def vendored(name: str) -> tuple[bytes, str]:
    entry = MANIFEST[name]
    return (PAGES / "pages" / name).read_bytes(), entry.get("url") or "https://reference.example/product"


# ------------------------------------------------------ a page without a price still states stock


def test_sold_out_page_without_price_refuses_the_price_but_states_out_of_stock():
    html, url = vendored("amazon_mx_out_of_stock_no_price.html")
    with pytest.raises(ExtractionError) as refused:
        extract_offer(html, url)
    assert refused.value.error_class is ErrorClass.PARSE_NO_PRICE
    assert refused.value.availability == "OutOfStock"


def test_bot_wall_states_neither_price_nor_stock():
    html, url = vendored("amazon_mx_robot_check_page.html")
    with pytest.raises(ExtractionError) as refused:
        extract_offer(html, url)
    assert (refused.value.error_class, refused.value.availability) == (ErrorClass.PARSE_NO_PRICE, None)


def test_structured_stock_state_of_a_price_less_offer_is_kept():
    html = (
        '<html><head><script type="application/ld+json">{"@type": "Product", "name": "Tent",'
        ' "offers": {"@type": "Offer", "priceCurrency": "EUR", "availability": "https://schema.org/OutOfStock"}}'
        "</script></head><body><h1>Tent</h1></body></html>"
    )
    with pytest.raises(ExtractionError) as refused:
        extract_offer(html, "https://shop.example/p/tent")
    assert (refused.value.error_class, refused.value.availability) == (ErrorClass.PARSE_NO_PRICE, "OutOfStock")


def test_a_priced_page_is_unchanged():
    html, url = vendored("amazon_mx_in_stock_bare_dollar.html")
    offer = extract_offer(html, url)
    assert (offer.amount, offer.currency, offer.availability) == (Decimal("8999.00"), "MXN", "InStock")


# ------------------------------------------------------ stock wording in more languages


def test_dutch_niet_verkrijgbaar_is_out_of_stock_and_choose_an_option_says_nothing():
    html, url = vendored("amazon_nl_out_of_stock_no_price.html")
    with pytest.raises(ExtractionError) as sold_out:
        extract_offer(html, url)
    assert sold_out.value.availability == "OutOfStock"  # "Momenteel niet verkrijgbaar"
    html, url = vendored("amazon_nl_variation_parent_no_price.html")
    with pytest.raises(ExtractionError) as parent:
        extract_offer(html, url)
    # "Kies een optie om de beschikbaarheid te zien": no price and no stock state until a size is chosen
    assert (parent.value.error_class, parent.value.availability) == (ErrorClass.PARSE_NO_PRICE, None)


@pytest.mark.parametrize(
    "wording, expected",
    [
        ("Momenteel niet verkrijgbaar", "OutOfStock"),
        ("Niet beschikbaar", "OutOfStock"),
        ("Není skladem", "OutOfStock"),
        ("Skladem", "InStock"),
        ("Produkt wyprzedany", "OutOfStock"),
        ("Stokta yok", "OutOfStock"),
        ("Stokta", "InStock"),
        ("Ej i lager", "OutOfStock"),
        ("I lager", "InStock"),
        ("Немає в наявності", "OutOfStock"),
        ("В наявності", "InStock"),
        ("売り切れ", "OutOfStock"),
        ("无货", "OutOfStock"),
        ("北京有货", "InStock"),
    ],
)
def test_stock_wording(wording, expected):
    html = (
        '<html><body><h1>Lamp</h1><span class="price">19,99 €</span>'
        f'<div class="availability">{wording}</div></body></html>'
    )
    assert extract_offer(html, "https://shop.example/p/lamp").availability == expected


# ------------------------------------------------------ a price written in whole and fraction parts


def test_split_whole_fraction_price_without_currency_is_refused_but_stock_is_kept():
    html, url = vendored("amazon_com_dom_only_no_symbol.html")
    with pytest.raises(ExtractionError) as refused:
        extract_offer(html, url)
    # "149" + "99" is read as one amount, but nothing on the page says which currency: refuse.
    assert refused.value.error_class is ErrorClass.CURRENCY_UNKNOWN
    assert refused.value.availability == "InStock"
    # Told the currency, the lone price-like block (no symbol, no H1, no buy button) is still too
    # weak evidence for a price: refused, with the stock state.
    with pytest.raises(ExtractionError) as weak:
        extract_offer(html, url, currency_hint="USD")
    assert (weak.value.error_class, weak.value.availability) == (ErrorClass.PARSE_NO_PRICE, "InStock")


@pytest.mark.parametrize(
    "price_html, amount, currency",
    [
        (
            '<span class="a-price"><span class="a-price-symbol">€</span><span class="a-price-whole">1.299,</span>'
            '<span class="a-price-fraction">95</span></span>',
            "1299.95",
            "EUR",
        ),
        (
            '<div class="price"><span class="price-integer">49</span>\n<span class="price-decimal">90</span>\n'
            '<span class="price-currency">zł</span></div>',
            "49.90",
            "PLN",
        ),
    ],
)
def test_split_price_parts_with_a_symbol(price_html, amount, currency):
    html = f"<html><body><h1>Kettle</h1>{price_html}<button>Add to cart</button></body></html>"
    offer = extract_offer(html, "https://shop.example/p/kettle")
    assert (offer.amount, offer.currency) == (Decimal(amount), currency)
    if currency == "PLN":  # its text reads "49 90 zł": only the parts make it one number
        assert any("whole and fraction parts" in e for e in offer.evidence)


def test_two_whole_parts_are_not_joined_into_one_price():
    html = (
        '<html><body><h1>Kettle</h1><div class="price"><span class="price-whole">49</span>'
        '<span class="price-fraction">90</span> <span class="price-whole">59</span>'
        '<span class="price-fraction">90</span> €</div></body></html>'
    )
    with pytest.raises(ExtractionError):
        extract_offer(html, "https://shop.example/p/kettle")


# ------------------------------------------------------ "price and shipping" names the price block


def test_prestashop_price_and_shipping_block_holds_the_price():
    html, url = vendored("tecnoagricolamodena_it_prestashop_tile_translated.html")
    offer = extract_offer(html, url)
    assert (offer.amount, offer.currency) == (Decimal("1.49"), "EUR")


def test_a_shipping_cost_block_is_still_not_the_price():
    body = (
        '<h1>Kettle</h1><div class="product-prices"><span class="current-price">24,90 €</span></div>'
        '<div class="shipping-price">4,99 €</div><button class="add-to-cart">In den Warenkorb</button>'
    )
    offer = extract_offer(f"<html><body>{body}</body></html>", "https://shop.example.de/p/kettle")
    assert offer.amount == Decimal("24.90")
    only_shipping = '<h1>Kettle</h1><div class="shipping-price">4,99 €</div>'
    with pytest.raises(ExtractionError):
        extract_offer(f"<html><body>{only_shipping}</body></html>", "https://shop.example.de/p/kettle")

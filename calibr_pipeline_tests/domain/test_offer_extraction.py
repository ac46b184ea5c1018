import json
from decimal import Decimal

import pytest

from calibr_pipeline.domain.errors import ErrorClass, ExtractionError
from calibr_pipeline.domain.offer_extraction import (
    Availability,
    ExtractedOffer,
    extract_offer,
    normalize_availability,
)

URL = "https://shop.example.com/products/widget"


def jsonld(*blocks, head: str = "", lang: str | None = None) -> str:
    scripts = "".join(
        f'<script type="application/ld+json">{b if isinstance(b, str) else json.dumps(b)}</script>'
        for b in blocks
    )
    lang_attr = f' lang="{lang}"' if lang else ""
    return f"<!DOCTYPE html><html{lang_attr}><head>{head}</head><body><h1>Widget</h1>{scripts}</body></html>"


def product(offers, **extra):
    return {"@context": "https://schema.org", "@type": "Product", "name": "Widget", "offers": offers, **extra}


def offer(price, currency="EUR", **extra):
    return {"@type": "Offer", "price": price, "priceCurrency": currency, **extra}


def extraction_error(html, **kwargs) -> ExtractionError:
    with pytest.raises(ExtractionError) as info:
        extract_offer(html, kwargs.pop("page_url", URL), **kwargs)
    assert info.value.message
    return info.value


# --------------------------------------------------------------------------- availability


@pytest.mark.parametrize(
    "value, expected",
    [
        ("http://schema.org/InStock", "InStock"),
        ("https://schema.org/OutOfStock", "OutOfStock"),
        ("  http://schema.org/InStock", "InStock"),
        ("https://schema.org/InStock/", "InStock"),
        ("schema:InStock", "InStock"),
        ("InStock", "InStock"),
        ("instock", "InStock"),
        ("in_stock", "InStock"),
        ("in stock", "InStock"),
        ("out of stock", "OutOfStock"),
        ("https://schema.org/SoldOut", "OutOfStock"),
        ("Discontinued", "OutOfStock"),
        ("LimitedAvailability", "InStock"),
        ("OnlineOnly", "InStock"),
        ("InStoreOnly", "InStock"),
        ("PreOrder", "InStock"),
        ("BackOrder", "InStock"),
        ("http://schema.org/PreSale", "InStock"),
        (True, "InStock"),
        (False, "OutOfStock"),
        (["", "http://schema.org/OutOfStock"], "OutOfStock"),
        ({"@id": "https://schema.org/InStock"}, "InStock"),
        ("Maybe", None),
        ("", None),
        (None, None),
        (42, None),
    ],
)
def test_normalize_availability(value, expected):
    assert normalize_availability(value) == expected


def test_availability_constants():
    assert (Availability.IN_STOCK, Availability.OUT_OF_STOCK) == ("InStock", "OutOfStock")


# --------------------------------------------------------------------------- ExtractedOffer


def test_extracted_offer_json_dict_is_json_safe_and_exact():
    result = ExtractedOffer(
        amount=Decimal("19.99"),
        currency="EUR",
        availability="InStock",
        regular_amount=Decimal("24.99"),
        source="json-ld",
        sku="W-1",
        low_amount=Decimal("19.99"),
        high_amount=Decimal("29.99"),
        offer_count=3,
    )
    as_dict = result.to_json_dict()
    assert as_dict == {
        "amount": "19.99",
        "currency": "EUR",
        "availability": "InStock",
        "regular_price": "24.99",
        "source": "json-ld",
        "variant_id": None,
        "sku": "W-1",
        "title": None,
        "low_price": "19.99",
        "high_price": "29.99",
        "offer_count": 3,
        "on_sale": True,
        "confidence": 1.0,
        "evidence": [],
        "page_flags": [],
    }
    assert json.loads(json.dumps(as_dict)) == as_dict


def test_extracted_offer_refuses_floats_and_drops_non_discount_regular_price():
    with pytest.raises(TypeError):
        ExtractedOffer(amount=19.99, currency="EUR", availability=None, regular_amount=None, source="json-ld")  # type: ignore[arg-type]
    same = ExtractedOffer(
        amount=Decimal("10"),
        currency="EUR",
        availability=None,
        regular_amount=Decimal("10"),
        source="json-ld",
    )
    assert same.regular_amount is None and not same.on_sale
    with pytest.raises(ValueError):
        ExtractedOffer(
            amount=Decimal("10"), currency="EUR", availability="Maybe", regular_amount=None, source="x"
        )


# --------------------------------------------------------------------------- JSON-LD


def test_simple_jsonld_offer():
    html = jsonld(product(offer("19.99", availability="https://schema.org/InStock", sku="W-1")))
    result = extract_offer(html, URL)
    assert result == ExtractedOffer(
        amount=Decimal("19.99"),
        currency="EUR",
        availability="InStock",
        regular_amount=None,
        source="json-ld",
        sku="W-1",
        title="Widget",
    )


def test_jsonld_numbers_stay_exact():
    # 0.1 + 0.2 style trouble would show with floats; 1234567.89 also loses digits in float32-ish paths.
    html = jsonld(
        '{"@type":"Product","name":"W","offers":{"@type":"Offer","price":1234567.89,"priceCurrency":"USD"}}'
    )
    assert str(extract_offer(html, URL).amount) == "1234567.89"


def test_type_as_list_and_capitalised_offers_key():
    html = jsonld({"@type": ["Product", "SubType"], "name": "W", "Offers": offer(121.95)})
    result = extract_offer(html, URL)
    assert (result.amount, result.currency) == (Decimal("121.95"), "EUR")


def test_graph_container():
    html = jsonld(
        {
            "@context": "https://schema.org",
            "@graph": [
                {"@type": "WebSite", "name": "Shop"},
                {"@type": "BreadcrumbList", "itemListElement": []},
                product(offer("49.00", "GBP")),
            ],
        }
    )
    result = extract_offer(html, URL)
    assert (result.amount, result.currency, result.source) == (Decimal("49.00"), "GBP", "json-ld")


def test_webpage_main_entity_product():
    html = jsonld({"@type": "ItemPage", "mainEntity": product(offer("12.00", "USD"))})
    assert extract_offer(html, URL).amount == Decimal("12.00")


def test_price_string_with_thousands_separator_and_symbol():
    assert extract_offer(jsonld(product(offer("1,299.00", "USD"))), URL).amount == Decimal("1299.00")
    assert extract_offer(jsonld(product(offer("€ 1.299,00", "EUR"))), URL).amount == Decimal("1299.00")


def test_declared_currency_wins_over_symbol_in_price_text():
    result = extract_offer(jsonld(product(offer("$121.95", "EUR"))), URL)
    assert (result.amount, result.currency) == (Decimal("121.95"), "EUR")


def test_missing_price_currency_uses_symbol_then_hints():
    no_currency = {"@type": "Offer", "price": "£12.50"}
    assert extract_offer(jsonld(product(no_currency)), URL).currency == "GBP"

    bare = {"@type": "Offer", "price": "12.50"}
    assert extract_offer(jsonld(product(bare)), URL, currency_hint="CHF").currency == "CHF"
    assert extract_offer(jsonld(product(bare), lang="de-AT"), URL).currency == "EUR"
    og_locale = '<meta property="og:locale" content="en_CA">'
    assert extract_offer(jsonld(product(bare), head=og_locale, lang="en"), URL).currency == "CAD"
    assert extract_offer(jsonld(product(bare)), "https://shop.example.co.uk/p").currency == "GBP"
    dollar = {"@type": "Offer", "price": "$12.50"}
    assert extract_offer(jsonld(product(dollar), lang="en-AU"), URL).currency == "AUD"


def test_missing_currency_without_any_hint_is_currency_unknown():
    error = extraction_error(jsonld(product({"@type": "Offer", "price": "12.50"})))
    assert error.error_class is ErrorClass.CURRENCY_UNKNOWN


def test_invalid_currency_hint_is_currency_unknown():
    error = extraction_error(jsonld(product(offer("1.00"))), currency_hint="Euros please")
    assert error.error_class is ErrorClass.CURRENCY_UNKNOWN


def test_price_specification_object():
    spec = {
        "@type": "PriceSpecification",
        "price": 121.95,
        "priceCurrency": "USD",
        "valueAddedTaxIncluded": False,
    }
    html = jsonld(
        product({"@type": "Offer", "priceSpecification": spec, "availability": "https://schema.org/InStock"})
    )
    result = extract_offer(html, URL)
    assert (result.amount, result.currency, result.availability) == (Decimal("121.95"), "USD", "InStock")


def test_sale_price_with_strikethrough_list_price():
    html = jsonld(
        product(
            {
                "@type": "Offer",
                "price": "79.99",
                "priceCurrency": "USD",
                "priceSpecification": [
                    {"@type": "UnitPriceSpecification", "price": "79.99", "priceCurrency": "USD"},
                    {
                        "@type": "UnitPriceSpecification",
                        "priceType": "https://schema.org/StrikethroughPrice",
                        "price": "99.99",
                        "priceCurrency": "USD",
                    },
                ],
            }
        )
    )
    result = extract_offer(html, URL)
    assert (result.amount, result.regular_amount, result.on_sale) == (
        Decimal("79.99"),
        Decimal("99.99"),
        True,
    )
    assert result.to_json_dict()["regular_price"] == "99.99"


def test_price_only_in_specifications_sale_and_list_price():
    specs = [
        {"@type": "UnitPriceSpecification", "priceType": "ListPrice", "price": 50, "priceCurrency": "EUR"},
        {"@type": "UnitPriceSpecification", "price": 40, "priceCurrency": "EUR"},
    ]
    result = extract_offer(jsonld(product({"@type": "Offer", "priceSpecification": specs})), URL)
    assert (result.amount, result.regular_amount) == (Decimal("40.00"), Decimal("50.00"))


def test_list_price_lower_than_price_is_not_a_sale():
    specs = [{"priceType": "ListPrice", "price": "9.00", "priceCurrency": "EUR"}]
    result = extract_offer(jsonld(product(offer("10.00", priceSpecification=specs))), URL)
    assert result.regular_amount is None and not result.on_sale


def test_only_a_list_price_is_the_price():
    specs = [
        {
            "@type": "UnitPriceSpecification",
            "priceType": "ListPrice",
            "price": "30.00",
            "priceCurrency": "EUR",
        }
    ]
    result = extract_offer(jsonld(product({"@type": "Offer", "priceSpecification": specs})), URL)
    assert (result.amount, result.regular_amount) == (Decimal("30.00"), None)


def test_unit_price_per_kilo_is_not_the_product_price():
    specs = [
        {"price": "4.99", "priceCurrency": "EUR"},
        {"price": "19.96", "priceCurrency": "EUR", "referenceQuantity": {"value": 1, "unitCode": "KGM"}},
    ]
    result = extract_offer(jsonld(product({"@type": "Offer", "priceSpecification": specs})), URL)
    assert result.amount == Decimal("4.99")


def test_net_and_gross_specifications_prefer_vat_included():
    specs = [
        {"price": "100.00", "priceCurrency": "EUR", "valueAddedTaxIncluded": False},
        {"price": "119.00", "priceCurrency": "EUR", "valueAddedTaxIncluded": True},
    ]
    result = extract_offer(jsonld(product({"@type": "Offer", "priceSpecification": specs})), URL)
    assert result.amount == Decimal("119.00")


def test_conflicting_specifications_are_ambiguous():
    specs = [{"price": "100.00", "priceCurrency": "EUR"}, {"price": "119.00", "priceCurrency": "EUR"}]
    error = extraction_error(jsonld(product({"@type": "Offer", "priceSpecification": specs})))
    assert error.error_class is ErrorClass.PARSE_AMBIGUOUS


def test_zero_placeholder_price_is_rejected():
    error = extraction_error(jsonld(product(offer("0.00"))))
    assert error.error_class is ErrorClass.PARSE_ZERO_PRICE
    error = extraction_error(jsonld(product(offer(0))))
    assert error.error_class is ErrorClass.PARSE_ZERO_PRICE


def test_zero_placeholder_in_jsonld_falls_through_to_microdata():
    html = jsonld(product(offer("0"))).replace(
        "<h1>Widget</h1>",
        '<div itemscope itemtype="https://schema.org/Offer"><meta itemprop="price" content="15.00">'
        '<meta itemprop="priceCurrency" content="EUR"></div>',
    )
    result = extract_offer(html, URL)
    assert (result.amount, result.source) == (Decimal("15.00"), "microdata")


def test_negative_price_is_not_a_price():
    error = extraction_error(jsonld(product(offer("-5.00"))))
    assert error.error_class is ErrorClass.PARSE_NO_PRICE


def test_offer_without_any_price_is_no_price():
    error = extraction_error(
        jsonld(product({"@type": "Offer", "availability": "InStock", "priceCurrency": "EUR"}))
    )
    assert error.error_class is ErrorClass.PARSE_NO_PRICE


def test_offers_list_same_price_is_not_ambiguous():
    # 10.00 as text and 10.0 as a JSON number are the same price.
    html = jsonld(
        '{"@type": "Product", "name": "W", "offers": [{"@type": "Offer", "price": "10.00", "priceCurrency": "EUR"},'
        ' {"@type": "Offer", "price": 10.0, "priceCurrency": "EUR", "seller": {"name": "B"}}]}'
    )
    assert extract_offer(html, URL).amount == Decimal("10.00")


def test_duplicate_product_blocks_with_same_price():
    html = jsonld(
        product(offer("10.00"), sku="W-1"), product(offer("10.00", availability="OutOfStock"), sku="W-1")
    )
    result = extract_offer(html, URL)
    assert (result.amount, result.sku, result.availability) == (Decimal("10.00"), "W-1", "OutOfStock")


def test_several_products_with_different_prices_are_ambiguous():
    html = jsonld(product(offer("10.00"), sku="A"), product(offer("12.00"), sku="B"))
    error = extraction_error(html)
    assert error.error_class is ErrorClass.PARSE_AMBIGUOUS
    assert "10.00" in error.message and "12.00" in error.message


def test_several_products_resolved_by_variant_hint():
    html = jsonld(product(offer("10.00"), sku="A"), product(offer("12.00"), sku="B"))
    result = extract_offer(html, URL, variant_hint="B")
    assert (result.amount, result.sku) == (Decimal("12.00"), "B")


def test_offers_in_several_currencies_need_a_currency_hint():
    html = jsonld(product([offer("10.00", "EUR"), offer("11.00", "USD")]))
    assert extraction_error(html).error_class is ErrorClass.PARSE_AMBIGUOUS
    result = extract_offer(html, URL, currency_hint="usd")
    assert (result.amount, result.currency) == (Decimal("11.00"), "USD")


def test_aggregate_offer_without_nested_offers_gives_from_price():
    agg = {
        "@type": "AggregateOffer",
        "lowPrice": "5.29",
        "highPrice": "9.56",
        "offerCount": "2",
        "priceCurrency": "GBP",
    }
    result = extract_offer(jsonld(product(agg)), URL)
    assert (result.amount, result.low_amount, result.high_amount, result.offer_count) == (
        Decimal("5.29"),
        Decimal("5.29"),
        Decimal("9.56"),
        2,
    )
    assert result.variant_id is None and result.sku is None


def test_aggregate_offer_with_nested_offers_and_capitalised_key():
    agg = {
        "@type": "AggregateOffer",
        "lowPrice": 8097000,
        "highPrice": 8099900,
        "priceCurrency": "COP",
        "offerCount": 1,
        "offers": [
            {"@type": "Offer", "price": 8097000, "availability": "http://schema.org/InStock", "sku": "1023"}
        ],
    }
    html = jsonld({"@type": "Product", "name": "Phone", "sku": "222", "Offers": agg})
    result = extract_offer(html, URL)
    assert (result.amount, result.currency, result.availability) == (Decimal("8097000"), "COP", "InStock")
    assert (result.low_amount, result.high_amount, result.offer_count) == (
        Decimal("8097000"),
        Decimal("8099900"),
        1,
    )
    assert result.sku == "1023"


def test_top_level_aggregate_offer_with_nested_offers():
    agg = {
        "@type": "AggregateOffer",
        "lowPrice": "10.00",
        "highPrice": "30.00",
        "priceCurrency": "USD",
        "offers": [{"@type": "Offer", "price": "30.00"}, {"@type": "Offer", "price": "12.00"}],
    }
    result = extract_offer(jsonld(agg), URL)
    assert (result.amount, result.currency) == (Decimal("12.00"), "USD")
    assert (result.low_amount, result.high_amount, result.offer_count) == (
        Decimal("10.00"),
        Decimal("30.00"),
        2,
    )


def test_variants_of_one_product_at_different_prices_give_from_price():
    offers = [
        offer("24.00", sku="W-L", availability="InStock", url=f"{URL}?variant=3"),
        offer("20.00", sku="W-S", availability="OutOfStock", url=f"{URL}?variant=1"),
        offer("22.00", sku="W-M", availability="InStock", url=f"{URL}?variant=2"),
    ]
    result = extract_offer(jsonld(product(offers)), URL)
    # Issue 10 category 5: the sold-out size's 20.00 is not a price anyone can pay; the "from"
    # price is the cheapest in-stock offer, and the stated range still spans every offer.
    assert result.amount == Decimal("22.00")
    assert (result.low_amount, result.high_amount, result.offer_count) == (
        Decimal("20.00"),
        Decimal("24.00"),
        3,
    )
    # The "from" price is the product's, not a variant's; its availability is the cheapest buyable offer's.
    assert (result.variant_id, result.sku, result.availability, result.title) == (
        None,
        None,
        "InStock",
        "Widget",
    )
    assert "lowest in-stock offer" in result.evidence


def test_from_price_of_all_sold_out_sizes_is_the_lowest():
    offers = [
        offer("24.00", sku="W-L", availability="OutOfStock", url=f"{URL}?variant=3"),
        offer("20.00", sku="W-S", availability="OutOfStock", url=f"{URL}?variant=1"),
    ]
    result = extract_offer(jsonld(product(offers)), URL)
    assert (result.amount, result.availability) == (Decimal("20.00"), "OutOfStock")


@pytest.mark.parametrize(
    "hint, amount, variant_id",
    [
        ("W-M", "22.00", "2"),
        ("w-m", "22.00", "2"),
        ("2", "22.00", "2"),
        (f"{URL}?variant=3", "24.00", "3"),
        ("gid://shopify/ProductVariant/1", "20.00", "1"),
        ("04006381333931", "20.00", "1"),  # gtin with a leading zero matches gtin13
    ],
)
def test_variant_hint_matching(hint, amount, variant_id):
    offers = [
        offer("24.00", sku="W-L", url=f"{URL}?variant=3"),
        offer("20.00", sku="W-S", url=f"{URL}?variant=1", gtin13="4006381333931"),
        offer("22.00", sku="W-M", url=f"{URL}?variant=2"),
    ]
    result = extract_offer(jsonld(product(offers)), URL, variant_hint=hint)
    assert (result.amount, result.variant_id) == (Decimal(amount), variant_id)
    assert result.low_amount is None and result.high_amount is None


def test_variant_hint_matches_product_level_sku():
    html = jsonld(product(offer("10.00"), sku="PARENT-1"))
    assert extract_offer(html, URL, variant_hint="PARENT-1").amount == Decimal("10.00")


def test_variant_hint_without_match_is_variant_not_found():
    offers = [offer("24.00", sku="W-L"), offer("20.00", sku="W-S")]
    error = extraction_error(jsonld(product(offers)), variant_hint="W-XXL")
    assert error.error_class is ErrorClass.VARIANT_NOT_FOUND
    assert "W-XXL" in error.message and "W-L" in error.message


def test_variant_hint_on_single_offer_without_identifiers_is_not_guessed():
    error = extraction_error(jsonld(product(offer("10.00"))), variant_hint="123")
    assert error.error_class is ErrorClass.VARIANT_NOT_FOUND


def test_variant_hint_naming_a_zero_priced_offer_reports_the_zero_price():
    offers = [offer("0.00", sku="FREE"), offer("20.00", sku="PAID")]
    error = extraction_error(jsonld(product(offers)), variant_hint="FREE")
    assert error.error_class is ErrorClass.PARSE_ZERO_PRICE


def test_product_group_has_variant_is_one_product():
    group = {
        "@type": "ProductGroup",
        "name": "Tee",
        "productGroupID": "TEE",
        "hasVariant": [
            {"@type": "Product", "sku": "TEE-S", "offers": offer("15.00")},
            {"@type": "Product", "sku": "TEE-XL", "offers": offer("17.00")},
        ],
    }
    result = extract_offer(jsonld(group), URL)
    assert (result.amount, result.low_amount, result.high_amount) == (
        Decimal("15.00"),
        Decimal("15.00"),
        Decimal("17.00"),
    )
    assert extract_offer(jsonld(group), URL, variant_hint="TEE-XL").amount == Decimal("17.00")


def test_out_of_stock_offer_keeps_its_price():
    html = jsonld({"@type": "WebSite", "url": "https://x"}, product(offer(121.95, availability="OutOfStock")))
    result = extract_offer(html, URL)
    assert (result.amount, result.availability) == (Decimal("121.95"), "OutOfStock")


def test_standalone_offer_with_item_offered():
    html = jsonld(
        {
            "@type": "Offer",
            "price": "5.00",
            "priceCurrency": "USD",
            "itemOffered": {"@type": "Product", "name": "Thing", "sku": "T1"},
        }
    )
    result = extract_offer(html, URL, variant_hint="T1")
    assert (result.amount, result.title, result.sku) == (Decimal("5.00"), "Thing", "T1")


def test_at_value_wrapped_price():
    html = jsonld(product({"@type": "Offer", "price": {"@value": "7.50"}, "priceCurrency": "EUR"}))
    assert extract_offer(html, URL).amount == Decimal("7.50")


# --------------------------------------------------------------------------- broken JSON-LD


def test_trailing_comma_jsonld_is_repaired_by_extruct_and_stays_exact():
    block = '{"@type": "Product", "name": "t", "offers": {"@type": "Offer", "priceCurrency": "AUD", "price": 155.55},}'
    result = extract_offer(jsonld(block), URL)
    assert (result.amount, result.currency, result.source) == (Decimal("155.55"), "AUD", "json-ld")
    assert str(result.amount) == "155.55"


def test_unrepairable_jsonld_falls_through_to_nested_microdata():
    # The nested itemprop=price case: the outer span has no content attribute (its text is
    # "$ 155.55"), the inner one has content="155.55"; both must be read as one price.
    microdata = (
        '<span itemprop="offers" itemscope itemtype="http://schema.org/Offer">'
        '<span itemprop="price"><sup itemprop="priceCurrency" content="AUD">$</sup>'
        '<span itemprop="price" content="155.55">155.55</span></span></span>'
    )
    broken_jsonld = '<script type="application/ld+json">{"@type": "Product", "offers": { nope</script>'
    html = f"<html><body>{microdata}{broken_jsonld}</body></html>"
    result = extract_offer(html, URL)
    assert (result.amount, result.currency, result.source) == (Decimal("155.55"), "AUD", "microdata")


def test_one_broken_jsonld_block_does_not_hide_a_good_one():
    html = jsonld('{"@type": "Product", oops', product(offer("33.00")))
    assert extract_offer(html, URL).amount == Decimal("33.00")


def test_jsonld_nan_price_is_not_a_price():
    html = jsonld('{"@type": "Product", "offers": {"@type": "Offer", "price": NaN, "priceCurrency": "EUR"}}')
    assert extraction_error(html).error_class is ErrorClass.PARSE_NO_PRICE


# --------------------------------------------------------------------------- microdata


def test_microdata_offer_without_product():
    html = (
        '<html><body><span itemprop="offers" itemscope itemtype="http://schema.org/Offer">'
        '<meta content="767.55" itemprop="price"/><meta content="EUR" itemprop="priceCurrency"/>'
        '<meta content="InStock" itemprop="availability"/></span></body></html>'
    )
    result = extract_offer(html, URL)
    assert (result.amount, result.currency, result.availability, result.source) == (
        Decimal("767.55"),
        "EUR",
        "InStock",
        "microdata",
    )


def test_microdata_fragment_without_html_or_body():
    html = (
        '<div itemscope itemtype="http://schema.org/Product"><span itemprop="name">Anvil</span>'
        '<span itemprop="offers" itemscope itemtype="http://schema.org/Offer">'
        '<meta itemprop="priceCurrency" content="USD" />$<span itemprop="price">119.99 </span>'
        '<link itemprop="availability" href="  http://schema.org/InStock"/></span></div>'
    )
    result = extract_offer(html, URL)
    assert (result.amount, result.currency, result.availability, result.title) == (
        Decimal("119.99"),
        "USD",
        "InStock",
        "Anvil",
    )


def test_microdata_visible_price_text_with_symbol_and_no_currency():
    html = (
        '<div itemscope itemtype="https://schema.org/Product"><div itemprop="offers" itemscope '
        'itemtype="https://schema.org/Offer"><span itemprop="price">1.299,00 €</span></div></div>'
    )
    result = extract_offer(html, URL)
    assert (result.amount, result.currency) == (Decimal("1299.00"), "EUR")


def test_jsonld_preferred_over_microdata_with_same_price_other_symbol():
    # JSON-LD declares EUR; microdata shows "$121.95" with no currency. Not ambiguous: JSON-LD wins.
    html = jsonld(product([offer(121.95, "EUR", availability="http://schema.org/InStock")])).replace(
        "<h1>Widget</h1>",
        '<div itemscope itemtype="https://schema.org/Product"><div itemprop="offers" itemscope '
        'itemtype="https://schema.org/Offer"><span itemprop="price">$121.95</span></div></div>',
    )
    result = extract_offer(html, URL)
    assert (result.amount, result.currency, result.source) == (Decimal("121.95"), "EUR", "json-ld")


# --------------------------------------------------------------------------- OpenGraph


def og_page(*metas: tuple[str, str]) -> str:
    head = "".join(f'<meta property="{p}" content="{c}">' for p, c in metas)
    return f"<html><head>{head}</head><body><p>No structured data</p></body></html>"


def test_opengraph_price():
    html = og_page(
        ("og:type", "product"),
        ("og:title", "OG Widget"),
        ("og:price:amount", "1,499.00"),
        ("og:price:currency", "USD"),
        ("og:availability", "instock"),
    )
    result = extract_offer(html, URL)
    assert (result.amount, result.currency, result.availability, result.source, result.title) == (
        Decimal("1499.00"),
        "USD",
        "InStock",
        "opengraph",
        "OG Widget",
    )


def test_opengraph_product_namespace_with_sale_price():
    html = og_page(
        ("product:price:amount", "50.00"),
        ("product:price:currency", "EUR"),
        ("product:sale_price:amount", "39.00"),
        ("product:availability", "out of stock"),
        ("product:retailer_item_id", "SKU-9"),
    )
    result = extract_offer(html, URL)
    assert (result.amount, result.regular_amount, result.availability, result.sku) == (
        Decimal("39.00"),
        Decimal("50.00"),
        "OutOfStock",
        "SKU-9",
    )
    assert extract_offer(html, URL, variant_hint="SKU-9").amount == Decimal("39.00")


def test_opengraph_standard_amount_is_regular_price():
    html = og_page(
        ("og:price:amount", "8.00"), ("og:price:currency", "GBP"), ("og:price:standard_amount", "10.00")
    )
    result = extract_offer(html, URL)
    assert (result.amount, result.regular_amount, result.on_sale) == (Decimal("8.00"), Decimal("10.00"), True)


def test_opengraph_without_currency_uses_locale():
    html = og_page(("og:locale", "de_CH"), ("og:price:amount", "12.50"))
    assert extract_offer(html, URL).currency == "CHF"


def test_opengraph_used_only_when_markup_has_no_price():
    html = jsonld(
        product(offer("20.00", "EUR")),
        head='<meta property="og:price:amount" content="25.00">'
        '<meta property="og:price:currency" content="EUR">',
    )
    assert extract_offer(html, URL).source == "json-ld"


# --------------------------------------------------------------------------- bodies without offers


def test_page_without_price():
    error = extraction_error("<html><head><title>About us</title></head><body><p>Hello</p></body></html>")
    assert error.error_class is ErrorClass.PARSE_NO_PRICE


@pytest.mark.parametrize(
    "body", ["", "   \n ", b"", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", '{"product": {}}', "just some words"]
)
def test_non_html_bodies_are_malformed(body):
    assert extraction_error(body).error_class is ErrorClass.MALFORMED_BODY


def test_bytes_body_with_declared_charset():
    html = jsonld(product({"@type": "Offer", "price": "12,50 €"})).replace(
        "<head>", '<head><meta charset="windows-1252">'
    )
    result = extract_offer(html.encode("cp1252"), URL)
    assert (result.amount, result.currency) == (Decimal("12.50"), "EUR")


def test_xhtml_with_xml_declaration():
    html = '<?xml version="1.0" encoding="UTF-8"?>' + jsonld(product(offer("3.00")))
    assert extract_offer(html, URL).amount == Decimal("3.00")
    assert extract_offer(html.encode(), URL).amount == Decimal("3.00")

"""Issue 10 categories 1-5 and 7. The markup reproduces, trimmed, the structures the issue lists
from real shops' pages (marketplace price blocks, related products' JSON-LD, nested microdata
offers, non-standard values, crossed-out prices, visible stock states)."""

import json
from decimal import Decimal as D

import pytest

from calibr_pipeline.domain.errors import ErrorClass, ExtractionError
from calibr_pipeline.domain.offer_extraction import extract_offer

URL = "https://shop.example.de/p/trail-shoe"


def page(head="", body="", lang="en"):
    return f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">{head}</head><body>{body}</body></html>'


def ld(obj):
    return f'<script type="application/ld+json">{json.dumps(obj)}</script>'


def product(name, price, currency="EUR", url=None, sku=None, **extra):
    node = {"@type": "Product", "name": name, "offers": {"@type": "Offer", "price": price, "priceCurrency": currency}}
    if url:
        node["url"] = url
    if sku:
        node["sku"] = sku
    node.update(extra)
    return node


# ----------------------------------------------------------------- 2: several products on one page


def test_main_product_by_canonical_url_among_related_products():
    html = page(
        head=f'<link rel="canonical" href="{URL}">' + ld(product("Trail Shoe", "89.00", url=URL, sku="TS"))
        + ld(product("Rain Jacket", "129.00", url="https://shop.example.de/p/jacket", sku="RJ"))
        + ld(product("Socks", "9.00", url="https://shop.example.de/p/socks", sku="SO")),
        body="<h1>Trail Shoe</h1>",
    )
    result = extract_offer(html, URL)
    assert (result.amount, result.currency) == (D("89.00"), "EUR")
    assert any("canonical" in e for e in result.evidence) and result.confidence < 0.95


def test_main_product_by_h1_when_urls_are_missing():
    html = page(
        head=ld([product("Rain Jacket", "129.00", sku="RJ"), product("Trail Running Shoe GTX", "89.00", sku="TS")]),
        body="<h1>Trail Running Shoe GTX</h1>",
    )
    assert extract_offer(html, URL).amount == D("89.00")


def test_related_products_nested_under_isRelatedTo_are_not_the_page_product():
    main = product("Trail Shoe", "89.00", sku="TS")
    main["isRelatedTo"] = [product("Laces", "4.00", sku="L"), product("Insoles", "19.00", sku="I")]
    assert extract_offer(page(head=ld(main)), URL).amount == D("89.00")


def test_listing_without_an_identifiable_main_product_stays_ambiguous_with_candidates():
    html = page(head=ld([product("A shoe", "89.00", sku="A"), product("B shoe", "79.00", sku="B")]), body="<h1>Shoes</h1>")
    with pytest.raises(ExtractionError) as info:
        extract_offer(html, URL)
    assert info.value.error_class is ErrorClass.PARSE_AMBIGUOUS
    assert {c["amount"] for c in info.value.candidates} == {"89.00", "79.00"}


# ----------------------------------------------------------------- 3: nested microdata offers


def test_outer_offer_without_price_wrapping_inner_offer():
    body = """
    <div itemscope itemtype="http://schema.org/Product"><h1 itemprop="name">Kettle</h1>
      <div itemprop="offers" itemscope itemtype="http://schema.org/Offer">
        <link itemprop="availability" href="http://schema.org/InStock">
        <div itemprop="offers" itemscope itemtype="http://schema.org/Offer">
          <meta itemprop="price" content="34.90"><meta itemprop="priceCurrency" content="EUR">
        </div>
      </div>
    </div>"""
    result = extract_offer(page(body=body), URL)
    assert (result.amount, result.currency, result.source) == (D("34.90"), "EUR", "microdata")


# ----------------------------------------------------------------- 4: non-standard values


def test_korean_og_price_text_with_tilde():
    head = '<meta property="og:type" content="product"><meta property="product:price:amount" content="30,000원~"><meta property="product:price:currency" content="KRW">'
    result = extract_offer(page(head=head, lang="ko-KR"), "https://shop.example.kr/p/1")
    assert (result.amount, result.currency) == (D("30000"), "KRW")


def test_jsonld_price_given_as_an_object():
    html = page(head=ld({"@type": "Product", "name": "TV", "offers": {"@type": "Offer", "price": {"value": 3499}, "priceCurrency": "PLN"}}))
    assert (extract_offer(html, URL).amount, extract_offer(html, URL).currency) == (D("3499.00"), "PLN")


def test_legacy_rur_code():
    html = page(head=ld(product("Чайник", "2490", currency="RUR")))
    assert extract_offer(html, "https://shop.example.ru/p/1").currency == "RUB"


# ----------------------------------------------------------------- 1: visible page only

AMAZON_LIKE = """
<div id="dp"><h1 id="title"><span id="productTitle">Espresso Machine EX-200</span></h1>
 <div id="corePriceDisplay_desktop_feature_div">
   <span class="a-price aok-align-center priceToPay"><span class="a-offscreen">249,99&nbsp;€</span>
   <span aria-hidden="true"><span class="a-price-whole">249<span class="a-price-decimal">,</span></span><span class="a-price-fraction">99</span><span class="a-price-symbol">€</span></span></span>
   <span class="a-price a-text-price" data-a-strike="true"><span class="a-offscreen">319,00&nbsp;€</span></span>
   <span class="pricePerUnit">(12,50 € / kg)</span>
 </div>
 <div id="availability"><span class="a-size-medium a-color-success">Auf Lager</span></div>
 <input id="add-to-cart-button" type="submit" value="In den Einkaufswagen">
 <div id="similarities_feature_div" class="a-carousel">
   <li class="a-carousel-card"><span class="a-price"><span class="a-offscreen">99,00&nbsp;€</span></span></li>
   <li class="a-carousel-card"><span class="a-price"><span class="a-offscreen">459,00&nbsp;€</span></span></li>
 </div>
 <div id="deliveryBlock">Kostenlose Lieferung ab 29,00 €</div>
</div>"""


def test_marketplace_price_block_without_structured_data():
    result = extract_offer(page(body=AMAZON_LIKE, lang="de-DE"), "https://www.marketplace.example.de/dp/B0X")
    assert (result.amount, result.currency, result.source) == (D("249.99"), "EUR", "dom")
    assert result.regular_amount == D("319.00")
    assert result.availability == "InStock"
    assert 0.5 <= result.confidence <= 0.8


def test_shop_price_node_near_title_and_buy_button():
    body = """
    <header><div class="promo">Free shipping over $50</div></header>
    <main><div class="product-detail">
      <h1 class="product-title">Merino Beanie</h1>
      <div class="price-box"><span class="old-price"><del>$39.00</del></span>
        <span class="price price--sale" data-price-amount="29">$29.00</span></div>
      <p class="installments">or 4 payments of $7.25</p>
      <button class="btn add-to-cart">Add to cart</button>
    </div>
    <section class="related-products"><div class="product-card"><h3>Scarf</h3><span class="price">$45.00</span></div></section></main>
    <footer>Gift cards from $10</footer>"""
    result = extract_offer(page(body=body, lang="en-US"), "https://beanies.example.com/p/merino")
    assert (result.amount, result.currency, result.source) == (D("29.00"), "USD", "dom")
    assert result.regular_amount == D("39.00")
    assert result.availability == "InStock"


def test_sold_out_visible_state_and_disabled_buy_button():
    body = """<h1>Merino Beanie</h1><span class="product-price" data-price="29.00">29,00 €</span>
    <p class="stock-status">Ausverkauft</p><button class="add-to-cart" disabled>In den Warenkorb</button>"""
    result = extract_offer(page(body=body, lang="de-DE"), "https://beanies.example.de/p/merino")
    assert (result.amount, result.availability) == (D("29.00"), "OutOfStock")


def test_visible_prices_of_equal_weight_are_ambiguous_with_candidates():
    body = '<h1>Bundle</h1><div><span class="price">$10.00</span></div><div><span class="price">$25.00</span></div>'
    with pytest.raises(ExtractionError) as info:
        extract_offer(page(body=body, lang="en-US"), "https://x.example.com/p")
    assert info.value.error_class is ErrorClass.PARSE_AMBIGUOUS
    assert {c["amount"] for c in info.value.candidates} >= {"10.00", "25.00"}


def test_page_without_any_price_still_says_so():
    with pytest.raises(ExtractionError) as info:
        extract_offer(page(body="<h1>About us</h1><p>We love shoes since 1999.</p>"), URL)
    assert info.value.error_class is ErrorClass.PARSE_NO_PRICE


# ----------------------------------------------------------------- 5: the right one of several prices


def test_displayed_vat_inclusive_price_beats_ex_vat_opengraph_price():
    head = '<meta property="product:price:amount" content="84.03"><meta property="product:price:currency" content="EUR">'
    body = '<h1>Drill</h1><div class="product-price"><span class="price">100,00 €</span> <span class="tax-info">inkl. MwSt.</span></div><button class="add-to-cart">In den Warenkorb</button>'
    result = extract_offer(page(head=head, body=body, lang="de-DE"), URL)
    assert result.amount == D("100.00")
    assert any("VAT" in e for e in result.evidence)


# ----------------------------------------------------------------- 7: availability from the visible page


def test_structured_price_without_availability_reads_the_visible_stock_state():
    html = page(head=ld(product("Kettle", "34.90")), body='<h1>Kettle</h1><div class="availability in-stock">In stock</div>')
    assert extract_offer(html, URL).availability == "InStock"
    html = page(head=ld(product("Kettle", "34.90")), body='<h1>Kettle</h1><div class="product-stock">Out of stock</div>')
    assert extract_offer(html, URL).availability == "OutOfStock"


def test_twitter_product_card_price():
    head = '<meta name="twitter:label1" content="PRICE"><meta name="twitter:data1" content="LBP139999.00">'
    result = extract_offer(page(head=head), "https://www.spinneys.example.com/feta.html")
    assert (result.amount, result.currency, result.source) == (D("139999.00"), "LBP", "meta")


def test_soft_404_page_price_is_flagged():
    body = '<h1>Page not found</h1><p>The product you are looking for is no longer available.</p><div class="promo-price"><span class="price">$1.00</span></div>'
    html = page(head=ld(product("Gift card", "1.00", currency="USD")), body=body)
    result = extract_offer(html, "https://x.example.com/p/gone")
    assert "soft_404" in result.page_flags and result.to_json_dict()["page_flags"] == ["soft_404"]


def test_auction_current_bid_not_starting_price():
    body = """<h1>Vintage camera</h1>
    <div class="bid-box"><div class="start"><span class="label">Starting bid:</span> <span class="price">US $20.00</span></div>
    <div class="now"><span class="label">Current bid:</span> <span class="price">US $57.00</span></div>
    <button class="place-bid">Place bid</button></div>"""
    result = extract_offer(page(body=body, lang="en-US"), "https://auctions.example.com/itm/1")
    assert (result.amount, result.currency) == (D("57.00"), "USD")


# ----------------------------------------------------------------- development-set pages (pages10b)

MERCADO_LIBRE_PRICE = """
<h1 class="ui-pdp-title">Fone De Ouvido Sem Fio Huawei FreeBuds Pro 5</h1>
<div class="ui-pdp-price__main-container">
  <s class="andes-money-amount andes-money-amount--previous ui-pdp-price__part">
    <span class="andes-money-amount__fraction">1.299</span>
    <span class="andes-money-amount__cents">00</span>
  </s>
  <div class="ui-pdp-price__second-line">
    <span class="andes-money-amount ui-pdp-price__part andes-money-amount--cents-superscript">
      <span class="andes-money-amount__currency-symbol">R$</span>
      <span class="andes-money-amount__fraction">799</span>
      <span class="andes-money-amount__cents">90</span>
    </span>
  </div>
</div>
<button class="ui-pdp-buy-button">Comprar agora</button>"""


def test_price_in_fraction_and_cents_parts_reads_fraction_as_the_whole_units():
    # Mercado Libre's andes-money-amount: "__fraction" holds the whole units, "__cents" the cents.
    result = extract_offer(page(body=MERCADO_LIBRE_PRICE, lang="pt-BR"), "https://www.mercadolivre.com.br/p/MLB1")
    assert (result.amount, result.currency, result.source) == (D("799.90"), "BRL", "dom")
    assert result.regular_amount == D("1299.00")
    assert result.availability == "InStock"


def test_whole_and_fraction_parts_still_read_as_before():
    body = ('<h1>Kettle</h1><span class="a-price"><span class="a-price-symbol">$</span>'
            '<span class="a-price-whole">149.</span><span class="a-price-fraction">99</span></span>')
    assert extract_offer(page(body=body, lang="en-US"), "https://x.example.com/p").amount == D("149.99")


BOOK_CARD = """<div class="product-item">
  <a class="product-title" href="https://www.bkmkitap.com/gunesi-uyandiralim">Güneşi Uyandıralım</a>
  <span class="product-price">199,60 TL</span>
  <a class="model-title" href="/yazar/sabahattin-ali">Sabahattin Ali</a>
</div>"""


def test_a_page_that_is_one_saved_product_card_is_that_product():
    result = extract_offer(page(body=BOOK_CARD, lang="tr"), "https://www.bkmkitap.com/gunesi-uyandiralim")
    assert (result.amount, result.currency, result.source) == (D("199.60"), "TRY", "dom")


def test_two_product_cards_are_a_listing_and_give_no_price():
    body = BOOK_CARD + BOOK_CARD.replace("199,60", "149,00").replace("gunesi-uyandiralim", "baska-kitap")
    with pytest.raises(ExtractionError) as info:
        extract_offer(page(body=body, lang="tr"), "https://www.bkmkitap.com/arama?q=sabahattin")
    assert info.value.error_class is ErrorClass.PARSE_NO_PRICE


def test_the_main_price_beats_a_lone_product_card_beside_it():
    body = ('<h1>Kürk Mantolu Madonna</h1><span class="price">89,90 TL</span>'
            '<button class="add-to-cart">Sepete Ekle</button>' + BOOK_CARD)
    result = extract_offer(page(body=body, lang="tr"), "https://www.kitapyurdu.com/kitap/kurk-mantolu-madonna/123.html")
    assert result.amount == D("89.90")


def test_a_lone_product_card_inside_a_related_block_is_still_another_product():
    body = '<h1>Sold out book</h1><section class="related-products">' + BOOK_CARD + "</section>"
    with pytest.raises(ExtractionError) as info:
        extract_offer(page(body=body, lang="tr"), "https://www.bkmkitap.com/tukenen-kitap")
    assert info.value.error_class is ErrorClass.PARSE_NO_PRICE


SHOPEE_LIKE = """<div class="page-product">
  <div class="vR6vdF">Fone de Ouvido Bluetooth Huawei FreeBuds Pro 5 Prata Fosco Original</div>
  <div class="G27ShZ">R$ 819,00</div>
  <div class="line-through">R$ 1.150,00</div>
  <span class="mini-vouchers__vouchers">CUPOM SHOPEE R$ 30</span>
</div>"""


def test_hashed_class_names_the_one_amount_standing_alone_is_the_price():
    result = extract_offer(page(body=SHOPEE_LIKE, lang="pt-BR"), "https://shopee.com.br/produto-i.1.2")
    assert (result.amount, result.currency, result.source) == (D("819.00"), "BRL", "dom")
    assert result.regular_amount == D("1150.00")  # struck through by a utility class
    assert result.confidence <= 0.5


def test_several_amounts_standing_alone_are_ambiguous_not_a_guess():
    body = '<div class="x1"><div class="a9">Kettle</div><div class="b7">$23.00</div></div><div class="c3"><div class="d1">$31.50</div></div>'
    with pytest.raises(ExtractionError) as info:
        extract_offer(page(body=body, lang="en-US"), "https://x.example.com/p")
    assert info.value.error_class is ErrorClass.PARSE_AMBIGUOUS
    assert {c["amount"] for c in info.value.candidates} == {"23.00", "31.50"}


def test_a_lone_amount_after_a_shipping_label_or_in_a_link_is_not_the_price():
    body = ('<div class="k2"><span class="q1">Shipping</span><span class="q2">$4.95</span></div>'
            '<a class="z9" href="/gift">$25.00</a>')
    with pytest.raises(ExtractionError) as info:
        extract_offer(page(body=body, lang="en-US"), "https://x.example.com/p")
    assert info.value.error_class is ErrorClass.PARSE_NO_PRICE


def test_a_named_price_still_wins_over_a_lone_amount():
    body = '<h1>Kettle</h1><span class="price">$23.00</span><div class="b7">$99.00</div>'
    assert extract_offer(page(body=body, lang="en-US"), "https://x.example.com/p").amount == D("23.00")


def test_a_whole_part_without_a_fraction_part_holds_the_complete_price():
    body = '<div class="card-header">Kettle</div><div class="a-section"><span class="a-price-whole">$49.99</span></div><div id="availability">In stock</div>'
    result = extract_offer(page(body=body, lang="en-US"), "https://x.example.com/p")
    assert (result.amount, result.availability) == (D("49.99"), "InStock")


def test_a_stock_phrase_in_an_unnamed_element_is_read_when_nothing_else_says():
    body = '<div class="card"><div class="card-header">Product 1</div><div class="_3XINqE">out of stock</div></div>'
    with pytest.raises(ExtractionError) as info:
        extract_offer(page(body=body, lang="en-IN"), "https://www.flipkart.com/p/itm1")
    assert info.value.error_class is ErrorClass.PARSE_NO_PRICE
    assert info.value.availability == "OutOfStock"

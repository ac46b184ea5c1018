"""The price and stock state a person sees on a product page that publishes no structured offer.

Pure: works on an lxml tree and is told how to resolve a currency symbol. Used by
:func:`calibr_pipeline.domain.offer_extraction.extract_offer` as its last source ("dom").

Price candidates are elements that look like a price to a shopper's eye and to a theme's
author: a class or id naming a price (``price``, ``preis``, ``prix``, ``a-price`` ...), a
``data-price`` / ``data-price-amount`` attribute, Amazon-style ``.a-price .a-offscreen``. Each
is parsed as one amount (:func:`~calibr_pipeline.domain.price_parsing.parse_amount`; a price
written in whole and fraction elements, whose text reads "149 99", is joined: :func:`_split_price`)
and scored:

========================================  =====
price-like class / id / data attribute     +2
"current" wording (sale, final, to-pay)    +1
currency written in the text               +1
emphasis (strong, b, h2-h4)                +0.5
near the title (H1): 2 / 4 / 6 levels      +3 / +2 / +1
near the buy button: 3 / 5 levels          +2 / +1
the same amount shown again                +0.5 each (max +1)
========================================  =====

and never counted as the current price when it is crossed out (``del``, ``s``, ``strike``,
``data-a-strike``, classes such as old / was / regular / compare / list / rrp: those become the
regular price), a per-unit, shipping, instalment, "from" or saving teaser (text), or inside a
block that belongs to other products or to the page furniture (related, recommended, similar,
carousel, product cards and grids, mini-cart, header, footer, nav).

The best amount wins when it scores at least :data:`MIN_SCORE` and leads the next different
amount by at least :data:`MIN_MARGIN`; otherwise the page is PARSE_AMBIGUOUS (with the
candidates) or PARSE_NO_PRICE. Confidence grows with the score and the margin and never exceeds
0.8: a visible-page reading is a guess next to what the shop publishes for machines.

Two fallbacks run only when nothing above prices the page: a page holding exactly one product
card (outside any related / listing block) reads that card as its product (a saved product tile);
and when no element at all is named for a price (hashed class names), an element whose whole text
is one amount with its currency is the price if it is the only such amount (:func:`_bare_amounts`;
several are PARSE_AMBIGUOUS; confidence 0.5).

Availability (:func:`visible_availability`) reads stock wording in elements named for it
(availability, stock, inventory, lager, ...) in a dozen languages, then the buy button: disabled
means out of stock, present and enabled means in stock; failing both, an element whose whole text
is a stock phrase ("out of stock").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Callable, Iterator

import lxml.html

from calibr_pipeline.domain.errors import ErrorClass, ExtractionError
from calibr_pipeline.domain.price_parsing import normalize_amount, parse_amount, validate_amount
from calibr_pipeline.domain.trust import SOFT_404_TEXT

MIN_SCORE = 3.0
MIN_MARGIN = 1.0
MAX_TEXT = 48  # a price node's text is short; a block that long is not one price

_SKIP_TAGS = {"script", "style", "noscript", "template", "head", "title", "svg", "iframe", "select", "option", "textarea"}
_FURNITURE_TAGS = {"header", "footer", "nav", "aside"}
_PRICE_ATTRS = ("data-price", "data-price-amount", "data-product-price", "data-sale-price", "data-current-price", "data-final-price")

_PRICE_NAME = re.compile(r"price|preis|prix|precio|prezzo|prijs|cena|pris|fiyat|pre[cç]o|цена|ціна|kaina|hinta", re.I)
_PRICE_PART = re.compile(r"whole|fraction|decimal|symbol|currency|label|title|per-?unit|unit-?price|priceperunit|range|tax|vat|info|note", re.I)
_CURRENT_NAME = re.compile(r"sale|special|current|final|now|our|offer|deal|actual|topay|to-pay|selling|main|promo|reduced|discount", re.I)
_REGULAR_NAME = re.compile(r"old|was|regular|compare|strike|line-?through|original|list|rrp|msrp|before|crossed|uvp|reference|standard|retail", re.I)
_FOREIGN_NAME = re.compile(
    r"(^|[-_])(related|recommend|upsell|up-sell|cross-?sell|similar|carousel|slider|also|viewed|recent|"
    r"sponsor|accessor|product-?(item|card|tile|list|grid)|products-?grid|listing|mini-?cart|cart-?drawer|"
    r"basket|wishlist|footer|header|navbar|nav|menu|breadcrumb|banner|newsletter|shipping|delivery|"
    r"installment|instalment|financ|klarna|afterpay)",
    re.I,
)
_TEASER_TEXT = re.compile(
    r"shipping|delivery|lieferung|versand|livraison|env[ií]o|spedizione|verzending|porto|"
    r"/\s*(kg|g|l|ml|m|m2|m²|100\s*g|100\s*ml|month|mo|mes|mois|monat|st|stk|pc|piece|unit|each|ea)\b|"
    r"\bper\s|\bpro\s(kg|l|100|st)|\bje\s|payments? of|installment|instalment|\d\s*x\s|\bx\s*\d|monthly|par mois|"
    r"mensual|al mes|klarna|afterpay|\bfrom\b|\bab\s|à partir|a partir|desde|vanaf|starting at|\bsave\b|"
    r"\bspare|économ|\boff\b|rabatt|%",
    re.I,
)
_VAT_INCL = re.compile(
    r"inkl\.?\s*(der\s*)?(mwst|ust|\d+\s*%)|incl\.?\s*(vat|btw|tax|iva)|including vat|inc\.?\s*vat|\bttc\b|"
    r"iva inclu|tva incl|with vat|brutto|включая ндс",
    re.I,
)
# Auctions: the starting price is history, the current bid is what the item costs now.
_STARTING_BID = re.compile(r"starting bid|opening bid|start(ing)? price|startpreis|startgebot|prix de départ|mise à prix|precio de salida|prezzo di partenza", re.I)
_CURRENT_BID = re.compile(r"current bid|aktuelles gebot|enchère actuelle|puja actual|offerta attuale|winning bid", re.I)
_BUY_TEXT = re.compile(
    r"add[\s_-]?to[\s_-]?(cart|bag|basket|trolley)|addtocart|buy[\s_-]?now|in den (warenkorb|einkaufswagen)|"
    r"ajouter au panier|añadir al carrito|agregar al carrito|aggiungi al carrello|in (de )?winkelwagen|do koszyka|"
    r"lägg i varukorg|læg i kurv|legg i handlekurv|в корзину|sepete ekle|adicionar ao carrinho|^buy$|^kaufen$",
    re.I,
)
_BUY_NAME = re.compile(r"add-?to-?cart|addtocart|add_to_cart|buy-?now|buy-?button|product-?form__submit|btn-?cart", re.I)
_AVAILABILITY_NAME = re.compile(r"availab|stock|inventory|lager|verfueg|verfüg|dispon|voorraad|delivery-?status", re.I)

_OUT_OF_STOCK = re.compile(
    r"out of stock|sold out|currently unavailable|\bunavailable\b|not available|no longer available|"
    r"ausverkauft|nicht verfügbar|nicht auf lager|nicht lieferbar|vergriffen|derzeit nicht|"
    r"rupture de stock|épuisé|epuise|indisponible|agotado|sin stock|no disponible|esaurito|non disponibile|"
    r"uitverkocht|niet op voorraad|niet leverbaar|niet verkrijgbaar|niet beschikbaar|niedostępny|brak w magazynie|"
    r"wyprzedan|není skladem|vyprodáno|slutsåld|ej i lager|ikke på lager|udsolgt|utsolgt|"
    r"нет в наличии|немає в наявності|stokta yok|tükendi|esgotado|indisponível|品切れ|売り切れ|在庫なし|缺货|无货|품절",
    re.I,
)
_IN_STOCK = re.compile(
    r"\bin stock\b|\bavailable\b|only \d+ left|ready to ship|auf lager|sofort lieferbar|\blieferbar\b|\bverfügbar\b|"
    r"en stock|\bdisponible\b|en existencia|disponibile|op voorraad|\bdostępny\b|på lager|в наличии|stokta|"
    r"em estoque|\bskladem\b|в наявності|\bi lager\b|在庫あり|有货|재고 있음",
    re.I,
)


@dataclass
class VisibleCandidate:
    amount: Decimal
    currency: str
    score: float
    element: lxml.html.HtmlElement = field(repr=False)
    regular: bool = False
    evidence: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class VisibleReading:
    amount: Decimal
    currency: str
    regular_amount: Decimal | None
    confidence: float
    evidence: tuple[str, ...]
    vat_included: bool


def _names(el: lxml.html.HtmlElement) -> str:
    return f"{el.get('class') or ''} {el.get('id') or ''}".strip()


def _tokens(el: lxml.html.HtmlElement) -> list[str]:
    return _names(el).split()


def _ancestors(el: lxml.html.HtmlElement, limit: int = 40) -> Iterator[lxml.html.HtmlElement]:
    parent = el.getparent()
    while parent is not None and limit > 0:
        yield parent
        parent = parent.getparent()
        limit -= 1


def _short_text(el: lxml.html.HtmlElement) -> str:
    return " ".join(el.text_content().split())


# A block named for the price *and* its shipping note (PrestaShop's "product-price-and-shipping")
# holds the price; "shipping" in it does not make it a shipping-cost block.
_PRICE_AND_SHIPPING = re.compile(r"price[-_]?and[-_]?(shipping|delivery)", re.I)


# A product card or tile: on a listing it holds another product, so its price is not the page's.
_CARD_NAME = re.compile(r"(^|[-_])product-?(item|card|tile)", re.I)


def _in_foreign_block(el: lxml.html.HtmlElement, own_card: lxml.html.HtmlElement | None = None) -> str | None:
    """The tag or class that marks ``el`` as part of another product or of the page furniture.
    ``own_card`` is a product card known to hold the page's own product (:func:`_sole_card`):
    its card class, and its descendants' card classes, do not count."""
    inside = own_card is not None and (el is own_card or any(a is own_card for a in _ancestors(el)))
    for node in (el, *_ancestors(el)):
        if not isinstance(node.tag, str):
            continue
        if node.tag in _FURNITURE_TAGS:
            return node.tag
        for token in _tokens(node):
            if inside and _CARD_NAME.search(token):
                continue
            if _FOREIGN_NAME.search(token) and not _PRICE_AND_SHIPPING.search(token):
                return token
        if node is own_card:
            inside = False
    return None


def _sole_card(elements: list[lxml.html.HtmlElement]) -> lxml.html.HtmlElement | None:
    """The page's one product card, when the page holds exactly one (outermost) card and it sits
    in no related / listing / furniture block: a saved product tile, whose product is the page's."""
    cards = [el for el in elements if any(_CARD_NAME.search(t) for t in _tokens(el))]
    outermost = [c for c in cards if not any(any(_CARD_NAME.search(t) for t in _tokens(a)) for a in _ancestors(c))]
    if len(outermost) != 1:
        return None
    card = outermost[0]
    parent = card.getparent()
    if parent is not None and _in_foreign_block(parent):
        return None
    return card


def _is_crossed(el: lxml.html.HtmlElement) -> bool:
    for depth, node in enumerate((el, *_ancestors(el, 3))):
        if node.tag in ("del", "s", "strike") or node.get("data-a-strike") == "true":
            return True
        if depth <= 2 and any(_REGULAR_NAME.search(t) for t in _tokens(node)):
            return True
        style = (node.get("style") or "").replace(" ", "").lower()
        if "line-through" in style:
            return True
    return False


def _hidden_duplicate(el: lxml.html.HtmlElement) -> bool:
    return any(node.get("aria-hidden") == "true" for node in (el, *_ancestors(el, 4)))


def _distance(a: lxml.html.HtmlElement, b: lxml.html.HtmlElement) -> int:
    """Steps from ``a`` up to the lowest ancestor it shares with ``b``."""
    b_line = {id(n) for n in (b, *_ancestors(b, 60))}
    for steps, node in enumerate((a, *_ancestors(a, 60))):
        if id(node) in b_line:
            return steps
    return 99


def _walk(root: lxml.html.HtmlElement) -> Iterator[lxml.html.HtmlElement]:
    stack = [root]
    while stack:
        el = stack.pop()
        if not isinstance(el.tag, str) or el.tag in _SKIP_TAGS:
            continue
        yield el
        stack.extend(reversed(list(el)))


def _buy_buttons(elements: list[lxml.html.HtmlElement], own_card: lxml.html.HtmlElement | None = None) -> list[lxml.html.HtmlElement]:
    found = []
    for el in elements:
        if el.tag not in ("button", "input", "a"):
            continue
        label = _short_text(el) if el.tag != "input" else (el.get("value") or "")
        if (_BUY_TEXT.search(label.strip()) or any(_BUY_NAME.search(t) for t in _tokens(el)) or _BUY_NAME.search(el.get("name") or "")) and not _in_foreign_block(el, own_card):
            found.append(el)
    return found


_WHOLE_PART = re.compile(r"(^|[-_])(whole|integer|int|units?|main)$", re.I)
_FRACTION_PART = re.compile(r"(^|[-_])(fraction|fractional|decimals?|cents?)$", re.I)
_SYMBOL_PART = re.compile(r"(^|[-_])(symbol|currency)$", re.I)
_CENTS_PART = re.compile(r"(^|[-_])cents?$", re.I)


def _split_price(el: lxml.html.HtmlElement) -> tuple[Decimal, str | None] | None:
    """A price written as separate parts, as Amazon (a-price-whole / a-price-fraction), Magento
    and many themes do: exactly one whole part and one fraction part among the element's
    descendants. Their text, laid out on separate lines, reads "149 99": two numbers, not one.
    Returns (amount, currency symbol or None)."""
    parts: dict[str, list[str]] = {"whole": [], "fraction": [], "symbol": []}
    cents: list[str] = []
    for node in el.iterdescendants():
        if not isinstance(node.tag, str):
            continue
        tokens = _tokens(node)
        if any(_CENTS_PART.search(t) for t in tokens):
            cents.append(_short_text(node))
        for name, pattern in (("whole", _WHOLE_PART), ("fraction", _FRACTION_PART), ("symbol", _SYMBOL_PART)):
            if any(pattern.search(t) for t in tokens):
                parts[name].append(_short_text(node))
    if not parts["whole"] and len(cents) == 1 and len(parts["fraction"]) == 2:
        # "fraction" + "cents" naming (Mercado Libre's andes-money-amount__fraction / __cents): when
        # one part is named for the cents, the other "fraction" part holds the amount's whole units.
        whole_parts = list(parts["fraction"])
        whole_parts.remove(cents[0])
        parts["whole"], parts["fraction"] = whole_parts, cents
    if len(parts["whole"]) != 1 or len(parts["fraction"]) != 1 or len(parts["symbol"]) > 1:
        return None
    whole = re.sub(r"[\s,.'\u00a0\u202f]", "", parts["whole"][0])  # grouping marks and the trailing decimal mark
    fraction = parts["fraction"][0].strip()
    if not re.fullmatch(r"\d{1,9}", whole) or not re.fullmatch(r"\d{1,3}", fraction):
        return None
    symbol = parts["symbol"][0].strip() if parts["symbol"] else None
    return validate_amount(Decimal(f"{whole}.{fraction}"), f"{whole}.{fraction}"), symbol or None


def _lone_whole_part(el: lxml.html.HtmlElement, tokens: list[str]) -> bool:
    """A price's "whole" part with no fraction part beside it: the theme wrote the complete
    price in it ("$49.99" in a-price-whole alone)."""
    if not any(_PRICE_NAME.search(t) and _WHOLE_PART.search(t) for t in tokens):
        return False
    parent = el.getparent()
    family = list(parent.iterdescendants()) if parent is not None else list(el.iterdescendants())
    return not any(isinstance(n.tag, str) and any(_FRACTION_PART.search(t) for t in _tokens(n)) for n in family)


def _price_like(el: lxml.html.HtmlElement) -> bool:
    tokens = _tokens(el)
    if "a-offscreen" in tokens and any("a-price" in _tokens(p) for p in _ancestors(el, 2)):
        return True
    if any(_PRICE_NAME.search(t) and not _PRICE_PART.search(t) for t in tokens) or el.get("itemprop") == "price":
        return True
    return _lone_whole_part(el, tokens)


def collect_candidates(
    root: lxml.html.HtmlElement, resolve: Callable[[str | None], str], *, own_card: bool = False
) -> tuple[list[VisibleCandidate], list[ExtractionError]]:
    """Price candidates (module doc). With ``own_card``, a page holding exactly one product card
    (:func:`_sole_card`) reads that card as the page's product instead of another product's."""
    elements = list(_walk(root))
    card = _sole_card(elements) if own_card else None
    body = root.find(".//body")
    h1s = [el for el in elements if el.tag == "h1" and not _in_foreign_block(el, card)]
    title = h1s[0] if h1s else None
    buttons = _buy_buttons(elements, card)
    candidates: list[VisibleCandidate] = []
    errors: list[ExtractionError] = []

    def add(el: lxml.html.HtmlElement, amount: Decimal, token: str | None, base: float, why: str) -> None:
        try:
            currency = resolve(token or el.get("data-currency") or el.get("data-price-currency"))
        except ExtractionError as exc:
            errors.append(exc)
            return
        score = base
        evidence = [why]
        label = _short_text(el.getparent())[:160] if el.getparent() is not None else ""
        if _STARTING_BID.search(label) and not _CURRENT_BID.search(label):
            return  # an auction's starting price, not what the item costs now
        if _CURRENT_BID.search(label):
            score += 1.5
            evidence.append("current bid")
        if any(_CURRENT_NAME.search(t) for n in (el, *_ancestors(el, 2)) for t in _tokens(n)):
            score += 1
            evidence.append("current-price wording")
        if token:
            score += 1
        if any(n.tag in ("strong", "b", "h2", "h3", "h4") for n in (el, *_ancestors(el, 2))):
            score += 0.5
        if title is not None:
            d = _distance(el, title)
            bonus = 3 if d <= 2 else 2 if d <= 4 else 1 if d <= 6 else 0
            if bonus:
                score += bonus
                evidence.append(f"{d} levels from the title")
        if buttons:
            d = min(_distance(el, b) for b in buttons)
            bonus = 2 if d <= 3 else 1 if d <= 5 else 0
            if bonus:
                score += bonus
                evidence.append(f"{d} levels from the buy button")
        try:
            amount = normalize_amount(amount, currency)
        except ExtractionError as exc:
            errors.append(exc)
            return
        candidates.append(VisibleCandidate(amount, currency, score, el, regular=_is_crossed(el), evidence=evidence))

    for el in elements:
        if el is body or el.tag in ("html", "body"):
            continue
        attr = next((a for a in _PRICE_ATTRS if el.get(a)), None)
        text = None
        if attr is not None or _price_like(el):
            if _in_foreign_block(el, card) or _hidden_duplicate(el):
                continue
            context = _short_text(el.getparent()) if el.getparent() is not None else ""
            if attr is not None:
                raw = el.get(attr).strip()
                try:
                    amount = validate_amount(Decimal(raw), raw) if re.fullmatch(r"\d+(\.\d+)?", raw) else parse_amount(raw)[0]
                except (ExtractionError, ArithmeticError):
                    amount = None
                if amount is not None and not (len(context) <= 2 * MAX_TEXT and _TEASER_TEXT.search(context)):
                    token = None
                    shown = _short_text(el)
                    if shown and len(shown) <= MAX_TEXT:
                        try:
                            shown_amount, token = parse_amount(shown)
                            if shown_amount != amount:
                                token = None
                        except ExtractionError:
                            token = None
                    add(el, amount, token, 2.0, f"{attr} attribute")
            if not _price_like(el):
                continue
            text = _short_text(el)
            if not text or len(text) > MAX_TEXT or not any(ch.isdigit() for ch in text):
                continue
            if _TEASER_TEXT.search(text) or (len(context) <= 2 * MAX_TEXT and _TEASER_TEXT.search(context) and not _VAT_INCL.search(context)):
                continue
            try:
                amount, token = parse_amount(text)
            except ExtractionError:
                try:
                    split = _split_price(el)
                except ExtractionError:
                    split = None
                if split is None:
                    continue
                amount, token = split
                add(el, amount, token, 2.0, f"price-like {el.tag}.{(_names(el) or '-')[:40]} in whole and fraction parts")
                continue
            add(el, amount, token, 2.0, f"price-like {el.tag}.{(_names(el) or '-')[:40]}")
    return candidates, errors


_NOT_A_PRICE_TAGS = {"a", "button", "label", "input", "option", "li"}


def _bare_amounts(root: lxml.html.HtmlElement, resolve: Callable[[str | None], str]) -> list[VisibleCandidate]:
    """Elements whose whole text is one amount with its currency ("R$ 819,00", "$123") though no
    class names a price: hashed class names (Shopee, Flipkart) say nothing. Not in links, buttons or
    list items, another product's block or the page furniture, and not after a shipping, "from",
    saving or per-unit label."""
    found: list[VisibleCandidate] = []
    for el in _walk(root):
        if len(el) or el.tag in _NOT_A_PRICE_TAGS or el.tag in ("html", "body"):
            continue
        text = _short_text(el)
        if not text or len(text) > MAX_TEXT or not any(ch.isdigit() for ch in text):
            continue
        try:
            amount, token = parse_amount(text)
        except ExtractionError:
            continue
        if not token or any(ch.isalpha() for ch in text.replace(token, "", 1)):
            continue
        if _in_foreign_block(el) or _hidden_duplicate(el):
            continue
        before = el.getprevious()
        label = f"{(el.getparent().text or '') if el.getparent() is not None else ''} {_short_text(before)[:80] if before is not None else ''}"
        if _TEASER_TEXT.search(label) or _TEASER_TEXT.search(text):
            continue
        try:
            currency = resolve(token)
            amount = normalize_amount(amount, currency)
        except ExtractionError:
            continue
        found.append(VisibleCandidate(amount, currency, 0.0, el, regular=_is_crossed(el), evidence=["the element's whole text is one amount with its currency"]))
    return found


def _bare_reading(root: lxml.html.HtmlElement, resolve: Callable[[str | None], str]) -> VisibleReading | None:
    """The page's one bare amount (:func:`_bare_amounts`) when no element is named for a price;
    several different ones are PARSE_AMBIGUOUS; none is None."""
    bare = _bare_amounts(root, resolve)
    current = {(c.amount, c.currency): c for c in bare if not c.regular}
    if not current:
        return None
    if len(current) > 1:
        listing = tuple({"amount": str(a), "currency": cur, "source": "dom", "score": 0.0} for a, cur in list(current)[:8])
        raise ExtractionError(
            ErrorClass.PARSE_AMBIGUOUS,
            "dom: no element is named for a price and several amounts stand alone ("
            + ", ".join(f"{a} {cur}" for a, cur in list(current)[:4]) + "); check the page",
            candidates=listing,
        )
    (amount, currency), best = next(iter(current.items()))
    regular = [c.amount for c in bare if c.regular and c.currency == currency and c.amount > amount and _distance(c.element, best.element) <= 4]
    return VisibleReading(
        amount=amount,
        currency=currency,
        regular_amount=max(regular) if regular else None,
        confidence=0.5,
        evidence=("dom", *best.evidence, "no element named for a price; the only such amount on the page"),
        vat_included=False,
    )


def read_visible_price(root: lxml.html.HtmlElement, resolve: Callable[[str | None], str]) -> VisibleReading:
    """The page's visible current price (module doc), or ExtractionError."""
    candidates, errors = collect_candidates(root, resolve)
    current = [c for c in candidates if not c.regular]
    if not current:
        # Nothing outside product cards: a page that is one saved product tile is that product.
        candidates, card_errors = collect_candidates(root, resolve, own_card=True)
        errors += card_errors
        current = [c for c in candidates if not c.regular]
    if not current and not candidates and not errors:
        # No element named for a price at all (hashed class names): one amount standing alone.
        bare = _bare_reading(root, resolve)
        if bare is not None:
            return bare
    if not current:
        if errors:
            raise errors[0]
        raise ExtractionError(ErrorClass.PARSE_NO_PRICE, "no price in the visible page either")
    by_amount: dict[tuple[Decimal, str], list[VisibleCandidate]] = {}
    for c in current:
        by_amount.setdefault((c.amount, c.currency), []).append(c)
    ranked = sorted(
        ((max(c.score for c in group) + min(1.0, 0.5 * (len(group) - 1)), key, group) for key, group in by_amount.items()),
        key=lambda item: (-item[0], item[1][0]),
    )
    best_score, (amount, currency), group = ranked[0]
    listing = tuple(
        {"amount": str(a), "currency": cur, "source": "dom", "score": round(score, 2)} for score, (a, cur), _ in ranked[:8]
    )
    if best_score < MIN_SCORE:
        raise ExtractionError(
            ErrorClass.PARSE_NO_PRICE,
            f"no confident price in the visible page (best {amount} {currency} scores {best_score:.1f} < {MIN_SCORE})",
        )
    margin = best_score - ranked[1][0] if len(ranked) > 1 else best_score
    if len(ranked) > 1 and margin < MIN_MARGIN:
        shown = ", ".join(f"{c['amount']} {c['currency']} ({c['score']})" for c in listing[:4])
        raise ExtractionError(
            ErrorClass.PARSE_AMBIGUOUS,
            f"dom: several visible prices weigh the same ({shown}); pass a variant hint or check the page",
            candidates=listing,
        )
    best = max(group, key=lambda c: c.score)
    regular = [
        c.amount
        for c in candidates
        if c.regular and c.currency == currency and c.amount > amount and _distance(c.element, best.element) <= 4
    ]
    context = " ".join(_short_text(n) for n in (best.element, *_ancestors(best.element, 2)))[:400]
    vat_included = bool(_VAT_INCL.search(context))
    confidence = min(0.8, 0.45 + 0.03 * best_score + 0.02 * min(margin, 5))
    evidence = ["dom", *best.evidence, f"score {best_score:.1f}, margin {margin:.1f}"]
    if vat_included:
        evidence.append("displayed price incl. VAT")
    return VisibleReading(
        amount=amount,
        currency=currency,
        regular_amount=max(regular) if regular else None,
        confidence=round(confidence, 3),
        evidence=tuple(evidence),
        vat_included=vat_included,
    )


def visible_availability(root: lxml.html.HtmlElement) -> tuple[str | None, str | None]:
    """("InStock" | "OutOfStock" | None, evidence) from stock wording, then the buy button."""
    elements = list(_walk(root))
    for el in elements:
        if not any(_AVAILABILITY_NAME.search(t) for t in _tokens(el)) and el.get("itemprop") != "availability":
            continue
        if _in_foreign_block(el):
            continue
        text = _short_text(el)
        if not text or len(text) > 80:
            continue
        said = _stock_said(text, whole=False)
        if said:
            return said
    buttons = _buy_buttons(elements)
    if buttons:
        button = buttons[0]
        disabled = button.get("disabled") is not None or button.get("aria-disabled") == "true" or "disabled" in _tokens(button)
        label = _short_text(button) or button.get("value") or ""
        if disabled or _OUT_OF_STOCK.search(label):
            return "OutOfStock", "buy button disabled"
        return "InStock", "buy button enabled"
    # No element named for stock and no buy button (hashed class names): an element whose whole
    # text is a stock phrase ("out of stock", "Auf Lager") says it.
    for el in elements:
        if len(el) or el.tag in _NOT_A_PRICE_TAGS or _in_foreign_block(el):
            continue
        text = _short_text(el).strip(" .!:;-–—")
        if not text or len(text) > 40:
            continue
        said = _stock_said(text, whole=True)
        if said:
            return said
    return None, None


def _stock_said(text: str, *, whole: bool) -> tuple[str, str] | None:
    """(availability, evidence) when ``text`` holds stock wording (``whole``: is nothing but a
    stock phrase); out-of-stock wording wins over in-stock wording."""
    for pattern, state in ((_OUT_OF_STOCK, "OutOfStock"), (_IN_STOCK, "InStock")):
        if (pattern.fullmatch(text) if whole else pattern.search(text)):
            return state, f"stock phrase {text!r}" if whole else f"stock wording {text[:40]!r}"
    return None


def twitter_card_price(root: lxml.html.HtmlElement) -> str | None:
    """The ``twitter:dataN`` value whose ``twitter:labelN`` says PRICE (Magento product cards)."""
    metas = {}
    for meta in root.iter("meta"):
        name = (meta.get("name") or meta.get("property") or "").strip().lower()
        if name.startswith("twitter:"):
            metas[name] = (meta.get("content") or "").strip()
    for key, value in metas.items():
        if key.startswith("twitter:label") and value.lower() in ("price", "preis", "prix", "precio", "prezzo"):
            data = metas.get("twitter:data" + key[len("twitter:label"):])
            if data:
                return data
    return None


def page_says_gone(root: lxml.html.HtmlElement) -> str | None:
    """The words by which a 200 page says its product is not there (title, H1, an error block)."""
    texts = [" ".join(t.text_content().split()) for t in root.iter("title", "h1")]
    for el in _walk(root):
        if any(re.search(r"(^|[-_])(not-?found|error-?page|page-?404|no-?longer)", t, re.I) for t in _tokens(el)):
            texts.append(_short_text(el)[:200])
    for text in texts:
        found = SOFT_404_TEXT.search(text or "")
        if found:
            return repr(text[:80])
    return None

"""Read a competitor's current offer (price, currency, availability) from a product page.

Sources, in order; the first that yields a usable price wins and ``source`` says which:

1. JSON-LD (``<script type="application/ld+json">``). Each script is parsed on its own with
   ``Decimal`` numbers; a script that is not strict JSON (trailing comma, comments) is retried
   with extruct's lenient parser, and one that still fails is skipped, not fatal.
2. Microdata (extruct, ``uniform=True``).
3. OpenGraph (``og:price:amount`` / ``product:price:amount`` and ``:currency``,
   ``og:availability`` / ``product:availability``, sale/original price when stated).
4. Product meta: a Twitter product card's PRICE row (``meta``).
5. The visible page (``dom``), scored by :mod:`calibr_pipeline.domain.visible_offer`, only when
   no structured source yields a price or says the page is ambiguous.

Every result carries ``confidence`` (:data:`SOURCE_CONFIDENCE`, lowered for a "from" price or a
main product chosen among several) and ``evidence``; a displayed VAT-inclusive price beats a
lower ex-VAT OpenGraph / meta price, a missing availability is read from the visible page, and a
page that says the product is gone gets ``page_flags = ("soft_404",)``. Among several Products the
page's own one is chosen by canonical / og:url, then by its H1 (offers under ``isRelatedTo`` & co.
are never candidates); otherwise PARSE_AMBIGUOUS carries the ``candidates``. See docs/extraction.md.

Later sources are not consulted once one yields a price, so visible text such as "$121.95"
beside JSON-LD declaring EUR 121.95 never makes a page ambiguous: the markup's declared
currency is used.

Within a source, every schema.org Offer becomes a candidate (offers as object or list,
"offers" or "Offers", AggregateOffer with or without nested offers, priceSpecification,
``@graph``, ``@type`` as a list, Offers without a Product, ProductGroup ``hasVariant``). Then:

* ``variant_hint`` (sku, gtin, mpn, variant id, offer URL with ``?variant=ID``, Shopify gid)
  selects the offers that carry that identifier (an offer inherits its Product's identifiers).
  No match in any source -> ``VARIANT_NOT_FOUND``, even if the page has a single offer: a hint
  means the caller wants that variant, and another variant's price would be silently wrong.
* Without a hint, offers that all state the same price give that price.
* Offers of one product (or one AggregateOffer, or one ProductGroup) at different prices give
  the *"from" price*: the lowest amount a buyer can pay (in-stock offers first), with ``low_amount``/``high_amount`` spanning every
  offer and stated range and ``offer_count`` as stated (else the number of offers). A from price
  stands for the product, so ``variant_id`` and ``sku`` are ``None``. This is what a shopper sees
  as "from £5.29" and is stable across runs, unlike "first offer in the markup".
* Offers of different products at different prices -> ``PARSE_AMBIGUOUS`` (a listing page, or
  related products): pass a variant hint.
* Offers in several currencies: ``currency_hint`` picks one, else ``PARSE_AMBIGUOUS``.

Currency of an offer: its ``priceCurrency`` (or its priceSpecification's, or its
AggregateOffer's), else the symbol in the price text, resolved with ``currency_hint``, the page
locale (``og:locale``, ``<html lang>``, Content-Language) and the URL's country TLD
(see :mod:`calibr_pipeline.domain.currency`).

Sale vs regular price: a priceSpecification with ``priceType`` ListPrice / StrikethroughPrice /
MSRP is the regular price; ``price`` (or an untyped / SalePrice specification) is what a buyer
pays now. ``regular_amount`` is kept only when higher than ``amount``.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, Callable, Iterable, Iterator

import extruct
import lxml.etree
import lxml.html
from extruct.jsonld import JsonLdExtractor
from w3lib.encoding import html_to_unicode

from calibr_pipeline.domain.currency import lookup_symbol, region_from_locale, resolve_currency
from calibr_pipeline.domain.errors import ErrorClass, ExtractionError, PriceParseError
from calibr_pipeline.domain.money import to_decimal
from calibr_pipeline.domain.price_parsing import normalize_amount, parse_amount, validate_amount
from calibr_pipeline.domain.visible_offer import page_says_gone, read_visible_price, twitter_card_price, visible_availability

# --------------------------------------------------------------------------- availability


class Availability:
    """Availability is reduced to "can a buyer order it at this price now?".

    InStock: InStock, LimitedAvailability, OnlineOnly, InStoreOnly, PreOrder, PreSale, BackOrder,
    MadeToOrder (all orderable at the stated price, possibly with a delay or in store).
    OutOfStock: OutOfStock, SoldOut, Discontinued, Reserved. Anything else -> None (unknown).
    """

    IN_STOCK = "InStock"
    OUT_OF_STOCK = "OutOfStock"


_AVAILABILITY: dict[str, str] = {
    **dict.fromkeys(
        "instock limitedavailability onlineonly instoreonly preorder presale backorder madetoorder "
        "available availablefororder true".split(),
        Availability.IN_STOCK,
    ),
    **dict.fromkeys(
        "outofstock soldout discontinued reserved unavailable notavailable false".split(),
        Availability.OUT_OF_STOCK,
    ),
}


def normalize_availability(value: object) -> str | None:
    """ "InStock" / "OutOfStock" / None for a schema.org availability in any common spelling:
    full IRI (http/https, stray spaces), "schema:InStock", bare "InStock", "in_stock",
    "in stock", a boolean (Shopify ``available``), or a list (first recognised value)."""
    if isinstance(value, bool):
        return Availability.IN_STOCK if value else Availability.OUT_OF_STOCK
    if isinstance(value, (list, tuple)):
        for item in value:
            found = normalize_availability(item)
            if found is not None:
                return found
        return None
    if isinstance(value, dict):
        return normalize_availability(value.get("@id") or value.get("@value"))
    if not isinstance(value, str):
        return None
    key = value.strip().rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1].rsplit("#", 1)[-1]
    return _AVAILABILITY.get(re.sub(r"[\s_\-]", "", key).lower())


# --------------------------------------------------------------------------- result


@dataclass(frozen=True)
class ExtractedOffer:
    amount: Decimal  # the price a buyer pays now (sale price when on sale)
    currency: str  # ISO 4217
    availability: str | None  # "InStock" | "OutOfStock" | None
    regular_amount: Decimal | None  # regular / compare-at / list price when higher than amount
    source: str  # "shopify_json" | "shopify_js" | "json-ld" | "microdata" | "opengraph"
    variant_id: str | None = None
    sku: str | None = None
    title: str | None = None
    low_amount: Decimal | None = None  # AggregateOffer / price range, when the page states one
    high_amount: Decimal | None = None
    offer_count: int | None = None
    # How far to trust this reading, in [0, 1]: the source's base confidence (SOURCE_CONFIDENCE)
    # lowered for a "from" price, a main product chosen among several, a visible-page guess.
    confidence: float = field(default=1.0, compare=False)
    # Why: short notes a person can check ("main product by og:url", "h1 proximity", ...).
    evidence: tuple[str, ...] = field(default=(), compare=False)
    # What the page says about itself beyond the offer: "soft_404" when its title / heading
    # says the product is not found or no longer available (the price is then a banner's).
    page_flags: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        # Floats must never become money; to_decimal refuses them.
        object.__setattr__(self, "amount", to_decimal(self.amount))
        for name in ("regular_amount", "low_amount", "high_amount"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, to_decimal(value))
        object.__setattr__(self, "confidence", round(max(0.0, min(1.0, float(self.confidence))), 3))
        object.__setattr__(self, "evidence", tuple(self.evidence))
        if self.availability not in (None, Availability.IN_STOCK, Availability.OUT_OF_STOCK):
            raise ValueError(f"availability must be InStock, OutOfStock or None, got {self.availability!r}")
        # A "regular" price at or below the current one is not a discount; dropping it keeps
        # on_sale truthful whoever builds the offer.
        if self.regular_amount is not None and self.regular_amount <= self.amount:
            object.__setattr__(self, "regular_amount", None)

    @property
    def on_sale(self) -> bool:
        return self.regular_amount is not None and self.regular_amount > self.amount

    def to_json_dict(self) -> dict[str, Any]:
        def money(value: Decimal | None) -> str | None:
            return None if value is None else str(value)

        return {
            "amount": money(self.amount),
            "currency": self.currency,
            "availability": self.availability,
            "regular_price": money(self.regular_amount),
            "source": self.source,
            "variant_id": self.variant_id,
            "sku": self.sku,
            "title": self.title,
            "low_price": money(self.low_amount),
            "high_price": money(self.high_amount),
            "offer_count": self.offer_count,
            "on_sale": self.on_sale,
            "confidence": self.confidence,
            "evidence": list(self.evidence),
            "page_flags": list(self.page_flags),
        }


# --------------------------------------------------------------------------- candidates and selection


@dataclass(frozen=True)
class OfferCandidate:
    """One offer found in a source, before the multi-offer policy picks the result.

    Either ``amount``/``currency`` are set or ``error`` says why this offer has no usable price;
    errored candidates still take part in variant matching so a hint that names a zero-priced
    variant reports PARSE_ZERO_PRICE rather than VARIANT_NOT_FOUND.
    """

    amount: Decimal | None = None
    currency: str | None = None
    error: ExtractionError | None = None
    availability: str | None = None
    regular_amount: Decimal | None = None
    variant_id: str | None = None
    sku: str | None = None
    title: str | None = None
    product_title: str | None = None
    keys: frozenset[str] = frozenset()
    group: str = ""
    low_amount: Decimal | None = None
    high_amount: Decimal | None = None
    offer_count: int | None = None
    is_aggregate: bool = False
    product_url: str | None = None  # the Product's url / @id, to recognise the page's own product
    related: bool = False  # reached through isRelatedTo / isSimilarTo / ...: another product


# How much a reading from each source is trusted before anything else is known. Structured
# data the shop publishes for machines beats what we infer from the visible page.
SOURCE_CONFIDENCE: dict[str, float] = {
    "shopify_json": 0.99,
    "shopify_js": 0.99,
    "json-ld": 0.95,
    "microdata": 0.93,
    "rdfa": 0.9,
    "opengraph": 0.85,
    "meta": 0.75,
    "dom": 0.7,
}


@dataclass(frozen=True)
class PageHints:
    """What identifies the page's own product among several: its canonical / og:url and the
    visible title (H1, else <title>)."""

    urls: frozenset[str] = frozenset()
    titles: tuple[str, ...] = ()


def _norm_url(url: str) -> str:
    url = url.strip().lower().split("#", 1)[0].split("?", 1)[0].rstrip("/")
    return re.sub(r"^https?://(www\.)?", "", url)


def _norm_title(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()


def _main_groups(candidates: list[OfferCandidate], hints: PageHints | None) -> tuple[set[str], str] | None:
    """The groups that are the page's own product, and how that was decided, or None."""
    groups = {c.group for c in candidates}
    own = {c.group for c in candidates if not c.related}
    if own and own != groups:
        if len(own) == 1:
            return own, "other products are related/similar items"
        groups = own
    if hints is None:
        return None
    if hints.urls:
        by_url = {c.group for c in candidates if c.group in groups and c.product_url and _norm_url(c.product_url) in hints.urls}
        if len(by_url) == 1:
            return by_url, "main product by canonical / og:url"
    titles = [_norm_title(t) for t in hints.titles if t and _norm_title(t)]
    if titles:
        by_title = {
            c.group
            for c in candidates
            if c.group in groups
            and c.product_title
            and any(_norm_title(c.product_title) == t or (len(_norm_title(c.product_title)) > 8 and _norm_title(c.product_title) in t) for t in titles)
        }
        if len(by_title) == 1:
            return by_title, "main product by title (H1)"
    return None


# Which failure to report when no offer is usable: the most specific first.
_ERROR_RANK = {
    ErrorClass.PARSE_ZERO_PRICE: 0,
    ErrorClass.CURRENCY_UNKNOWN: 1,
    ErrorClass.PARSE_AMBIGUOUS: 2,
    ErrorClass.MALFORMED_BODY: 3,
    ErrorClass.PARSE_NO_PRICE: 4,
}


def most_specific_error(errors: Iterable[ExtractionError]) -> ExtractionError | None:
    return min(errors, key=lambda e: _ERROR_RANK.get(e.error_class, 9), default=None)


def identifier_keys(value: object) -> set[str]:
    """Comparable forms of an identifier: "SKU-1" -> {"sku-1"}; "00123" -> {"00123", "123"};
    a URL with ``?variant=42`` or a Shopify gid also yields "42"."""
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
        return set()
    text = str(value).strip()
    if not text:
        return set()
    keys = {text.lower()}
    if text.isdigit():
        keys.add(text.lstrip("0") or "0")
    variant = re.search(r"[?&]variant=(\d+)", text)
    if variant:
        keys.add(variant.group(1))
    if text.startswith("gid://"):
        keys.add(text.rstrip("/").rsplit("/", 1)[-1])
    prefixed = re.fullmatch(r"[a-z]{2,8}:(\w[\w-]*)", text, flags=re.IGNORECASE)
    if prefixed and "//" not in text:
        keys.add(prefixed.group(1).lower())  # productID "isbn:978..." matches "978..."
    return keys


def match_variant(candidates: Iterable[OfferCandidate], variant_hint: str) -> list[OfferCandidate]:
    wanted = identifier_keys(variant_hint)
    return [c for c in candidates if c.keys & wanted]


def _agree(values: Iterable[Any]) -> Any:
    """The value all non-None values share, else None."""
    distinct = {v for v in values if v is not None}
    return distinct.pop() if len(distinct) == 1 else None


def _merge_availability(candidates: list[OfferCandidate]) -> str | None:
    states = {c.availability for c in candidates}
    if Availability.IN_STOCK in states:
        return Availability.IN_STOCK
    if Availability.OUT_OF_STOCK in states:
        return Availability.OUT_OF_STOCK
    return None


def _candidate_dicts(candidates: Iterable[OfferCandidate], source: str) -> tuple[dict, ...]:
    return tuple(
        {"amount": str(c.amount), "currency": c.currency, "source": source, "title": c.product_title or c.title}
        for c in candidates
        if c.amount is not None
    )[:12]


def choose_offer(
    candidates: list[OfferCandidate],
    *,
    source: str,
    currency_hint: str | None = None,
    hints: PageHints | None = None,
) -> ExtractedOffer:
    """Apply the multi-offer policy (module doc) to usable candidates (no ``error``)."""
    if not candidates:
        raise ExtractionError(ErrorClass.PARSE_NO_PRICE, "no offer with a usable price")
    confidence = SOURCE_CONFIDENCE.get(source, 0.8)
    evidence: list[str] = [source]
    if len({c.group for c in candidates}) > 1 and len({(c.amount, c.currency) for c in candidates}) > 1:
        main = _main_groups(candidates, hints)
        if main is not None:
            groups, why = main
            candidates = [c for c in candidates if c.group in groups]
            confidence -= 0.05
            evidence.append(why)
    currencies = {c.currency for c in candidates}
    if len(currencies) > 1 and currency_hint in currencies:
        candidates = [c for c in candidates if c.currency == currency_hint]
        currencies = {currency_hint}
    if len(currencies) > 1:
        raise ExtractionError(
            ErrorClass.PARSE_AMBIGUOUS,
            f"{source}: offers in several currencies ({', '.join(sorted(map(str, currencies)))}); "
            "pass a currency hint or a variant hint",
            candidates=_candidate_dicts(candidates, source),
        )
    currency = currencies.pop()
    assert currency is not None
    amounts = sorted({c.amount for c in candidates if c.amount is not None})
    stated_lows = [c.low_amount for c in candidates if c.low_amount is not None]
    stated_highs = [c.high_amount for c in candidates if c.high_amount is not None]
    stated_counts = [c.offer_count for c in candidates if c.offer_count is not None]

    if len(amounts) == 1:
        return ExtractedOffer(
            confidence=confidence,
            evidence=tuple(evidence),
            amount=amounts[0],
            currency=currency,
            availability=_merge_availability(candidates),
            regular_amount=_agree(c.regular_amount for c in candidates),
            source=source,
            variant_id=_agree(c.variant_id for c in candidates),
            sku=_agree(c.sku for c in candidates),
            title=_agree(c.title for c in candidates),
            low_amount=min(stated_lows) if stated_lows else None,
            high_amount=max(stated_highs) if stated_highs else None,
            offer_count=max(stated_counts) if stated_counts else None,
        )

    groups = {c.group for c in candidates}
    if len(groups) > 1:
        shown = ", ".join(str(a) for a in amounts[:6])
        raise ExtractionError(
            ErrorClass.PARSE_AMBIGUOUS,
            f"{source}: {len(groups)} different products with different prices ({shown} {currency}); "
            "pass a variant hint (sku, gtin or variant id) to choose one",
            candidates=_candidate_dicts(candidates, source),
        )
    # The "from" price is what a buyer can pay now: sizes that are sold out do not count
    # (their price stays in the low/high range the page states).
    buyable = sorted({c.amount for c in candidates if c.availability == Availability.IN_STOCK and c.amount is not None})
    lowest = buyable[0] if buyable and any(c.availability == Availability.OUT_OF_STOCK for c in candidates) else amounts[0]
    if lowest != amounts[0]:
        evidence.append("lowest in-stock offer")
    at_lowest = [c for c in candidates if c.amount == lowest]
    return ExtractedOffer(
        confidence=confidence - 0.05,
        evidence=(*evidence, f"from price of {len(amounts)} prices"),
        amount=lowest,
        currency=currency,
        availability=_merge_availability(at_lowest),
        regular_amount=_agree(c.regular_amount for c in at_lowest),
        source=source,
        variant_id=None,
        sku=None,
        title=_agree(c.product_title for c in candidates) or _agree(c.title for c in at_lowest),
        low_amount=min([amounts[0], *stated_lows]),
        high_amount=max([amounts[-1], *stated_highs]),
        offer_count=max(stated_counts) if stated_counts else sum(1 for c in candidates if not c.is_aggregate),
    )


# --------------------------------------------------------------------------- schema.org walking


def _local_name(key: str) -> str:
    """ "http://schema.org/price" / "schema:price" / "price" -> "price"."""
    return key.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]


def _get(node: dict[str, Any], name: str) -> Any:
    """``node[name]`` matching keys case-insensitively and without an IRI/prefix ("Offers",
    "offercount", "schema:price"); JSON-LD and microdata in the wild use all of these."""
    if name in node:
        return node[name]
    wanted = name.lower()
    for key, value in node.items():
        if isinstance(key, str) and (key.lower() == wanted or _local_name(key).lower() == wanted):
            return value
    return None


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _scalars(value: Any) -> list[Any]:
    """Leaf values, unwrapping JSON-LD ``{"@value": ...}`` objects."""
    out = []
    for item in _as_list(value):
        if isinstance(item, dict) and "@value" in item:
            item = item["@value"]
        if isinstance(item, (list, tuple)):
            out.extend(_scalars(item))
        elif item is not None:
            out.append(item)
    return out


def _text(value: Any) -> str | None:
    for item in _scalars(value):
        if isinstance(item, str) and item.strip():
            return item.strip()
        if isinstance(item, (int, Decimal)) and not isinstance(item, bool):
            return str(item)
    return None


def _types(node: dict[str, Any]) -> set[str]:
    return {
        _local_name(t).lower() for t in _as_list(node.get("@type") or node.get("type")) if isinstance(t, str)
    }


_OFFER_TYPES = {"offer", "aggregateoffer"}
_LIST_PRICE_TYPES = {"listprice", "strikethroughprice", "msrp", "srp", "regularprice", "originalprice"}
_PIECE_UNITS = {"c62", "h87", "ea", "pce", "piece", "pcs"}
_ID_FIELDS = ("sku", "gtin", "gtin8", "gtin12", "gtin13", "gtin14", "mpn", "productID", "@id", "url")
_PLAIN_DECIMAL = re.compile(r"\s*[-+]?\d+(?:\.\d+)?\s*")


@dataclass(frozen=True)
class _Context:
    currency_hint: str | None
    locale_hint: str | None
    page_url: str | None

    def resolve(self, symbol_or_code: str | None) -> str:
        return resolve_currency(
            symbol_or_code,
            currency_hint=self.currency_hint,
            locale_hint=self.locale_hint,
            page_url=self.page_url,
        )


def _one_amount(value: Any, currency: str | None) -> tuple[Decimal, str | None]:
    if isinstance(value, bool):
        raise PriceParseError(ErrorClass.PARSE_NO_PRICE, f"price {value!r} is a boolean, not an amount")
    if isinstance(value, float):
        # Only extruct's lenient JSON fallback produces floats; repr is the shortest string that
        # round-trips, i.e. the digits the page wrote.
        value = Decimal(repr(value))
    if isinstance(value, int):
        value = Decimal(value)
    if isinstance(value, Decimal):
        return validate_amount(value, value), None
    if isinstance(value, dict):
        # A price stated as an object ({"value": 3499}, {"@value": "34.90"}, {"amount": ...}).
        inner = next((value[k] for k in ("value", "@value", "amount", "price") if value.get(k) not in (None, "")), None)
        if inner is None or isinstance(inner, dict):
            raise PriceParseError(ErrorClass.PARSE_NO_PRICE, f"price object {value!r} states no amount")
        return _one_amount(inner, currency)
    if isinstance(value, str):
        if _PLAIN_DECIMAL.fullmatch(value):
            # schema.org prices use "." as decimal point, so "1.234" here means 1.234.
            return validate_amount(Decimal(value.strip()), value), None
        return parse_amount(value, currency=currency)
    raise PriceParseError(ErrorClass.PARSE_NO_PRICE, f"price {value!r} is not a number or text")


def _amount_of(value: Any, currency: str | None) -> tuple[Decimal, str | None]:
    """Amount and currency token from a price property that may repeat (nested microdata
    ``itemprop=price`` yields ``["$ 155.55", "155.55"]``): unparsable repeats are ignored,
    disagreeing ones are ambiguous."""
    results: list[tuple[Decimal, str | None]] = []
    errors: list[ExtractionError] = []
    items = [value] if isinstance(value, dict) and "@value" not in value else _scalars(value)
    for item in items:
        try:
            results.append(_one_amount(item, currency))
        except PriceParseError as exc:
            errors.append(exc)
    if not results:
        raise most_specific_error(errors) or PriceParseError(ErrorClass.PARSE_NO_PRICE, "offer has no price")
    amounts = {amount for amount, _ in results}
    if len(amounts) > 1:
        raise PriceParseError(
            ErrorClass.PARSE_AMBIGUOUS,
            f"one offer states several prices: {', '.join(map(str, sorted(amounts)))}",
        )
    token = next((t for _, t in results if t), None)
    return results[0][0], token


def _is_unit_price(spec: dict[str, Any]) -> bool:
    quantity = _get(spec, "referenceQuantity")
    if quantity is None:
        return False
    if not isinstance(quantity, dict):
        return True
    unit = (_text(_get(quantity, "unitCode")) or _text(_get(quantity, "unitText")) or "").lower()
    value = _text(_get(quantity, "value"))
    return not (unit in _PIECE_UNITS and value in (None, "1"))


@dataclass(frozen=True)
class _Aggregate:
    node: dict[str, Any]

    @property
    def currency(self) -> str | None:
        return _text(_get(self.node, "priceCurrency"))

    def count(self) -> int | None:
        raw = _text(_get(self.node, "offerCount"))
        return int(raw) if raw is not None and raw.isdigit() else None


class _SchemaOrgWalker:
    """Collects OfferCandidates from JSON-LD items or uniform microdata items."""

    def __init__(self, ctx: _Context):
        self.ctx = ctx
        self.candidates: list[OfferCandidate] = []
        self._serial = itertools.count()

    def _group_of(self, product: dict[str, Any]) -> str:
        # Duplicate blocks of one product (same sku / id) are one product, not a conflict.
        for field_name in ("sku", "productID", "gtin13", "gtin", "mpn", "@id"):
            value = _text(_get(product, field_name))
            if value:
                return f"{field_name}:{value.lower()}"
        return f"node:{next(self._serial)}"

    def visit(self, node: Any, group: str | None = None) -> None:
        if isinstance(node, (list, tuple)):
            for item in node:
                self.visit(item, group)
            return
        if not isinstance(node, dict):
            return
        graph = _get(node, "@graph")
        if graph is not None:
            self.visit(graph)
        offers = _get(node, "offers")
        variants = _get(node, "hasVariant")
        own_group = group or (self._group_of(node) if offers is not None or variants is not None else None)
        is_offer = bool(_types(node) & _OFFER_TYPES)
        if offers is not None and not is_offer:
            for offer in _as_list(offers):
                if isinstance(offer, dict):
                    self._offer(offer, node, own_group or self._group_of(node))
        elif is_offer or any(
            _get(node, key) is not None for key in ("price", "lowPrice", "priceSpecification")
        ):
            # An Offer outside a Product (microdata without itemscope Product, or an
            # AggregateOffer at the top level): its product, if any, is itemOffered.
            item = _get(node, "itemOffered")
            product = item if isinstance(item, dict) else None
            self._offer(
                node, product, group or (self._group_of(product) if product else f"node:{next(self._serial)}")
            )
        if variants is not None:
            self.visit(variants, own_group)
        main = _get(node, "mainEntity")
        if main is not None:
            self.visit(main)

    def _offer(
        self, node: dict[str, Any], product: dict[str, Any] | None, group: str, agg: _Aggregate | None = None
    ) -> None:
        is_aggregate = "aggregateoffer" in _types(node) or (
            _get(node, "lowPrice") is not None and _get(node, "price") is None
        )
        if is_aggregate:
            nested = [o for o in _as_list(_get(node, "offers")) if isinstance(o, dict)]
            if nested:
                for offer in nested:
                    self._offer(offer, product, group, _Aggregate(node))
                return
            self.candidates.append(self._build(node, product, group, _Aggregate(node), aggregate_self=True))
            return
        if all(_get(node, key) is None for key in ("price", "priceSpecification")):
            # An outer Offer without a price wrapping inner Offers that state it (nested
            # microdata): the inner ones are the offers, inheriting what the outer one says.
            nested = [o for o in _as_list(_get(node, "offers")) if isinstance(o, dict)]
            if nested:
                outer = {k: v for k, v in node.items() if not (isinstance(k, str) and _local_name(k).lower() == "offers")}
                for offer in nested:
                    self._offer({**outer, **offer}, product, group, agg)
                return
        self.candidates.append(self._build(node, product, group, agg))

    def _build(
        self,
        node: dict[str, Any],
        product: dict[str, Any] | None,
        group: str,
        agg: _Aggregate | None,
        aggregate_self: bool = False,
    ) -> OfferCandidate:
        keys: set[str] = set()
        for source in (node, product or {}):
            for field_name in _ID_FIELDS:
                for value in _scalars(_get(source, field_name)):
                    keys |= identifier_keys(value)
        variant_id = None
        for field_name in ("url", "@id"):
            for value in _scalars(_get(node, field_name)):
                found = re.search(r"[?&]variant=(\d+)", str(value))
                variant_id = variant_id or (found.group(1) if found else None)
        product_title = _text(_get(product, "name")) if product else None
        product_url = (_text(_get(product, "url")) or _text(_get(product, "@id"))) if product else None
        meta = dict(
            product_url=product_url,
            availability=normalize_availability(_get(node, "availability")),
            variant_id=variant_id,
            sku=_text(_get(node, "sku")) or (_text(_get(product, "sku")) if product else None),
            title=_text(_get(node, "name")) or product_title,
            product_title=product_title,
            keys=frozenset(keys),
            group=group,
            is_aggregate=aggregate_self,
        )
        try:
            return OfferCandidate(**meta, **self._prices(node, agg, aggregate_self))  # type: ignore[arg-type]
        except ExtractionError as exc:
            return OfferCandidate(error=exc, **meta)  # type: ignore[arg-type]

    def _prices(self, node: dict[str, Any], agg: _Aggregate | None, aggregate_self: bool) -> dict[str, Any]:
        current, regular = self._price_sources(node, aggregate_self)
        if not current:
            raise PriceParseError(ErrorClass.PARSE_NO_PRICE, "offer states no price")
        offer_currency = _text(_get(node, "priceCurrency"))
        declared_fallback = offer_currency or (agg.currency if agg else None)

        parsed: list[tuple[Decimal, str, bool]] = []
        errors: list[ExtractionError] = []
        for value, spec_currency, vat_included in current:
            try:
                parsed.append((*self._money(value, spec_currency or declared_fallback), vat_included))
            except PriceParseError as exc:
                errors.append(exc)
        if not parsed:
            raise most_specific_error(errors)  # type: ignore[misc]
        if len({(a, c) for a, c, _ in parsed}) > 1:
            # Shops that state both net and gross prices: the buyer pays the VAT-inclusive one.
            parsed = [p for p in parsed if p[2]] or parsed
        if len({(a, c) for a, c, _ in parsed}) > 1:
            shown = ", ".join(f"{a} {c}" for a, c, _ in parsed)
            raise PriceParseError(ErrorClass.PARSE_AMBIGUOUS, f"one offer states several prices: {shown}")
        amount, currency, _ = parsed[0]

        regular_amount = None
        for value, spec_currency in regular:
            try:
                reg_amount, reg_currency = self._money(value, spec_currency or declared_fallback or currency)
            except PriceParseError:
                continue  # a broken list price must not cost us the real price
            if reg_currency == currency and reg_amount > amount:
                regular_amount = max(regular_amount or reg_amount, reg_amount)

        range_node = node if aggregate_self else (agg.node if agg else None)
        low = high = None
        count = None
        if range_node is not None:
            low = self._optional_money(_get(range_node, "lowPrice"), currency)
            high = self._optional_money(_get(range_node, "highPrice"), currency)
            count = _Aggregate(range_node).count()
        return dict(
            amount=amount,
            currency=currency,
            regular_amount=regular_amount,
            low_amount=low,
            high_amount=high,
            offer_count=count,
        )

    def _price_sources(
        self, node: dict[str, Any], aggregate_self: bool
    ) -> tuple[list[tuple[Any, str | None, bool]], list[tuple[Any, str | None]]]:
        current: list[tuple[Any, str | None, bool]] = []
        regular: list[tuple[Any, str | None]] = []
        direct = _get(node, "price")
        if direct is None and aggregate_self:
            direct = _get(node, "lowPrice")  # an AggregateOffer's "from" price
        if direct is not None:
            current.append((direct, None, False))
        typed_sale: list[tuple[Any, str | None, bool]] = []
        untyped: list[tuple[Any, str | None, bool]] = []
        for spec in _as_list(_get(node, "priceSpecification")):
            if not isinstance(spec, dict) or _is_unit_price(spec):
                continue
            value = _get(spec, "price")
            if value is None:
                continue
            spec_currency = _text(_get(spec, "priceCurrency"))
            price_type = _local_name(_text(_get(spec, "priceType")) or "").lower()
            vat = _scalars(_get(spec, "valueAddedTaxIncluded"))
            entry = (value, spec_currency, any(v is True or str(v).strip().lower() == "true" for v in vat))
            if price_type in _LIST_PRICE_TYPES:
                regular.append((value, spec_currency))
            elif price_type == "saleprice":
                typed_sale.append(entry)
            else:
                untyped.append(entry)
        if not current:
            current = typed_sale or untyped
        if not current and regular:
            # Only a list price is stated: that is what the buyer pays; there is no discount.
            current, regular = [(v, c, False) for v, c in regular], []
        return current, regular

    def _money(self, value: Any, declared: str | None) -> tuple[Decimal, str]:
        declared_iso = self.ctx.resolve(declared) if declared else None
        amount, token = _amount_of(value, declared_iso)
        # Declared markup currency beats a symbol in the text ("$121.95" with priceCurrency EUR).
        currency = declared_iso or self.ctx.resolve(token)
        return normalize_amount(amount, currency), currency

    def _optional_money(self, value: Any, currency: str) -> Decimal | None:
        if value is None:
            return None
        try:
            amount, _ = _amount_of(value, currency)
        except PriceParseError:
            return None  # the stated range is informational; a broken bound is dropped, not guessed
        return normalize_amount(amount, currency)


# --------------------------------------------------------------------------- document and sources

_JSONLD_SCRIPTS = lxml.etree.XPath(
    "descendant-or-self::script[contains(translate(@type, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', "
    "'abcdefghijklmnopqrstuvwxyz'), 'ld+json')]"
)
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid JSON number for a price")


def _decode(html: str | bytes) -> str:
    if isinstance(html, str):
        return html
    if not isinstance(html, (bytes, bytearray)):
        raise ExtractionError(
            ErrorClass.MALFORMED_BODY, f"page body must be str or bytes, got {type(html).__name__}"
        )
    # BOM, then <meta charset>, then UTF-8 / cp1252 sniffing: what browsers do.
    _, text = html_to_unicode(None, bytes(html))
    return text


def _parse_document(html: str | bytes) -> lxml.html.HtmlElement:
    text = _decode(html)
    stripped = text.strip()
    if not stripped:
        raise ExtractionError(ErrorClass.MALFORMED_BODY, "page body is empty")
    if "\x00" in text:
        raise ExtractionError(ErrorClass.MALFORMED_BODY, "page body is binary data, not HTML")
    if stripped[0] in "{[":
        raise ExtractionError(
            ErrorClass.MALFORMED_BODY,
            "page body is JSON, not HTML (a Shopify .json/.js endpoint goes to parse_shopify_product)",
        )
    if "<" not in stripped:
        raise ExtractionError(
            ErrorClass.MALFORMED_BODY, "page body is plain text, not HTML (no markup at all)"
        )
    # lxml refuses str input that carries an XML encoding declaration (XHTML pages).
    text = _XML_DECLARATION.sub("", text, count=1)
    try:
        return lxml.html.fromstring(text)
    except (lxml.etree.ParserError, ValueError) as exc:
        raise ExtractionError(
            ErrorClass.MALFORMED_BODY, f"page body cannot be parsed as HTML: {exc}"
        ) from exc


def _page_locale(tree: lxml.html.HtmlElement) -> str | None:
    found = [
        *tree.xpath("//meta[@property='og:locale']/@content"),
        *tree.xpath("/html/@lang | //html/@lang"),
        *tree.xpath(
            "//meta[translate(@http-equiv, 'CONTENT-LANGUAGE', 'content-language')='content-language']/@content"
        ),
    ]
    locales = [str(v).split(",")[0].strip() for v in found if str(v).strip()]
    # A locale with a region ("en_GB") says something about currency; "en" does not.
    return next((loc for loc in locales if region_from_locale(loc)), locales[0] if locales else None)


def _jsonld_items(tree: lxml.html.HtmlElement) -> Iterator[Any]:
    for script in _JSONLD_SCRIPTS(tree):
        body = script.xpath("string()")
        try:
            yield json.loads(body, parse_float=Decimal, parse_constant=_reject_constant, strict=False)
            continue
        except ValueError:
            pass
        try:
            # Lenient retry (trailing commas, JS/HTML comments) with extruct's own parser.
            yield list(JsonLdExtractor().extract_items(script))
        except Exception:  # noqa: BLE001 - one broken block must not hide the rest of the page
            continue


def _jsonld_candidates(tree: lxml.html.HtmlElement, ctx: _Context, page_url: str) -> list[OfferCandidate]:
    walker = _SchemaOrgWalker(ctx)
    for item in _jsonld_items(tree):
        walker.visit(item)
    return walker.candidates


def _microdata_candidates(tree: lxml.html.HtmlElement, ctx: _Context, page_url: str) -> list[OfferCandidate]:
    try:
        items = extruct.extract(tree, base_url=page_url, syntaxes=["microdata"], uniform=True)["microdata"]
    except Exception:  # noqa: BLE001 - broken microdata falls through to OpenGraph
        return []
    walker = _SchemaOrgWalker(ctx)
    walker.visit(items)
    return walker.candidates


def _opengraph_candidates(tree: lxml.html.HtmlElement, ctx: _Context, page_url: str) -> list[OfferCandidate]:
    try:
        items = extruct.extract(
            tree, base_url=page_url, syntaxes=["opengraph"], uniform=True, with_og_array=True
        )["opengraph"]
    except Exception:  # noqa: BLE001 - broken OpenGraph means no OpenGraph price
        return []
    candidates = []
    for og in items:

        def first(*names: str, og: dict[str, Any] = og) -> Any:
            return next((og[n] for n in names if og.get(n) not in (None, "", [])), None)

        price = first("product:price:amount", "og:price:amount")
        sale = first("product:sale_price:amount", "og:sale_price:amount")
        if price is None and sale is None:
            continue
        currency = _text(first("product:price:currency", "og:price:currency", "product:sale_price:currency"))
        node: dict[str, Any] = {"price": sale if sale is not None else price, "priceCurrency": currency}
        original = first("product:original_price:amount", "og:price:standard_amount")
        list_prices = [original] if original is not None else []
        if sale is not None and price is not None:
            list_prices.append(price)
        node["priceSpecification"] = [{"price": p, "priceType": "ListPrice"} for p in list_prices]
        node["availability"] = first("product:availability", "og:availability")
        node["sku"] = first("product:retailer_item_id")
        node["name"] = first("og:title")
        walker = _SchemaOrgWalker(ctx)
        walker._offer(node, None, "opengraph")
        candidates.extend(walker.candidates)
    return candidates


_SOURCES: tuple[tuple[str, Callable[[lxml.html.HtmlElement, _Context, str], list[OfferCandidate]]], ...] = (
    ("json-ld", _jsonld_candidates),
    ("microdata", _microdata_candidates),
    ("opengraph", _opengraph_candidates),
)


def _validated_currency_hint(currency_hint: str | None) -> str | None:
    if currency_hint is None or not currency_hint.strip():
        return None
    code, _ = lookup_symbol(currency_hint)
    if code is None:
        raise PriceParseError(
            ErrorClass.CURRENCY_UNKNOWN,
            f"currency hint {currency_hint!r} does not name exactly one ISO 4217 currency",
        )
    return code


def _page_hints(tree: lxml.html.HtmlElement, page_url: str) -> PageHints:
    urls = {
        *tree.xpath("//link[translate(@rel, 'CANONICAL', 'canonical')='canonical']/@href"),
        *tree.xpath("//meta[@property='og:url']/@content"),
        page_url or "",
    }
    titles = [" ".join(h.text_content().split()) for h in tree.xpath("//h1")[:2]]
    titles += [str(t) for t in tree.xpath("//meta[@property='og:title']/@content")[:1]]
    titles += [" ".join(t.text_content().split()) for t in tree.xpath("//title")[:1]]
    return PageHints(urls=frozenset(_norm_url(str(u)) for u in urls if str(u).strip()), titles=tuple(t for t in titles if t))


def _meta_offer(tree: lxml.html.HtmlElement, ctx: _Context) -> ExtractedOffer | None:
    """Product meta outside schema.org and OpenGraph: a Twitter product card's PRICE row."""
    raw = twitter_card_price(tree)
    if raw is None:
        return None
    amount, token = parse_amount(raw)
    currency = ctx.resolve(token)
    return ExtractedOffer(
        amount=normalize_amount(amount, currency),
        currency=currency,
        availability=None,
        regular_amount=None,
        source="meta",
        confidence=SOURCE_CONFIDENCE["meta"],
        evidence=("meta", "twitter:label PRICE / twitter:data"),
    )


def _dom_offer(tree: lxml.html.HtmlElement, ctx: _Context) -> ExtractedOffer:
    reading = read_visible_price(tree, ctx.resolve)
    return ExtractedOffer(
        amount=reading.amount,
        currency=reading.currency,
        availability=None,
        regular_amount=reading.regular_amount,
        source="dom",
        confidence=reading.confidence,
        evidence=reading.evidence,
    )


def _with_visible_details(offer: ExtractedOffer, tree: lxml.html.HtmlElement, ctx: _Context) -> ExtractedOffer:
    """Fill what structured data left out from the visible page: a VAT-inclusive displayed price
    over an ex-VAT meta price, and the stock state."""
    if offer.source in ("opengraph", "meta"):
        try:
            shown = read_visible_price(tree, ctx.resolve)
        except ExtractionError:
            shown = None
        if shown is not None and shown.vat_included and shown.currency == offer.currency and shown.amount > offer.amount:
            offer = replace(
                offer,
                amount=shown.amount,
                regular_amount=shown.regular_amount,
                source="dom",
                confidence=min(offer.confidence, shown.confidence + 0.05),
                evidence=(*shown.evidence, f"displayed VAT-inclusive price preferred over {offer.source} {offer.amount}"),
            )
    gone = page_says_gone(tree)
    if gone is not None:
        offer = replace(offer, page_flags=(*offer.page_flags, "soft_404"), evidence=(*offer.evidence, f"soft 404: {gone}"))
    if offer.availability is None:
        availability, why = visible_availability(tree)
        if availability is not None:
            offer = replace(offer, availability=availability, evidence=(*offer.evidence, f"availability: {why}"))
    return offer


# Refusals after which the page's own stock wording is still reported (ExtractionError.availability).
_STOCK_STILL_STATED = (ErrorClass.PARSE_NO_PRICE, ErrorClass.CURRENCY_UNKNOWN)


def extract_offer(
    html: str | bytes,
    page_url: str,
    *,
    variant_hint: str | None = None,
    currency_hint: str | None = None,
) -> ExtractedOffer:
    """The offer on a product page (policy in the module doc). Raises :class:`ExtractionError`
    with MALFORMED_BODY, PARSE_NO_PRICE, PARSE_ZERO_PRICE, PARSE_AMBIGUOUS, CURRENCY_UNKNOWN or
    VARIANT_NOT_FOUND."""
    tree = _parse_document(html)
    try:
        return _extract(tree, page_url, variant_hint, currency_hint)
    except ExtractionError as exc:
        if exc.error_class in _STOCK_STILL_STATED and exc.availability is None and variant_hint is None:
            # The page is about one product whose price cannot be read (none shown, or no
            # currency anywhere): what it says about stock is still true.
            exc.availability = visible_availability(tree)[0]
        raise
    except (RecursionError, MemoryError) as exc:
        raise ExtractionError(ErrorClass.MALFORMED_BODY, f"page too deeply nested or too large to read: {type(exc).__name__}") from None
    except (ArithmeticError, ValueError, TypeError, KeyError, IndexError, AttributeError, lxml.etree.LxmlError) as exc:
        # A page shaped in a way no rule foresaw is a refusal with a reason, never a crash.
        raise ExtractionError(ErrorClass.MALFORMED_BODY, f"page could not be read: {type(exc).__name__}: {exc}"[:300]) from None


def _extract(
    tree: lxml.html.HtmlElement, page_url: str, variant_hint: str | None, currency_hint: str | None
) -> ExtractedOffer:
    hint_currency = _validated_currency_hint(currency_hint)
    ctx = _Context(currency_hint=hint_currency, locale_hint=_page_locale(tree), page_url=page_url)
    hint = variant_hint.strip() if variant_hint and variant_hint.strip() else None
    hints = _page_hints(tree, page_url)

    errors: list[ExtractionError] = []
    seen: list[OfferCandidate] = []
    for source, produce in _SOURCES:
        if source != "opengraph" and any(e.error_class is ErrorClass.PARSE_AMBIGUOUS for e in errors):
            continue  # after an ambiguous source only OpenGraph, which describes the page itself, may settle it
        candidates = produce(tree, ctx, page_url)
        seen.extend(candidates)
        if hint is not None:
            candidates = match_variant(candidates, hint)
            if not candidates:
                continue
        usable = [c for c in candidates if c.error is None]
        if usable:
            try:
                offer = choose_offer(usable, source=source, currency_hint=hint_currency, hints=hints)
            except ExtractionError as exc:
                if exc.error_class is not ErrorClass.PARSE_AMBIGUOUS or hint is not None:
                    raise
                # Structured data that cannot say which product the page is about: a lower
                # source may (OpenGraph describes the page itself); else this is the answer.
                errors.append(exc)
                continue
            return _with_visible_details(offer, tree, ctx)
        if hint is not None:
            raise most_specific_error(c.error for c in candidates if c.error)  # type: ignore[misc]
        errors.extend(c.error for c in candidates if c.error)

    if hint is not None and seen:
        known = sorted({c.sku or c.variant_id for c in seen if c.sku or c.variant_id})
        listed = (
            f" (offers carry: {', '.join(known[:10])})"
            if known
            else " (offers carry no sku, gtin or variant id)"
        )
        raise ExtractionError(
            ErrorClass.VARIANT_NOT_FOUND, f"no offer on the page matches variant {hint!r}{listed}"
        )
    if hint is None and not any(e.error_class is ErrorClass.PARSE_AMBIGUOUS for e in errors):
        # The page publishes no usable structured offer: read what a person sees.
        try:
            meta = _meta_offer(tree, ctx)
        except ExtractionError as exc:
            errors.append(exc)
            meta = None
        if meta is not None:
            return _with_visible_details(meta, tree, ctx)
        if all(e.error_class in (ErrorClass.PARSE_NO_PRICE, ErrorClass.MALFORMED_BODY) for e in errors):
            try:
                return _with_visible_details(_dom_offer(tree, ctx), tree, ctx)
            except ExtractionError as exc:
                if exc.error_class is not ErrorClass.PARSE_NO_PRICE:
                    raise
    best = most_specific_error(errors)
    if best is None:
        best = ExtractionError(
            ErrorClass.PARSE_NO_PRICE,
            "no price on the page: no schema.org Offer (JSON-LD or microdata), no OpenGraph or product "
            "meta price, and no confident price in the visible page",
        )
    if best.error_class is ErrorClass.PARSE_NO_PRICE and best.availability is None:
        # No price, but the page may still say whether the product can be bought (a sold-out
        # page often drops the price): structured offers first, then the visible wording.
        best.availability = _merge_availability(seen) or visible_availability(tree)[0]
    raise best

"""The sandbox shop's order stream: seeded, deterministic demand that responds to price.

Each sandbox shop sells every day. For a variant ``v`` on day ``d``::

    expected units  λ(v, d) = base_rate(v) × demand_scale × (our_price(v, d) / market(v, d)) ^ -elasticity(v)
    units           ~ Poisson(λ)   (seeded by shop, seed, variant and day)

``base_rate`` (0.15–1.65 units a day at market parity) and ``elasticity`` (1.2–3.8) are
hashed from the shop and the variant; ``our_price(v, d)`` is the price in force that day
(the catalog price, then every ``productVariantsBulkUpdate`` or merchant edit from the
day it happened); ``market(v, d)`` is the median competitor price when the sandbox world
provides it (:meth:`OrderStream.set_market_price`), else the variant's original price.
So applying a rule that undercuts the market visibly sells more units at a lower margin.

Units are split into line items of 1–2 pieces and packed into orders of 1–3 lines,
spread over the day. About one line in ten carries a 10 % discount
(``discountedUnitPriceSet`` below ``originalUnitPriceSet``). About one order in 25 is
partly refunded 1–5 days later, which moves its ``updatedAt`` to the refund.

A day's orders exist once the day is over (the sandbox date is past it): a closed day
never changes, which keeps backfills and re-runs reproducible. Refunds appear once
their day is over, too.

Test hooks: :meth:`OrderStream.malform` corrupts one order the way a buggy app or a
data migration might (a line without variant or SKU, a currency that is not the shop's,
a negative quantity, an unreadable amount), all still valid against the schema.

This module is the sandbox's own model of Shopify orders, written from the Admin API
reference (Order, LineItem, Refund, RefundLineItem, MoneyBag, the ``orders`` search
syntax); it imports nothing from the connectors it checks.
"""

from __future__ import annotations

import datetime as dt
import math
import random
import re
import statistics
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from graphql import GraphQLError

from calibr_pipeline.domain.money import quantize
from calibr_pipeline.sandbox.demo_catalog import stable_int

if TYPE_CHECKING:  # pragma: no cover
    from calibr_pipeline.sandbox.shopify_admin import AdminShop, SandboxVariant

HISTORY_START = dt.date(2026, 1, 1)
MAX_REFUND_DELAY_DAYS = 5
MALFORMATIONS = ("missing_variant", "currency_mismatch", "negative_quantity", "bad_amount")
_ORDER_ID_BASE = 5_100_000_000_000
_LINE_ID_BASE = 13_800_000_000_000
_REFUND_ID_BASE = 910_000_000_000

MarketPrice = Callable[[str, dt.date], Decimal | None]


@dataclass(frozen=True)
class DemandModel:
    base_rate: float  # expected units a day when our price equals the market's
    elasticity: float  # > 0: units fall by this power of our price / market


@dataclass(eq=False)
class SandboxLineItem:
    numeric_id: int
    variant_gid: str
    sku: str | None
    title: str
    quantity: int
    original_unit_price: Decimal
    discounted_unit_price: Decimal


@dataclass(eq=False)
class SandboxRefund:
    numeric_id: int
    created_at: dt.datetime
    line: SandboxLineItem
    quantity: int


@dataclass(eq=False)
class SandboxOrder:
    numeric_id: int
    number: int
    created_at: dt.datetime
    currency: str
    lines: list[SandboxLineItem]
    refunds: list[SandboxRefund] = field(default_factory=list)
    malformation: str | None = None

    @property
    def gid(self) -> str:
        return f"gid://shopify/Order/{self.numeric_id}"


class OrderStream:
    """Orders of one :class:`AdminShop`, generated lazily per closed day and cached."""

    def __init__(
        self,
        shop: AdminShop,
        *,
        seed: int = 0,
        today: Callable[[], dt.date] = lambda: dt.datetime.now(dt.UTC).date(),
        history_start: dt.date = HISTORY_START,
        demand_scale: float = 1.0,
    ):
        self.shop = shop
        self.seed = seed
        self.today = today
        self.history_start = history_start
        self.demand_scale = demand_scale
        self._lock = threading.RLock()
        self._days: dict[dt.date, list[SandboxOrder]] = {}
        # Per variant gid: [(effective from day, price)], ascending; the catalog price first.
        self._timeline: dict[str, list[tuple[dt.date, Decimal]]] = {}
        self._original: dict[str, Decimal] = {}
        self._market: MarketPrice | None = None
        self._malformed: dict[int, str] = {}  # order number -> malformation
        for variant in shop.all_variants():
            self._timeline[variant.gid] = [(dt.date.min, variant.price)]
            self._original[variant.gid] = variant.price

    # -- configuration --------------------------------------------------------------------

    def set_market_price(self, market: MarketPrice | None) -> None:
        """``market(variant_gid, day)``: the competitors' price in the shop currency, or None."""
        with self._lock:
            self._market = market

    def demand(self, variant_gid: str) -> DemandModel:
        h = stable_int("demand", self.seed, self.shop.name, variant_gid)
        return DemandModel(base_rate=0.15 + (h % 151) / 100, elasticity=1.2 + (h // 151 % 261) / 100)

    # -- prices over time -----------------------------------------------------------------

    def price_changed(self, variant: SandboxVariant) -> None:
        """Called by every write and merchant edit: the new price holds from today on."""
        with self._lock:
            timeline = self._timeline.setdefault(variant.gid, [(dt.date.min, variant.price)])
            day = self.today()
            while timeline and timeline[-1][0] >= day and len(timeline) > 1:
                timeline.pop()  # a second change the same day replaces the first
            timeline.append((day, variant.price))

    def price_on(self, variant_gid: str, day: dt.date) -> Decimal | None:
        timeline = self._timeline.get(variant_gid)
        if not timeline:
            return None
        price = timeline[0][1]
        for start, value in timeline:
            if start > day:
                break
            price = value
        return price

    def expected_units(self, variant_gid: str, day: dt.date) -> float:
        price = self.price_on(variant_gid, day)
        if price is None or price <= 0:
            return 0.0
        market = self._market(variant_gid, day) if self._market else None
        reference = market if market and market > 0 else self._original[variant_gid]
        model = self.demand(variant_gid)
        ratio = float(price / reference)
        return model.base_rate * self.demand_scale * ratio ** (-model.elasticity)

    # -- test hooks -----------------------------------------------------------------------

    def malform(self, order_number: int, kind: str) -> None:
        """Corrupt order ``#<order_number>`` (see :data:`MALFORMATIONS`)."""
        if kind not in MALFORMATIONS:
            raise ValueError(f"unknown malformation {kind!r}; known: {', '.join(MALFORMATIONS)}")
        with self._lock:
            self._malformed[order_number] = kind
            for orders in self._days.values():
                for order in orders:
                    if order.number == order_number:
                        order.malformation = kind

    def clear_malformations(self) -> None:
        with self._lock:
            self._malformed.clear()
            for orders in self._days.values():
                for order in orders:
                    order.malformation = None

    # -- generation -----------------------------------------------------------------------

    def orders_for_day(self, day: dt.date) -> list[SandboxOrder]:
        """Orders created on ``day`` (empty until the day is over)."""
        if day < self.history_start or day >= self.today():
            return []
        with self._lock:
            orders = self._days.get(day)
            if orders is None:
                orders = self._generate(day)
                self._days[day] = orders
            return orders

    def orders_between(self, first_day: dt.date, last_day: dt.date) -> list[SandboxOrder]:
        first_day = max(first_day, self.history_start)
        last_day = min(last_day, self.today() - dt.timedelta(days=1))
        result: list[SandboxOrder] = []
        day = first_day
        while day <= last_day:
            result.extend(self.orders_for_day(day))
            day += dt.timedelta(days=1)
        return result

    def visible_refunds(self, order: SandboxOrder) -> list[SandboxRefund]:
        today_start = dt.datetime.combine(self.today(), dt.time(), dt.UTC)
        return [r for r in order.refunds if r.created_at < today_start]

    def updated_at(self, order: SandboxOrder) -> dt.datetime:
        return max([order.created_at, *(r.created_at for r in self.visible_refunds(order))])

    def _generate(self, day: dt.date) -> list[SandboxOrder]:
        rng = random.Random(f"orders:{self.seed}:{self.shop.name}:{day.isoformat()}")
        day_index = (day - dt.date(2020, 1, 1)).days
        currency = self.shop.currency
        lines: list[tuple[SandboxVariant, int, Decimal]] = []
        for variant in sorted(self.shop.all_variants(), key=lambda v: v.numeric_id):
            price = self.price_on(variant.gid, day)
            if price is None:
                continue
            units = _poisson(random.Random(f"units:{self.seed}:{self.shop.name}:{variant.gid}:{day}"), self.expected_units(variant.gid, day))
            while units > 0:
                quantity = min(units, 1 + (rng.random() < 0.3))
                lines.append((variant, quantity, price))
                units -= quantity
        rng.shuffle(lines)
        orders: list[SandboxOrder] = []
        seconds = sorted(rng.randrange(86_400) for _ in range(len(lines)))
        line_serial = 0
        start = 0
        # Order numbers are YYMMDD then a daily serial (#2603010001): a day's orders are
        # generated on their own, so numbering cannot count earlier days' orders.
        number_base = int(day.strftime("%y%m%d")) * 10_000 + 1
        while start < len(lines):
            size = min(len(lines) - start, rng.choice((1, 1, 1, 2, 2, 3)))
            chunk = lines[start : start + size]
            created = dt.datetime.combine(day, dt.time(), dt.UTC) + dt.timedelta(seconds=seconds[start])
            order_lines = []
            for variant, quantity, price in chunk:
                line_serial += 1
                discounted = quantize(price * Decimal("0.9"), currency) if rng.random() < 0.1 else price
                order_lines.append(
                    SandboxLineItem(
                        numeric_id=_LINE_ID_BASE + day_index * 100_000 + line_serial,
                        variant_gid=variant.gid,
                        sku=variant.sku,
                        title=f"{variant.product.title} - {variant.title}",
                        quantity=quantity,
                        original_unit_price=price,
                        discounted_unit_price=discounted,
                    )
                )
            serial = len(orders) + 1
            order = SandboxOrder(
                numeric_id=_ORDER_ID_BASE + day_index * 100_000 + serial,
                number=number_base + serial - 1,
                created_at=created,
                currency=currency,
                lines=order_lines,
            )
            if rng.random() < 0.04:
                refunded = rng.choice(order_lines)
                delay = rng.randint(1, MAX_REFUND_DELAY_DAYS)
                at = dt.datetime.combine(day + dt.timedelta(days=delay), dt.time(), dt.UTC) + dt.timedelta(
                    seconds=rng.randrange(86_400)
                )
                order.refunds.append(
                    SandboxRefund(numeric_id=_REFUND_ID_BASE + day_index * 100_000 + serial, created_at=at, line=refunded, quantity=refunded.quantity)
                )
            order.malformation = self._malformed.get(order.number)
            orders.append(order)
            start += size
        return orders


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 30:  # normal approximation; never reached by the demo's rates
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def median_or_none(values: list[Decimal]) -> Decimal | None:
    return statistics.median(values) if values else None


# -- the `orders` search syntax -----------------------------------------------------------

_TERM = re.compile(r"(?P<field>[a-z_]+):(?P<op><=|>=|<|>)?(?P<value>'[^']*'|\"[^\"]*\"|\S+)")
_SEARCHABLE = {"updated_at", "created_at"}


@dataclass(frozen=True)
class OrderFilter:
    terms: tuple[tuple[str, str, dt.datetime], ...]

    def matches(self, created_at: dt.datetime, updated_at: dt.datetime) -> bool:
        for name, op, bound in self.terms:
            value = created_at if name == "created_at" else updated_at
            if not _OPS[op](value, bound):
                return False
        return True

    def created_range(self) -> tuple[dt.date | None, dt.date | None]:
        """The created days that can match (an order's updated_at is at most a refund delay later)."""
        low: dt.date | None = None
        high: dt.date | None = None
        for name, op, bound in self.terms:
            if op in (">", ">="):
                candidate = bound.date() - (dt.timedelta(days=MAX_REFUND_DELAY_DAYS + 1) if name == "updated_at" else dt.timedelta())
                low = candidate if low is None else max(low, candidate)
            elif op in ("<", "<="):
                candidate = bound.date()
                high = candidate if high is None else min(high, candidate)
        return low, high


_OPS: dict[str, Callable[[dt.datetime, dt.datetime], bool]] = {
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    "=": lambda a, b: a == b,
}


def parse_order_query(query: str | None) -> OrderFilter:
    """``updated_at:>='2026-03-01T00:00:00Z' AND updated_at:<'2026-03-02T00:00:00Z'``.

    Only ``created_at`` and ``updated_at`` with comparison operators (joined by spaces or
    ``AND``) are implemented; anything else is an explicit error, never ignored.
    """
    if not query or not query.strip():
        return OrderFilter(())
    terms = []
    for token in re.split(r"\s+AND\s+|\s+", query.strip()):
        if not token:
            continue
        match = _TERM.fullmatch(token)
        if not match or match["field"] not in _SEARCHABLE:
            raise GraphQLError(f"The sandbox does not implement the order search term {token!r} (only created_at/updated_at).")
        raw = match["value"].strip("'\"")
        try:
            bound = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError as exc:
            raise GraphQLError(f"Invalid date in order search: {raw!r}") from exc
        if bound.tzinfo is None:
            bound = bound.replace(tzinfo=dt.UTC)
        terms.append((match["field"], match["op"] or "=", bound))
    return OrderFilter(tuple(terms))


# -- resolvers ------------------------------------------------------------------------------

_ORDER_SORTERS: dict[str, Callable[[OrderStream, SandboxOrder], Any]] = {
    "ID": lambda _s, o: o.numeric_id,
    "CREATED_AT": lambda _s, o: (o.created_at, o.numeric_id),
    "UPDATED_AT": lambda s, o: (s.updated_at(o), o.numeric_id),
    "PROCESSED_AT": lambda _s, o: (o.created_at, o.numeric_id),
}


def resolve_orders(shop: AdminShop, paginate: Callable[..., dict[str, Any]], **args: Any) -> dict[str, Any]:
    stream: OrderStream = shop.orders
    query_filter = parse_order_query(args.pop("query", None))
    args.pop("savedSearchId", None)
    sort_key = args.pop("sortKey", None) or "ID"
    if sort_key not in _ORDER_SORTERS:
        raise GraphQLError(f"The sandbox does not implement order sortKey {sort_key}.")
    low, high = query_filter.created_range()
    candidates = stream.orders_between(low or stream.history_start, high or stream.today())
    matching = [o for o in candidates if query_filter.matches(o.created_at, stream.updated_at(o))]
    sorter = _ORDER_SORTERS[sort_key]
    matching.sort(key=lambda o: sorter(stream, o))
    if args.get("reverse"):
        matching.reverse()
    # Already ordered: hand the generic paginator each order's place as its POSITION.
    return paginate([_Positioned(o, i) for i, o in enumerate(matching)], sortKey="POSITION", **{k: v for k, v in args.items() if k != "reverse"})


@dataclass(frozen=True)
class _Positioned:
    """An order with its place in a sorted result, as the generic paginator wants it."""

    order: SandboxOrder
    position: int

    @property
    def numeric_id(self) -> int:
        return self.order.numeric_id

    @property
    def title(self) -> str:
        return str(self.order.number)


def _money_bag(amount: Any, currency: str) -> dict[str, Any]:
    money = {"amount": amount, "currencyCode": currency}
    return {"shopMoney": money, "presentmentMoney": money}


def _fmt(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def order_resolvers(shop_of: Callable[[Any], AdminShop], paginate: Callable[..., dict[str, Any]]) -> dict[tuple[str, str], Callable[..., Any]]:
    """Resolvers for QueryRoot.orders and the Order/LineItem/Refund types."""

    def order_of(source: Any) -> SandboxOrder:
        return source.order if isinstance(source, _Positioned) else source

    def money(info: Any, order: SandboxOrder, amount: Decimal, *, quantity: int = 1) -> dict[str, Any]:
        currency = order.currency
        value: Any = str(quantize(amount * quantity, currency))
        if order.malformation == "currency_mismatch":
            currency = "EUR" if order.currency != "EUR" else "USD"
        if order.malformation == "bad_amount":
            value = value.replace(".", ",") + " approx."
        return _money_bag(value, currency)

    def line_quantity(order: SandboxOrder, line: SandboxLineItem) -> int:
        return -line.quantity if order.malformation == "negative_quantity" else line.quantity

    def line_variant(info: Any, order: SandboxOrder, line: SandboxLineItem) -> Any:
        if order.malformation == "missing_variant":
            return None
        variant = shop_of(info).find_variant(line.variant_gid)
        return variant

    r: dict[tuple[str, str], Callable[..., Any]] = {}
    r["QueryRoot", "orders"] = lambda _src, info, **args: resolve_orders(shop_of(info), paginate, **args)
    r["QueryRoot", "order"] = lambda _src, info, id: _find_order(shop_of(info), id)

    r["Order", "id"] = lambda o, _i: order_of(o).gid
    r["Order", "legacyResourceId"] = lambda o, _i: str(order_of(o).numeric_id)
    r["Order", "name"] = lambda o, _i: f"#{order_of(o).number}"
    r["Order", "createdAt"] = lambda o, _i: _fmt(order_of(o).created_at)
    r["Order", "processedAt"] = lambda o, _i: _fmt(order_of(o).created_at)
    r["Order", "updatedAt"] = lambda o, info: _fmt(shop_of(info).orders.updated_at(order_of(o)))
    r["Order", "cancelledAt"] = lambda o, _i: None
    r["Order", "test"] = lambda o, _i: False
    r["Order", "sourceName"] = lambda o, _i: "web"
    r["Order", "currencyCode"] = lambda o, _i: order_of(o).currency
    r["Order", "lineItems"] = lambda o, _i, **args: paginate(
        [_LineRef(order_of(o), line, i) for i, line in enumerate(order_of(o).lines)], **{"sortKey": "POSITION", **args}
    )
    r["Order", "refunds"] = lambda o, info, first=None: [
        _RefundRef(order_of(o), refund) for refund in shop_of(info).orders.visible_refunds(order_of(o))
    ][: first if first is not None else None]

    r["LineItem", "id"] = lambda ref, _i: f"gid://shopify/LineItem/{ref.line.numeric_id}"
    r["LineItem", "sku"] = lambda ref, _i: None if ref.order.malformation == "missing_variant" else ref.line.sku
    r["LineItem", "title"] = lambda ref, _i: ref.line.title
    r["LineItem", "name"] = lambda ref, _i: ref.line.title
    r["LineItem", "quantity"] = lambda ref, _i: line_quantity(ref.order, ref.line)
    r["LineItem", "currentQuantity"] = lambda ref, info: line_quantity(ref.order, ref.line) - sum(
        x.quantity for x in shop_of(info).orders.visible_refunds(ref.order) if x.line is ref.line
    )
    r["LineItem", "variant"] = lambda ref, info: line_variant(info, ref.order, ref.line)
    r["LineItem", "originalUnitPriceSet"] = lambda ref, info: money(info, ref.order, ref.line.original_unit_price)
    r["LineItem", "discountedUnitPriceSet"] = lambda ref, info: money(info, ref.order, ref.line.discounted_unit_price)

    r["Refund", "id"] = lambda ref, _i: f"gid://shopify/Refund/{ref.refund.numeric_id}"
    r["Refund", "createdAt"] = lambda ref, _i: _fmt(ref.refund.created_at)
    r["Refund", "updatedAt"] = lambda ref, _i: _fmt(ref.refund.created_at)
    r["Refund", "totalRefundedSet"] = lambda ref, info: money(
        info, ref.order, ref.refund.line.discounted_unit_price, quantity=ref.refund.quantity
    )
    r["Refund", "refundLineItems"] = lambda ref, _i, **args: paginate([_RefundLineRef(ref.order, ref.refund)], **{"sortKey": "POSITION", **args})

    r["RefundLineItem", "id"] = lambda ref, _i: f"gid://shopify/RefundLineItem/{ref.refund.numeric_id}"
    r["RefundLineItem", "lineItem"] = lambda ref, _i: _LineRef(ref.order, ref.refund.line, 0)
    r["RefundLineItem", "quantity"] = lambda ref, _i: ref.refund.quantity
    r["RefundLineItem", "restockType"] = lambda ref, _i: "RETURN"
    r["RefundLineItem", "priceSet"] = lambda ref, info: money(info, ref.order, ref.refund.line.discounted_unit_price)
    r["RefundLineItem", "subtotalSet"] = lambda ref, info: money(
        info, ref.order, ref.refund.line.discounted_unit_price, quantity=ref.refund.quantity
    )
    return r


@dataclass(frozen=True)
class _LineRef:
    order: SandboxOrder
    line: SandboxLineItem
    position: int

    @property
    def numeric_id(self) -> int:
        return self.line.numeric_id


@dataclass(frozen=True)
class _RefundRef:
    order: SandboxOrder
    refund: SandboxRefund

    @property
    def numeric_id(self) -> int:
        return self.refund.numeric_id


@dataclass(frozen=True)
class _RefundLineRef:
    order: SandboxOrder
    refund: SandboxRefund
    position: int = 0

    @property
    def numeric_id(self) -> int:
        return self.refund.numeric_id


def _find_order(shop: AdminShop, gid: str) -> SandboxOrder | None:
    try:
        numeric = int(gid.rsplit("/", 1)[-1])
    except ValueError:
        return None
    day = dt.date(2020, 1, 1) + dt.timedelta(days=(numeric - _ORDER_ID_BASE) // 100_000)
    return next((o for o in shop.orders.orders_for_day(day) if o.numeric_id == numeric), None)


def type_name(value: Any) -> str | None:
    if isinstance(value, (SandboxOrder, _Positioned)):
        return "Order"
    if isinstance(value, _LineRef):
        return "LineItem"
    if isinstance(value, _RefundRef):
        return "Refund"
    return None

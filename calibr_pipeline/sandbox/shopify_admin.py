"""Loopback Shopify Admin GraphQL API, executed against the real vendored schema.

URL layout (one server, many shops keyed by path prefix)::

    POST http://127.0.0.1:<port>/shops/<shop>/admin/api/2025-01/graphql.json
         X-Shopify-Access-Token: <token>
         {"query": ..., "variables": {...}, "operationName": ...}

``shop_url(shop)`` (``http://127.0.0.1:<port>/shops/<shop>``) plays the role of
``https://<shop>.myshopify.com``: the client appends ``/admin/api/<version>/graphql.json``.

What behaves like Shopify:

* documents are parsed and validated against the 2025-01 schema; invalid ones get a
  200 with ``errors`` (``Field 'x' doesn't exist on type 'T'``, code ``undefinedField``);
* a wrong or missing token gets Shopify's 401 body;
* cost: ``requestedQueryCost`` from the sandbox's own calculator
  (:mod:`calibr_pipeline.sandbox.admin_cost`, built from Shopify's documentation and
  calibrated on live answers; it shares no code with the client's estimate), charged
  up front; the difference to ``actualQueryCost`` (computed on the returned data) is refunded, so
  ``currentlyAvailable`` reflects what was really spent. Every answer carries
  ``extensions.cost``;
* a per-shop leaky bucket (presets below); when it cannot pay the requested cost the
  answer is HTTP 200, ``errors: [{"message": "Throttled", "extensions": {"code":
  "THROTTLED", ...}}]`` and no ``data``; a query over 1,000 points gets
  ``MAX_COST_EXCEEDED`` and is not charged;
* connections: ``first``/``last`` ≤ 250, opaque base64 cursors, ``edges``/``nodes``/
  ``pageInfo``, ``sortKey`` ID/POSITION/TITLE, ``reverse``.

* writes: ``productVariantsBulkUpdate`` (price / compareAtPrice only), cost 10
  requested and actual, all-or-nothing unless ``allowPartialUpdates: true``,
  validation userErrors with real ``ProductVariantsBulkUpdateUserErrorCode`` values and
  ``field`` paths like ``["variants", "0", "price"]``; every applied variant write
  lands in :attr:`AdminShop.write_log` (time, variant, old → new, request id);
* reads for reconciliation: ``nodes(ids:)`` / ``node(id:)`` resolve ProductVariant and
  Product (``updatedAt`` included); at most 250 ids, like Shopify.

Fields without a resolver answer with an explicit "not implemented by the sandbox"
error rather than a silent null. Add behaviour with
:meth:`ShopifyAdminSandbox.register_resolver`; resolvers receive
``(source, info, **args)`` and find the shop in ``info.context.shop``.

Test hooks (see :class:`AdminFaults`): ``admin.faults("shop")`` injects 5xx, 429 with
``Retry-After``, slow answers (HTTP level, through the world's :class:`FaultInjector`),
THROTTLED answers that look exactly like the bucket's own (``throttle(next=N)`` or a
rate), and per-variant userErrors (``fail_variants``). ``shop.set_price(gid, price)``
plays a merchant editing a price in the admin; ``shop.delete_variant(gid)`` deletes one.

Assumptions (not verified against live Shopify): the wording of the page-size error
("The first argument must be less than or equal to 250") and that invalid documents
are not charged (we report a cost of 0). For ``productVariantsBulkUpdate``: the
wording of userError messages, that ``field`` carries the input index as a string
(``["variants", "1", "id"]``), that a variant of *another* product is reported as
``PRODUCT_VARIANT_DOES_NOT_EXIST``, that a negative price is ``GREATER_THAN_OR_EQUAL_TO``
(the enum also has ``NEGATIVE_PRICE_VALUE``), that ``productVariants`` is ``null`` when
nothing was written, and that prices are stored rounded (half-up) to the currency's
minor unit. ``compareAtPrice`` below ``price`` is accepted, as Shopify does. The static
cost calculator prices ``nodes(ids:)`` as one object whatever the number of ids (a
plain list; no live answer pins it).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import itertools
import json
import math
import random
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Self

from graphql import (
    GraphQLError,
    GraphQLResolveInfo,
    GraphQLSchema,
    execute,
    OperationType,
    get_operation_ast,
    parse,
    validate,
)

from calibr_pipeline.sandbox.admin_cost import (
    SINGLE_QUERY_MAX_COST,
    actual_cost,
    requested_cost,
)
from calibr_pipeline.sandbox.admin_schema import SANDBOX_API_VERSION as ADMIN_API_VERSION
from calibr_pipeline.sandbox.admin_schema import sandbox_admin_schema as load_admin_schema
from calibr_pipeline.domain.catalog import CatalogVariant
from calibr_pipeline.domain.money import quantize
from calibr_pipeline.sandbox._http import (
    SandboxControl,
    SandboxHTTPServer,
    SandboxRequest,
    SandboxResponse,
)
from calibr_pipeline.sandbox.demo_catalog import (
    gid_number,
    product_gid,
    slugify,
    variant_gid,
)
from calibr_pipeline.sandbox.faults import FaultInjector, FaultRule
from calibr_pipeline.sandbox.shopify_orders import OrderStream, order_resolvers
from calibr_pipeline.sandbox.shopify_orders import type_name as _order_type_name

INVALID_TOKEN_MESSAGE = "[API] Invalid API key or access token (unrecognized login or wrong password)"
RATE_LIMITS_DOC = "https://shopify.dev/api/usage/rate-limits"
MAX_PAGE_SIZE = 250
MAX_NODES_IDS = 250
# fnmatch glob of every shop's Admin GraphQL endpoint (for FaultRule.path).
ADMIN_GRAPHQL_PATH = "/shops/*/admin/api/*/graphql.json"
SUPPORTED_VERSIONS = (ADMIN_API_VERSION,)
_PATH = re.compile(r"^/shops/(?P<shop>[A-Za-z0-9][A-Za-z0-9_.-]*)/admin/api/(?P<version>[^/]+)/graphql\.json$")


@dataclass(frozen=True)
class BucketPreset:
    """Leaky-bucket size and restore rate of a plan.

    Standard and Plus follow the figures in the project brief (Standard 2,000 points
    restoring 100/s; Plus 10,000 restoring 1,000/s); Shopify publishes its current
    per-plan numbers at https://shopify.dev/docs/api/usage/rate-limits and they change
    from time to time, so tests that care pass their own preset.
    """

    name: str
    maximum_available: float
    restore_rate: float


STANDARD = BucketPreset("standard", 2000.0, 100.0)
ADVANCED = BucketPreset("advanced", 4000.0, 200.0)
PLUS = BucketPreset("plus", 10000.0, 1000.0)
PRESETS = {p.name: p for p in (STANDARD, ADVANCED, PLUS)}


class LeakyBucket:
    def __init__(self, maximum: float, restore_rate: float, clock: Callable[[], float] = time.monotonic):
        self.maximum = float(maximum)
        self.restore_rate = float(restore_rate)
        self._clock = clock
        self._available = float(maximum)
        self._at = clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._available = min(self.maximum, self._available + (now - self._at) * self.restore_rate)
        self._at = now

    def try_take(self, points: int) -> bool:
        with self._lock:
            self._refill()
            if points > self._available:
                return False
            self._available -= points
            return True

    def refund(self, points: int) -> None:
        with self._lock:
            self._refill()
            self._available = min(self.maximum, self._available + points)

    def drain(self, to: float = 0.0) -> None:
        """Tests: empty the bucket as if another app had spent it."""
        with self._lock:
            self._refill()
            self._available = float(to)

    def throttle_status(self) -> dict[str, float | int]:
        with self._lock:
            self._refill()
            return {
                "maximumAvailable": self.maximum,
                # Floored like Shopify's integral figure; rounding up would let a client
                # believe in points that are not there yet.
                "currentlyAvailable": math.floor(self._available),
                "restoreRate": self.restore_rate,
            }


@dataclass
class ShopStats:
    requests: int = 0  # POSTs that reached this shop's endpoint
    unauthorized: int = 0
    throttled: int = 0
    max_cost_exceeded: int = 0
    invalid_documents: int = 0
    points_spent: int = 0  # sum of actualQueryCost
    forced_throttled: int = 0  # THROTTLED answers injected by AdminFaults (also in ``throttled``)
    in_flight: int = 0  # authorised requests being handled right now
    max_in_flight: int = 0  # the most handled at once (a client's concurrency, as the shop saw it)
    mutations: int = 0  # productVariantsBulkUpdate calls executed (validation failures included)


@dataclass(frozen=True)
class VariantWrite:
    """One variant written by ``productVariantsBulkUpdate`` (and not rolled back)."""

    at: dt.datetime
    request_id: str | None
    product_gid: str
    variant_gid: str
    old_price: Decimal
    new_price: Decimal
    old_compare_at_price: Decimal | None
    new_compare_at_price: Decimal | None

    @property
    def changed(self) -> bool:
        return self.old_price != self.new_price or self.old_compare_at_price != self.new_compare_at_price


_UNSET: Any = object()


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _datetime(value: dt.datetime) -> str:
    # Shopify's DateTime: ISO 8601 in UTC with a Z, whole seconds.
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- sandbox data model ---------------------------------------------------------------------


@dataclass(eq=False)
class SandboxVariant:
    numeric_id: int
    sku: str | None
    title: str
    price: Decimal
    compare_at_price: Decimal | None
    cost: Decimal | None
    position: int
    product: SandboxProduct = field(repr=False)
    updated_at: dt.datetime = field(default_factory=_utcnow, repr=False)

    @property
    def gid(self) -> str:
        return variant_gid(self.numeric_id)


@dataclass(eq=False)
class SandboxProduct:
    numeric_id: int
    handle: str
    title: str
    product_type: str
    vendor: str
    tags: list[str]
    variants: list[SandboxVariant] = field(default_factory=list, repr=False)

    @property
    def gid(self) -> str:
        return product_gid(self.numeric_id)


@dataclass(frozen=True)
class VariantFault:
    code: str  # a ProductVariantsBulkUpdateUserErrorCode value
    message: str
    field: str | None = None  # last element of the field path; None: ["variants", "<i>"]


@dataclass(frozen=True)
class AdminFaultDecision:
    throttle: bool = False
    retry_after: str | None = None  # Retry-After header on a forced THROTTLED answer
    with_status: bool = True  # False: the answer carries no throttleStatus (an edge proxy's answer)


# How an answer is lost *after* a mutation was applied (the write landed, the client
# cannot know): a 503 from the edge, an answer later than the client's timeout, a reset
# connection, a body cut off mid-way, or Shopify's own "data plus errors".
LOST_ANSWER_MODES = ("503", "slow", "reset", "cut", "data_and_errors")


@dataclass(frozen=True)
class LostAnswer:
    mode: str
    delay: float = 0.0


class AdminFaults:
    """Fault injection for one shop's Admin endpoint.

    HTTP-level faults are :class:`FaultRule` s added to the world's
    :class:`FaultInjector` (so they show in ``/__sandbox/faults`` and its counters,
    keyed by this shop); the Admin-specific ones live here:

    * ``throttle(next=N)`` / ``throttle(rate=p)``: answer THROTTLED although the bucket
      could pay, with the very body, status (200) and ``extensions.cost`` of a real one
      and nothing charged; ``retry_after="2.5"`` adds a ``Retry-After`` header and
      ``status=False`` drops ``throttleStatus`` (an answer without the shop's figures);
    * ``fail_variants(gids, code=..., message=...)``: those variants always get a
      userError in ``productVariantsBulkUpdate`` until ``clear()``.

    ``next=N`` modes are deterministic; rates roll on a seeded RNG.
    """

    def __init__(self, shop: str, injector: FaultInjector | None = None, *, seed: int = 0):
        self.shop = shop
        self.injector = injector
        self._lock = threading.Lock()
        self._rng = random.Random(f"{seed}:{shop}")
        self._throttle_next = 0
        self._throttle_next_retry_after: str | None = None
        self._throttle_next_status = True
        self._throttle_rate = 0.0
        self._throttle_rate_retry_after: str | None = None
        self._throttle_rate_status = True
        self._variants: dict[str, VariantFault] = {}
        self._rules: list[FaultRule] = []
        self._lose_next: list[LostAnswer] = []
        self._refuse_mutations = 0
        self._refuse_status = 503
        self._refuse_variants: frozenset[str] = frozenset()

    # -- HTTP level (delegated to the FaultInjector) -------------------------------------

    def _rule(self, **fields: Any) -> FaultRule:
        if self.injector is None:
            raise RuntimeError("HTTP faults need the shop to belong to a ShopifyAdminSandbox")
        rule = self.injector.add(shop=self.shop, path=ADMIN_GRAPHQL_PATH, **fields)
        with self._lock:
            self._rules.append(rule)
        return rule

    def http_5xx(self, *, next: int = 0, rate: float = 0.0, status: int = 503) -> FaultRule:
        return self._rule(fail_next=next, fail_mode="5xx", error_rate=rate, error_status=status)

    def http_429(self, *, next: int = 0, rate: float = 0.0, retry_after: str | float | None = "1.0") -> FaultRule:
        retry_after = None if retry_after is None else str(retry_after)
        return self._rule(fail_next=next, fail_mode="429", rate_limit_rate=rate, retry_after=retry_after)

    def slow(self, *, next: int = 0, rate: float = 0.0, delay: float = 0.5) -> FaultRule:
        """Answer normally but only after ``delay`` seconds (longer than the client's read
        timeout, it is a timeout). Counted as ``timeout`` by the FaultInjector."""
        return self._rule(fail_next=next, fail_mode="timeout", timeout_rate=rate, timeout_delay=delay)

    # -- Admin level ------------------------------------------------------------------------

    def throttle(
        self, *, next: int = 0, rate: float = 0.0, retry_after: str | float | None = None, status: bool = True
    ) -> None:
        """Force THROTTLED answers; ``status=False`` leaves ``throttleStatus`` out of them."""
        if next < 0 or not 0 <= rate <= 1:
            raise ValueError("next must be >= 0 and rate in [0, 1]")
        retry_after = None if retry_after is None else str(retry_after)
        with self._lock:
            if next:
                self._throttle_next = next
                self._throttle_next_retry_after = retry_after
                self._throttle_next_status = status
            if rate or not next:
                self._throttle_rate = rate
                self._throttle_rate_retry_after = retry_after
                self._throttle_rate_status = status

    def fail_variants(
        self,
        variant_gids: Iterable[str],
        *,
        code: str = "INVALID_INPUT",
        message: str = "Input is invalid.",
        field: str | None = None,
    ) -> None:
        fault = VariantFault(code=code, message=message, field=field)
        with self._lock:
            for gid in variant_gids:
                self._variants[gid] = fault

    def lose_answer(self, *, next: int = 1, mode: str = "503", delay: float = 0.5) -> None:
        """The next ``next`` mutations are applied, then their answer is lost (``mode``, one of
        :data:`LOST_ANSWER_MODES`; ``slow`` answers after ``delay`` seconds)."""
        if mode not in LOST_ANSWER_MODES:
            raise ValueError(f"mode must be one of {LOST_ANSWER_MODES}, got {mode!r}")
        with self._lock:
            self._lose_next.extend(LostAnswer(mode, delay) for _ in range(next))

    def fail_mutations(self, *, next: int = 0, variants: Iterable[str] = (), status: int = 503) -> None:
        """Mutations get an HTTP ``status`` *before* they are applied, while reads pass: the
        next ``next`` mutations, and every mutation naming one of ``variants`` (until
        ``clear()``) - a write that fails every attempt while the shop stays readable."""
        with self._lock:
            self._refuse_mutations, self._refuse_status = next, status
            self._refuse_variants = frozenset(variants)

    def refuse_mutation(self, variables: Mapping[str, Any]) -> int | None:
        """Called before each mutation: the status to refuse it with, if it is refused."""
        with self._lock:
            if self._refuse_variants and any(gid in json.dumps(variables) for gid in self._refuse_variants):
                return self._refuse_status
            if self._refuse_mutations <= 0:
                return None
            self._refuse_mutations -= 1
            return self._refuse_status

    def lost_answer(self) -> LostAnswer | None:
        """Called after each executed mutation: how its answer is lost, if it is."""
        with self._lock:
            return self._lose_next.pop(0) if self._lose_next else None

    def variant_fault(self, variant_gid: str) -> VariantFault | None:
        with self._lock:
            return self._variants.get(variant_gid)

    def decide(self) -> AdminFaultDecision:
        """Called once per authorised GraphQL request."""
        with self._lock:
            if self._throttle_next > 0:
                self._throttle_next -= 1
                return AdminFaultDecision(
                    throttle=True, retry_after=self._throttle_next_retry_after, with_status=self._throttle_next_status
                )
            if self._throttle_rate > 0 and self._rng.random() < self._throttle_rate:
                return AdminFaultDecision(
                    throttle=True, retry_after=self._throttle_rate_retry_after, with_status=self._throttle_rate_status
                )
        return AdminFaultDecision()

    @property
    def pending_throttles(self) -> int:
        with self._lock:
            return self._throttle_next

    def clear(self) -> None:
        """Drop this shop's Admin faults and the HTTP rules added through this object."""
        with self._lock:
            self._throttle_next = 0
            self._throttle_rate = 0.0
            self._variants.clear()
            self._lose_next.clear()
            self._refuse_mutations = 0
            self._refuse_variants = frozenset()
            rules, self._rules = self._rules, []
        if self.injector is not None:
            for rule in rules:
                self.injector.remove(rule)


class AdminShop:
    """One shop: catalog, token, bucket and counters."""

    _ids = itertools.count(60_000_000_001)

    def __init__(
        self,
        name: str,
        *,
        access_token: str,
        currency: str,
        products: Sequence[SandboxProduct],
        preset: BucketPreset = STANDARD,
        max_query_cost: int = SINGLE_QUERY_MAX_COST,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.name = name
        self.access_token = access_token
        self.currency = currency
        self.products = sorted(products, key=lambda p: p.numeric_id)
        self.preset = preset
        self.max_query_cost = max_query_cost
        self.bucket = LeakyBucket(preset.maximum_available, preset.restore_rate, clock)
        self.stats = ShopStats()
        self.numeric_id = next(self._ids)
        # Execution holds this lock, so a mutation resolver sees (and leaves) a consistent shop.
        self.lock = threading.RLock()
        self.write_log: list[VariantWrite] = []
        self.faults = AdminFaults(name)
        # Orders (QueryRoot.orders): demand that responds to the price in force each day.
        self.orders = OrderStream(self)

    def __repr__(self) -> str:
        return f"AdminShop({self.name!r}, currency={self.currency!r}, products={len(self.products)}, preset={self.preset.name!r})"

    @classmethod
    def from_catalog(cls, name: str, catalog: Iterable[CatalogVariant], **kw: Any) -> AdminShop:
        rows = list(catalog)
        currencies = {r.currency for r in rows}
        currency = kw.pop("currency", None) or (currencies.pop() if len(currencies) == 1 else "USD")
        products: dict[str, SandboxProduct] = {}
        handles: set[str] = set()
        for row in rows:
            product = products.get(row.product_external_id)
            if product is None:
                handle = base = slugify(row.product_title) or "product"
                n = 2
                while handle in handles:
                    handle, n = f"{base}-{n}", n + 1
                handles.add(handle)
                product = SandboxProduct(
                    numeric_id=gid_number(row.product_external_id),
                    handle=handle,
                    title=row.product_title,
                    product_type=row.product_type,
                    vendor=row.vendor,
                    tags=list(row.tags),
                )
                products[row.product_external_id] = product
            product.variants.append(
                SandboxVariant(
                    numeric_id=gid_number(row.variant_external_id),
                    sku=row.sku,
                    title=row.variant_title,
                    price=row.price,
                    compare_at_price=row.compare_at_price,
                    cost=row.cost,
                    position=len(product.variants) + 1,
                    product=product,
                )
            )
        return cls(name, currency=currency, products=list(products.values()), **kw)

    def catalog(self) -> list[CatalogVariant]:
        """The shop's current state, in the order the connector reads it."""
        with self.lock:
            return [
                CatalogVariant(
                    product_external_id=p.gid,
                    product_title=p.title,
                    product_type=p.product_type,
                    vendor=p.vendor,
                    tags=tuple(p.tags),
                    variant_external_id=v.gid,
                    sku=v.sku,
                    variant_title=v.title,
                    price=v.price,
                    compare_at_price=v.compare_at_price,
                    cost=v.cost,
                    currency=self.currency,
                )
                for p in self.products
                for v in sorted(p.variants, key=lambda v: v.position)
            ]

    def all_variants(self) -> list[SandboxVariant]:
        return [v for p in self.products for v in p.variants]

    def set_preset(self, preset: BucketPreset | str) -> BucketPreset:
        """Move the shop to another plan's bucket (full); returns the previous preset."""
        if isinstance(preset, str):
            preset = PRESETS[preset]
        with self.lock:
            previous, self.preset = self.preset, preset
            self.bucket = LeakyBucket(preset.maximum_available, preset.restore_rate, self.bucket._clock)
        return previous

    def find_product(self, gid: str) -> SandboxProduct | None:
        return next((p for p in self.products if p.gid == gid), None)

    def find_variant(self, gid: str) -> SandboxVariant | None:
        return next((v for v in self.all_variants() if v.gid == gid), None)

    def find_node(self, gid: str) -> SandboxVariant | SandboxProduct | None:
        if gid.startswith("gid://shopify/ProductVariant/"):
            return self.find_variant(gid)
        if gid.startswith("gid://shopify/Product/"):
            return self.find_product(gid)
        return None

    def money(self, amount: Decimal | None) -> str | None:
        # Shopify sends Money as a decimal string; never a JSON number.
        return None if amount is None else str(quantize(amount, self.currency))

    # -- test hooks: the merchant's side and the write log ---------------------------------

    def set_price(self, variant_gid: str, price: Decimal, compare_at_price: Decimal | None | object = _UNSET) -> None:
        """A merchant edits the price in the Shopify admin (not an API write: not logged)."""
        with self.lock:
            variant = self.find_variant(variant_gid)
            if variant is None:
                raise KeyError(f"{self.name} has no variant {variant_gid}")
            variant.price = quantize(Decimal(str(price)), self.currency)
            if compare_at_price is not _UNSET:
                variant.compare_at_price = (
                    None if compare_at_price is None else quantize(Decimal(str(compare_at_price)), self.currency)
                )
            variant.updated_at = _utcnow()
            self.orders.price_changed(variant)

    def delete_variant(self, variant_gid: str) -> None:
        """The merchant deletes a variant; reads then answer ``null`` for its id."""
        with self.lock:
            variant = self.find_variant(variant_gid)
            if variant is None:
                raise KeyError(f"{self.name} has no variant {variant_gid}")
            variant.product.variants.remove(variant)

    def price_of(self, variant_gid: str) -> Decimal | None:
        with self.lock:
            variant = self.find_variant(variant_gid)
            return None if variant is None else variant.price

    def writes(self, variant_gid: str | None = None) -> list[VariantWrite]:
        """A copy of the write log, optionally for one variant."""
        with self.lock:
            return [w for w in self.write_log if variant_gid is None or w.variant_gid == variant_gid]

    def write_counts(self) -> Counter[str]:
        """Writes per variant gid: ``max(shop.write_counts().values()) == 1`` means none twice."""
        with self.lock:
            return Counter(w.variant_gid for w in self.write_log)

    def clear_write_log(self) -> None:
        with self.lock:
            self.write_log.clear()


@dataclass
class ResolveContext:
    shop: AdminShop
    sandbox: ShopifyAdminSandbox
    request_id: str | None = None


Resolver = Callable[..., Any]


# -- pagination ---------------------------------------------------------------------------


def encode_cursor(item_id: int, value: object) -> str:
    raw = json.dumps({"last_id": item_id, "last_value": str(value)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return int(json.loads(base64.urlsafe_b64decode(padded.encode()))["last_id"])
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise GraphQLError("Invalid cursor for current pagination sort.") from exc


_SORTERS: dict[str, Callable[[Any], Any]] = {
    "ID": lambda item: item.numeric_id,
    "POSITION": lambda item: (getattr(item, "position", 0), item.numeric_id),
    "TITLE": lambda item: (item.title, item.numeric_id),
}


def paginate(
    items: Sequence[Any],
    *,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
    reverse: bool = False,
    sortKey: str | None = None,
    query: str | None = None,
    **_ignored: Any,
) -> dict[str, Any]:
    if query:
        raise GraphQLError("The sandbox does not implement the `query` search argument.")
    if first is None and last is None:
        raise GraphQLError("you must provide one of first or last")
    if first is not None and last is not None:
        raise GraphQLError("providing both first and last is not supported")
    for arg, size in (("first", first), ("last", last)):
        if size is not None and size > MAX_PAGE_SIZE:
            raise GraphQLError(f"The {arg} argument must be less than or equal to {MAX_PAGE_SIZE}")
        if size is not None and size < 0:
            raise GraphQLError(f"The {arg} argument must be greater than or equal to 0")
    sort_key = sortKey or "ID"
    if sort_key not in _SORTERS:
        raise GraphQLError(f"The sandbox does not implement sortKey {sort_key}.")
    ordered = sorted(items, key=_SORTERS[sort_key], reverse=bool(reverse))
    ids = [item.numeric_id for item in ordered]
    start, stop = 0, len(ordered)
    if after is not None:
        after_id = decode_cursor(after)
        start = ids.index(after_id) + 1 if after_id in ids else _missing_cursor()
    if before is not None:
        before_id = decode_cursor(before)
        stop = ids.index(before_id) if before_id in ids else _missing_cursor()
    window = ordered[start:stop]
    if first is not None:
        page = window[:first]
        has_next, has_previous = len(window) > first, start > 0
    else:
        page = window[max(0, len(window) - (last or 0)):]
        has_next, has_previous = stop < len(ordered), len(window) > len(page)
    sort_value = _SORTERS[sort_key]
    edges = [{"cursor": encode_cursor(item.numeric_id, sort_value(item)), "node": item} for item in page]
    return {
        "edges": edges,
        "nodes": page,
        "pageInfo": {
            "hasNextPage": has_next,
            "hasPreviousPage": has_previous,
            "startCursor": edges[0]["cursor"] if edges else None,
            "endCursor": edges[-1]["cursor"] if edges else None,
        },
    }


def _missing_cursor() -> int:
    # The item behind the cursor was deleted; Shopify still pages on from its sort value,
    # the sandbox (whose data is static per test) treats it as a client error.
    raise GraphQLError("Invalid cursor for current pagination sort.")


# -- resolvers ----------------------------------------------------------------------------


def _shop(info: GraphQLResolveInfo) -> AdminShop:
    return info.context.shop


def _default_resolvers() -> dict[tuple[str, str], Resolver]:
    r: dict[tuple[str, str], Resolver] = {}

    # QueryRoot
    r["QueryRoot", "shop"] = lambda _src, info: _shop(info)
    r["QueryRoot", "products"] = lambda _src, info, **args: paginate(_shop(info).products, **args)
    r["QueryRoot", "productVariants"] = lambda _src, info, **args: paginate(_shop(info).all_variants(), **args)
    r["QueryRoot", "product"] = lambda _src, info, id: _shop(info).find_product(id)
    r["QueryRoot", "productVariant"] = lambda _src, info, id: _shop(info).find_variant(id)
    r["QueryRoot", "node"] = lambda _src, info, id: _shop(info).find_node(id)
    r["QueryRoot", "nodes"] = _resolve_nodes

    # Mutation
    r["Mutation", "productVariantsBulkUpdate"] = _product_variants_bulk_update

    # Orders, line items and refunds (sandbox/shopify_orders.py)
    r.update(order_resolvers(_shop, paginate))

    # Shop
    r["Shop", "id"] = lambda shop, _info: f"gid://shopify/Shop/{shop.numeric_id}"
    r["Shop", "name"] = lambda shop, _info: shop.name
    r["Shop", "currencyCode"] = lambda shop, _info: shop.currency
    r["Shop", "myshopifyDomain"] = lambda shop, _info: f"{shop.name}.myshopify.com"

    # Product
    r["Product", "id"] = lambda p, _info: p.gid
    r["Product", "legacyResourceId"] = lambda p, _info: str(p.numeric_id)
    r["Product", "handle"] = lambda p, _info: p.handle
    r["Product", "title"] = lambda p, _info: p.title
    r["Product", "productType"] = lambda p, _info: p.product_type
    r["Product", "vendor"] = lambda p, _info: p.vendor
    r["Product", "tags"] = lambda p, _info: list(p.tags)
    r["Product", "status"] = lambda p, _info: "ACTIVE"
    r["Product", "variants"] = lambda p, _info, **args: paginate(p.variants, **{"sortKey": "POSITION", **args})
    r["Product", "variantsCount"] = lambda p, _info: {"count": len(p.variants), "precision": "EXACT"}
    r["Product", "updatedAt"] = lambda p, _info: _datetime(max((v.updated_at for v in p.variants), default=_EPOCH))

    # ProductVariant
    r["ProductVariant", "id"] = lambda v, _info: v.gid
    r["ProductVariant", "legacyResourceId"] = lambda v, _info: str(v.numeric_id)
    r["ProductVariant", "sku"] = lambda v, _info: v.sku
    r["ProductVariant", "title"] = lambda v, _info: v.title
    r["ProductVariant", "displayName"] = lambda v, _info: f"{v.product.title} - {v.title}"
    r["ProductVariant", "position"] = lambda v, _info: v.position
    r["ProductVariant", "price"] = lambda v, info: _shop(info).money(v.price)
    r["ProductVariant", "compareAtPrice"] = lambda v, info: _shop(info).money(v.compare_at_price)
    r["ProductVariant", "product"] = lambda v, _info: v.product
    r["ProductVariant", "updatedAt"] = lambda v, _info: _datetime(v.updated_at)
    r["ProductVariant", "inventoryItem"] = lambda v, _info: _InventoryItem(v)

    # InventoryItem (a thin view over the variant: the sandbox has no inventory)
    r["InventoryItem", "id"] = lambda item, _info: f"gid://shopify/InventoryItem/{item.variant.numeric_id + 1_000_000}"
    r["InventoryItem", "sku"] = lambda item, _info: item.variant.sku
    r["InventoryItem", "unitCost"] = lambda item, info: (
        None
        if item.variant.cost is None
        else {"amount": _shop(info).money(item.variant.cost), "currencyCode": _shop(info).currency}
    )
    return r


@dataclass(frozen=True)
class _InventoryItem:
    variant: SandboxVariant


_EPOCH = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def _resolve_type(value: Any, _info: GraphQLResolveInfo, _abstract: Any) -> str | None:
    if isinstance(value, SandboxVariant):
        return "ProductVariant"
    if isinstance(value, SandboxProduct):
        return "Product"
    if isinstance(value, dict):
        return value.get("__typename")
    return _order_type_name(value)


def _resolve_nodes(_src: Any, info: GraphQLResolveInfo, ids: list[str]) -> list[Any]:
    if len(ids) > MAX_NODES_IDS:
        raise GraphQLError(f"The ids argument must be less than or equal to {MAX_NODES_IDS}")
    shop = _shop(info)
    return [shop.find_node(gid) for gid in ids]


# -- productVariantsBulkUpdate ---------------------------------------------------------------

_SUPPORTED_VARIANT_INPUT = {"id", "price", "compareAtPrice"}


def _user_error(field_path: list[str] | None, message: str, code: str) -> dict[str, Any]:
    return {"field": field_path, "message": message, "code": code}


def _money_input(value: Any, currency: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        raise InvalidOperation
    amount = Decimal(str(value).strip())
    if not amount.is_finite():
        raise InvalidOperation
    return quantize(amount, currency)


def _product_variants_bulk_update(
    _src: Any,
    info: GraphQLResolveInfo,
    productId: str,
    variants: list[dict[str, Any]],
    allowPartialUpdates: bool | None = False,
    media: Any = None,
) -> dict[str, Any]:
    ctx: ResolveContext = info.context
    shop = ctx.shop
    if media:
        raise GraphQLError("The sandbox does not implement the `media` argument of productVariantsBulkUpdate.")
    with shop.lock:
        shop.stats.mutations += 1
        product = shop.find_product(productId)
        if product is None:
            return {
                "product": None,
                "productVariants": None,
                "userErrors": [_user_error(["productId"], "Product does not exist", "PRODUCT_DOES_NOT_EXIST")],
            }
        own = {v.gid: v for v in product.variants}
        errors: list[dict[str, Any]] = []
        planned: list[tuple[SandboxVariant, Decimal, Any]] = []
        for index, entry in enumerate(variants):
            at = ["variants", str(index)]
            unsupported = sorted(set(entry) - _SUPPORTED_VARIANT_INPUT)
            if unsupported:
                raise GraphQLError(
                    f"The sandbox does not implement ProductVariantsBulkInput.{unsupported[0]} (only id, price, compareAtPrice)."
                )
            gid = entry.get("id")
            if not gid:
                errors.append(_user_error([*at, "id"], "Product variant is missing ID attribute", "PRODUCT_VARIANT_ID_MISSING"))
                continue
            variant = own.get(gid)
            if variant is None:
                errors.append(_user_error([*at, "id"], "Product variant does not exist", "PRODUCT_VARIANT_DOES_NOT_EXIST"))
                continue
            fault = shop.faults.variant_fault(gid)
            if fault is not None:
                errors.append(_user_error([*at, fault.field] if fault.field else at, fault.message, fault.code))
                continue
            new_price = variant.price
            new_compare: Any = _UNSET
            bad = False
            for key in ("price", "compareAtPrice"):
                if key not in entry:
                    continue
                raw = entry[key]
                if raw is None and key == "compareAtPrice":
                    new_compare = None  # an explicit null removes the compare-at price
                    continue
                try:
                    amount = _money_input(raw, shop.currency)
                except (InvalidOperation, ValueError):
                    errors.append(_user_error([*at, key], f"{_LABELS[key]} is invalid", "INVALID_INPUT"))
                    bad = True
                    continue
                if amount < 0:
                    errors.append(
                        _user_error([*at, key], f"{_LABELS[key]} must be greater than or equal to 0", "GREATER_THAN_OR_EQUAL_TO")
                    )
                    bad = True
                    continue
                if key == "price":
                    new_price = amount
                else:
                    new_compare = amount
            if not bad:
                planned.append((variant, new_price, new_compare))

        if errors and not allowPartialUpdates:
            # All or nothing: validation failed somewhere, nothing is written.
            return {"product": product, "productVariants": None, "userErrors": errors}
        now = _utcnow()
        written: list[SandboxVariant] = []
        for variant, new_price, new_compare in planned:
            compare = variant.compare_at_price if new_compare is _UNSET else new_compare
            shop.write_log.append(
                VariantWrite(
                    at=now,
                    request_id=ctx.request_id,
                    product_gid=product.gid,
                    variant_gid=variant.gid,
                    old_price=variant.price,
                    new_price=new_price,
                    old_compare_at_price=variant.compare_at_price,
                    new_compare_at_price=compare,
                )
            )
            variant.price = new_price
            variant.compare_at_price = compare
            variant.updated_at = now
            shop.orders.price_changed(variant)
            written.append(variant)
        return {"product": product, "productVariants": written if written or not errors else None, "userErrors": errors}


_LABELS = {"price": "Price", "compareAtPrice": "Compare at price"}


# -- the app ------------------------------------------------------------------------------


class ShopifyAdminSandbox:
    """The Admin API app plus its HTTP server; ``with ShopifyAdminSandbox() as admin:``."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        control: SandboxControl | None = None,
        clock: Callable[[], float] = time.monotonic,
        schema: GraphQLSchema | None = None,
        latency: float = 0.0,
    ):
        self._schema = schema
        self._clock = clock
        # Seconds every Admin API request takes on the wire (half on the way in, before the
        # shop charges it, half on the way back); real shops answer in 50-300 ms, and a
        # benchmark without it flatters a sequential client. Settable at any time.
        self.latency = float(latency)
        self._shops: dict[str, AdminShop] = {}
        self._resolvers = _default_resolvers()
        self._documents: dict[str, Any] = {}
        self._documents_lock = threading.Lock()
        self.server = SandboxHTTPServer(self, name="shopify-admin", host=host, port=port, control=control)
        from calibr_pipeline.sandbox.bulk_operations import BulkOperations

        # Bulk mutations: staged uploads, bulkOperationRunMutation, polling, result files.
        self.bulk = BulkOperations(self)
        self.bulk.install()

    # -- setup ----------------------------------------------------------------------------

    @property
    def schema(self) -> GraphQLSchema:
        if self._schema is None:
            self._schema = load_admin_schema()
        return self._schema

    def add_shop(
        self,
        name: str,
        catalog: Iterable[CatalogVariant],
        *,
        access_token: str | None = None,
        preset: BucketPreset | str = STANDARD,
        currency: str | None = None,
        max_query_cost: int = SINGLE_QUERY_MAX_COST,
        seed: int = 0,
    ) -> AdminShop:
        if name in self._shops:
            raise ValueError(f"shop {name!r} already exists")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
            raise ValueError(f"shop name {name!r} must be URL-safe")
        if isinstance(preset, str):
            preset = PRESETS[preset]
        token = access_token or demo_access_token(name, seed)
        shop = AdminShop.from_catalog(
            name, catalog, access_token=token, preset=preset, currency=currency, max_query_cost=max_query_cost, clock=self._clock
        )
        shop.faults = AdminFaults(name, self.server.control.faults, seed=seed)
        shop.orders = OrderStream(shop, seed=seed, today=self.server.control.clock.today)
        self._shops[name] = shop
        return shop

    def faults(self, name: str) -> AdminFaults:
        """Fault injection for one shop's endpoint (see :class:`AdminFaults`)."""
        return self._shops[name].faults

    def shop(self, name: str) -> AdminShop:
        return self._shops[name]

    @property
    def shops(self) -> dict[str, AdminShop]:
        return dict(self._shops)

    def register_resolver(self, type_name: str, field_name: str, resolver: Resolver) -> None:
        """Attach behaviour to a schema field, e.g. ``("Mutation", "productVariantsBulkUpdate")``."""
        type_ = self.schema.get_type(type_name)
        if type_ is None or field_name not in getattr(type_, "fields", {}):
            raise ValueError(f"{type_name}.{field_name} is not in the Admin API schema")
        self._resolvers[type_name, field_name] = resolver

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> Self:
        _ = self.schema  # build before the first request so it does not time out a client
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def shop_url(self, name: str) -> str:
        return f"{self.base_url}/shops/{name}"

    def endpoint(self, name: str, api_version: str = ADMIN_API_VERSION) -> str:
        return f"{self.shop_url(name)}/admin/api/{api_version}/graphql.json"

    # -- HTTP -----------------------------------------------------------------------------

    def shop_for(self, request: SandboxRequest) -> str | None:
        match = _PATH.match(request.path)
        return match["shop"] if match else None

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        match = _PATH.match(request.path)
        if match is None and (bulk_answer := self.bulk.handle_http(request)) is not None:
            return bulk_answer
        shop = self._shops.get(match["shop"]) if match else None
        if shop is None or match["version"] not in SUPPORTED_VERSIONS:
            return SandboxResponse.json({"errors": "Not Found"}, status=404)
        headers = {"X-Shopify-API-Version": match["version"], "X-Request-Id": str(uuid.uuid4())}
        if request.method != "POST":
            return SandboxResponse.json({"errors": "Method Not Allowed"}, status=405, headers=headers)
        with shop.lock:
            shop.stats.requests += 1
        token = request.headers.get("x-shopify-access-token", "")
        if not _same_token(token, shop.access_token):
            with shop.lock:
                shop.stats.unauthorized += 1
            return SandboxResponse.json({"errors": INVALID_TOKEN_MESSAGE}, status=401, headers=headers)
        body = _read_body(request)
        if body is None:
            return SandboxResponse.json({"errors": {"query": "Required parameter missing or invalid"}}, status=400, headers=headers)
        with shop.lock:
            shop.stats.in_flight += 1
            shop.stats.max_in_flight = max(shop.stats.max_in_flight, shop.stats.in_flight)
        try:
            return self._handle_authorised(shop, body, headers)
        finally:
            with shop.lock:
                shop.stats.in_flight -= 1

    def _handle_authorised(self, shop: AdminShop, body: dict[str, Any], headers: dict[str, str]) -> SandboxResponse:
        is_mutation = self._is_mutation(body["query"], body.get("operationName"))
        if is_mutation and (status := shop.faults.refuse_mutation(body.get("variables") or {})) is not None:
            return SandboxResponse.json({"errors": "Service Unavailable"}, status=status, headers=headers)
        fault = shop.faults.decide()
        latency = self.latency
        if latency > 0:
            time.sleep(latency / 2)
        payload = self.run(
            shop,
            body["query"],
            body.get("variables") or {},
            body.get("operationName"),
            request_id=headers["X-Request-Id"],
            force_throttle=fault.throttle,
        )
        if fault.throttle and fault.retry_after is not None and _is_throttled(payload):
            headers["Retry-After"] = fault.retry_after
        if latency > 0:
            time.sleep(latency / 2)
        if "data" in payload and is_mutation:
            lost = shop.faults.lost_answer()
            if lost is not None:
                return _lose(lost, payload, headers)
        if fault.throttle and not fault.with_status and _is_throttled(payload):
            payload["extensions"]["cost"].pop("throttleStatus", None)
        return SandboxResponse.json(payload, headers=headers)

    def _is_mutation(self, source: str, operation_name: str | None) -> bool:
        document, errors = self._document(source)
        operation = None if errors else get_operation_ast(document, operation_name)
        return operation is not None and operation.operation == OperationType.MUTATION

    # -- GraphQL --------------------------------------------------------------------------

    def run(
        self,
        shop: AdminShop,
        source: str,
        variables: dict[str, Any],
        operation_name: str | None,
        *,
        request_id: str | None = None,
        force_throttle: bool = False,
    ) -> dict[str, Any]:
        """Execute one document for one shop and return the JSON body Shopify would send.

        ``force_throttle`` answers THROTTLED (uncharged) even if the bucket could pay.
        """
        document, errors = self._document(source)
        if errors:
            with shop.lock:
                shop.stats.invalid_documents += 1
            return {"errors": errors, "extensions": {"cost": _cost(0, 0, shop)}}
        operation = get_operation_ast(document, operation_name)
        if operation is None:
            message = (
                f"No operation named \"{operation_name}\"" if operation_name else "An operation name is required"
            )
            return {"errors": [{"message": message}], "extensions": {"cost": _cost(0, 0, shop)}}
        try:
            requested = requested_cost(self.schema, document, variables, operation_name)
        except ValueError as exc:
            return {"errors": [{"message": str(exc)}], "extensions": {"cost": _cost(0, 0, shop)}}

        if requested > shop.max_query_cost:
            with shop.lock:
                shop.stats.max_cost_exceeded += 1
            return {
                "errors": [
                    {
                        "message": _max_cost_message(requested, shop.max_query_cost),
                        "extensions": {"code": "MAX_COST_EXCEEDED", "cost": requested, "maxCost": shop.max_query_cost},
                    }
                ],
                "extensions": {"cost": _cost(requested, None, shop)},
            }
        if force_throttle or not shop.bucket.try_take(requested):
            with shop.lock:
                shop.stats.throttled += 1
                shop.stats.forced_throttled += int(force_throttle)
            return {
                "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED", "documentation": RATE_LIMITS_DOC}}],
                "extensions": {"cost": _cost(requested, None, shop)},
            }

        with shop.lock:
            result = execute(
                self.schema,
                document,
                context_value=ResolveContext(shop=shop, sandbox=self, request_id=request_id),
                variable_values=variables,
                operation_name=operation_name,
                field_resolver=self._resolve,
                type_resolver=_resolve_type,
            )
        actual = min(requested, actual_cost(self.schema, document, result.data, variables, operation_name))
        shop.bucket.refund(requested - actual)
        with shop.lock:
            shop.stats.points_spent += actual
        payload: dict[str, Any] = {}
        if result.errors:
            payload["errors"] = [err.formatted for err in result.errors]
        if result.data is not None or not result.errors:
            payload["data"] = result.data
        payload["extensions"] = {"cost": _cost(requested, actual, shop)}
        return payload

    def _document(self, source: str) -> tuple[Any, list[dict[str, Any]]]:
        with self._documents_lock:
            cached = self._documents.get(source)
        if cached is not None:
            return cached, []
        try:
            document = parse(source)
        except GraphQLError as exc:
            return None, [_shopify_error(exc, "parseError")]
        errors = validate(self.schema, document)
        if errors:
            return None, [_shopify_error(err) for err in errors]
        with self._documents_lock:
            if len(self._documents) > 256:
                self._documents.clear()
            self._documents[source] = document
        return document, []

    def _resolve(self, source: Any, info: GraphQLResolveInfo, **args: Any) -> Any:
        resolver = self._resolvers.get((info.parent_type.name, info.field_name))
        if resolver is not None:
            return resolver(source, info, **args)
        if isinstance(source, dict):
            return source.get(info.field_name)
        raise GraphQLError(f"The sandbox does not implement {info.parent_type.name}.{info.field_name}.")

    # -- in-process helpers for tests -----------------------------------------------------

    def execute_for_test(self, shop: str, source: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run a document without HTTP (bucket and counters still apply)."""
        return self.run(self._shops[shop], source, variables or {}, None, request_id=f"test-{uuid.uuid4()}")


def demo_access_token(shop: str, seed: int = 0) -> str:
    # shpat_ is the prefix of real Admin API access tokens; secret scanners know it.
    return "shpat_" + hashlib.sha256(f"calibr-sandbox:{seed}:{shop}".encode()).hexdigest()[:32]


def _same_token(given: str, expected: str) -> bool:
    import hmac

    return hmac.compare_digest(given.encode(), expected.encode())


def _read_body(request: SandboxRequest) -> dict[str, Any] | None:
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/graphql"):
        return {"query": request.body.decode("utf-8", "replace")}
    try:
        body = request.json()
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(body, dict) or not isinstance(body.get("query"), str):
        return None
    if body.get("variables") is not None and not isinstance(body["variables"], dict):
        return None
    return body


def _lose(lost: LostAnswer, payload: dict[str, Any], headers: dict[str, str]) -> SandboxResponse | None:
    """The answer of an applied mutation, lost the way ``lost`` says."""
    if lost.mode == "503":
        return SandboxResponse.json({"errors": "Service Unavailable"}, status=503, headers=headers)
    if lost.mode == "reset":
        return None  # the connection is closed without an answer
    if lost.mode == "slow":
        time.sleep(lost.delay)
        return SandboxResponse.json(payload, headers=headers)
    if lost.mode == "cut":
        response = SandboxResponse.json(payload, headers=headers)
        response.cut_after = max(1, len(response.body) // 2)
        return response
    errors = [{"message": "Internal error. Looks like something went wrong on our end.", "extensions": {"code": "INTERNAL_SERVER_ERROR"}}]
    return SandboxResponse.json({**payload, "errors": errors}, headers=headers)


def _is_throttled(payload: dict[str, Any]) -> bool:
    return any((e.get("extensions") or {}).get("code") == "THROTTLED" for e in payload.get("errors") or ())


def _cost(requested: int, actual: int | None, shop: AdminShop) -> dict[str, Any]:
    return {"requestedQueryCost": requested, "actualQueryCost": actual, "throttleStatus": shop.bucket.throttle_status()}


_UNDEFINED_FIELD = re.compile(r"^Cannot query field '(?P<field>[^']+)' on type '(?P<type>[^']+)'\.")


def _shopify_error(error: GraphQLError, default_code: str | None = None) -> dict[str, Any]:
    formatted: dict[str, Any] = {"message": error.message}
    if error.locations:
        formatted["locations"] = [{"line": loc.line, "column": loc.column} for loc in error.locations]
    match = _UNDEFINED_FIELD.match(error.message)
    if match:
        # Shopify's (graphql-ruby's) wording, so error handling written against the
        # sandbox recognises the real thing.
        formatted["message"] = f"Field '{match['field']}' doesn't exist on type '{match['type']}'"
        formatted["extensions"] = {"code": "undefinedField", "typeName": match["type"], "fieldName": match["field"]}
    elif default_code:
        formatted["extensions"] = {"code": default_code}
    return formatted


def _max_cost_message(cost: int, limit: int) -> str:
    return (
        f"Query cost is {cost}, which exceeds the single query max cost limit ({limit}).\n\n"
        "See https://shopify.dev/concepts/about-apis/rate-limits for more information on how the\n"
        "cost of a query is calculated.\n\n"
        "To query larger amounts of data with fewer limits, bulk operations should be used instead.\n"
        "See https://shopify.dev/tutorials/perform-bulk-operations-with-admin-api for usage details.\n"
    )

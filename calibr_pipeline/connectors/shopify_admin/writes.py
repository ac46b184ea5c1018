"""Price writes to Shopify (``productVariantsBulkUpdate``) and reads to reconcile them.

One call of :func:`bulk_update_prices` is one product: Shopify's bulk mutation takes
the variants of a single product, costs 10 points whatever their number, and answers
per variant through ``userErrors`` whose ``field`` points at the input entry
(``["variants", "2", "price"]``).

Decisions:

* **allowPartialUpdates = true by default.** With ``false`` one invalid variant (a
  price Shopify refuses, a variant deleted since we read the catalog) blocks every
  other variant of the product, and they would all have to be retried later for no
  reason of their own. Our idempotency is per variant (one rule target = one variant),
  so a partial success is recorded precisely: the valid variants are written and
  reported ``ok``, the invalid ones fail with Shopify's code. ``allow_partial=False``
  is still available; then, when any variant fails validation, nothing is written and
  the variants without an error of their own are reported with our code
  :data:`ROLLED_BACK`.
* **Retries, only where nothing can have been written.** THROTTLED answers and HTTP 429
  are refused before execution: they are retried here, waiting exactly the deficit that
  ``throttleStatus`` reports (plus jitter), or ``Retry-After`` / 16-32-64 s when the shop
  gives no status. A connection that was never made is retried on the transient schedule
  (2/4/8 s ±20 %). userErrors are answers, not failures: never retried.
* **Ambiguous outcomes are not retried here.** A timeout after the request was sent, a
  reset connection, a 5xx, a cut-off body, or ``data`` together with ``errors`` may mean the
  prices were written. :class:`ShopifyAdminError` is raised at once with
  ``maybe_written=True`` and ``attempts`` (requests sent); the caller reads the variants
  back and decides (:mod:`calibr_pipeline.services.price_apply`): sending the write again
  blindly could overwrite a price set in between, and would leave no honest audit trail.
* **Cost.** The request goes through :meth:`ShopifyAdminClient.execute_once`, which
  waits until the client's mirror of the bucket can pay the 10 points before
  sending; a THROTTLED answer therefore only happens when something else spent the
  bucket (another app, another worker with its own client). Throttled answers and
  our retries are added to the client's :class:`ClientStats`.
* ``compare_at_price=None`` means "leave it as it is": the field is not sent at all.
  Removing a compare-at price is not something this write path does.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

import tenacity

from calibr_pipeline.connectors.shopify_admin.client import (
    AdminAnswer,
    ShopifyAdminClient,
)
from calibr_pipeline.connectors.shopify_admin.documents import load_document
from calibr_pipeline.connectors.shopify_admin.errors import ShopifyAdminError
from calibr_pipeline.domain.backoff import retry_after_of
from calibr_pipeline.domain.errors import ErrorClass
from calibr_pipeline.domain.money import to_decimal
from calibr_pipeline.domain.write_policy import (
    MAX_DEFICIT_THROTTLES,
    WriteFailureKind,
    delay_after,
    failure_kind,
)

log = logging.getLogger(__name__)

BULK_UPDATE_DOCUMENT = "BulkUpdateVariantPrices"
READ_DOCUMENT = "VariantPricesByIds"
READ_WITH_COST_DOCUMENT = "VariantsBeforeWrite"
# Shopify accepts up to 250 ids in nodes(ids:); 100 keeps answers small and, should
# Shopify price nodes per id, a batch still costs ~100 points.
DEFAULT_READ_BATCH = 100
MAX_READ_BATCH = 250

# Our code (not Shopify's) for a valid variant not written because another variant of
# the same all-or-nothing request failed validation.
ROLLED_BACK = "ROLLED_BACK"


# One generator for every write's retry jitter: a new random.Random() per request seeds
# itself from os.urandom, a measurable cost at hundreds of writes a second.
_RETRY_JITTER = random.Random()

class _Random(Protocol):
    def random(self) -> float: ...


@dataclass(frozen=True)
class VariantPriceUpdate:
    variant_gid: str
    price: Decimal
    compare_at_price: Decimal | None = None  # None: leave unchanged (the field is not sent)


@dataclass(frozen=True)
class VariantWriteResult:
    variant_gid: str
    ok: bool
    error_code: str | None = None  # Shopify's userError code, or ROLLED_BACK
    error_message: str | None = None
    written_price: Decimal | None = None  # the price Shopify reports after the write


@dataclass(frozen=True)
class BulkUpdateResult:
    product_gid: str
    results: list[VariantWriteResult]
    attempts: int  # HTTP requests sent for this product
    throttled: int  # answers that were THROTTLED or HTTP 429
    retries: int  # attempts after the first
    request_id: str | None = field(default=None, compare=False)  # X-Request-Id of the answer used

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def succeeded(self) -> list[VariantWriteResult]:
        return [r for r in self.results if r.ok]

    @property
    def failed(self) -> list[VariantWriteResult]:
        return [r for r in self.results if not r.ok]

    def by_variant(self) -> dict[str, VariantWriteResult]:
        return {r.variant_gid: r for r in self.results}


@dataclass(frozen=True)
class VariantSnapshot:
    variant_gid: str
    price: Decimal
    compare_at_price: Decimal | None
    updated_at: str | None  # Shopify's DateTime string, as sent
    unit_cost: Decimal | None = None  # inventoryItem.unitCost, when read with ``with_cost``


# -- writes ---------------------------------------------------------------------------------


class _RetryableWrite(Exception):
    """One failed attempt worth retrying; ``delay`` is None once the budget is spent."""

    def __init__(self, kind: WriteFailureKind, error: ShopifyAdminError, delay: float | None):
        super().__init__(error.message)
        self.kind = kind
        self.error = error
        self.retry_after = error.retry_after
        self.delay = delay


@dataclass
class _Tally:
    attempts: int = 0
    throttled: int = 0
    retries: int = 0
    failures: dict[WriteFailureKind, int] = field(default_factory=dict)


def money_string(amount: Decimal) -> str:
    """A Decimal as Shopify's Money input: plain notation, never an exponent or a float."""
    if not isinstance(amount, Decimal) or not amount.is_finite():
        raise ValueError(f"price must be a finite Decimal, got {amount!r}")
    return format(amount, "f")


def _variables(product_gid: str, updates: Sequence[VariantPriceUpdate], allow_partial: bool) -> dict[str, Any]:
    variants: list[dict[str, Any]] = []
    for update in updates:
        entry: dict[str, Any] = {"id": update.variant_gid, "price": money_string(update.price)}
        if update.compare_at_price is not None:
            entry["compareAtPrice"] = money_string(update.compare_at_price)
        variants.append(entry)
    return {"productId": product_gid, "variants": variants, "allowPartialUpdates": allow_partial}


def bulk_update_prices(
    client: ShopifyAdminClient,
    product_gid: str,
    updates: Sequence[VariantPriceUpdate],
    *,
    allow_partial: bool = True,
    sleep: Callable[[float], Any] = time.sleep,
    rng: _Random | None = None,
) -> BulkUpdateResult:
    """Write the prices of some variants of one product; see the module docstring.

    ``sleep`` and ``rng`` drive the retry waits only (the client's own ``sleep``
    still paces requests to the cost bucket).
    """
    updates = list(updates)
    if not updates:
        return BulkUpdateResult(product_gid, [], attempts=0, throttled=0, retries=0)
    seen: set[str] = set()
    for update in updates:
        if update.variant_gid in seen:
            raise ValueError(f"variant {update.variant_gid} appears twice in one bulk update")
        seen.add(update.variant_gid)
    source = load_document(BULK_UPDATE_DOCUMENT)
    variables = _variables(product_gid, updates, allow_partial)
    rng = rng or _RETRY_JITTER
    tally = _Tally()

    def failed(kind: WriteFailureKind, error: ShopifyAdminError, deficit: float | None = None) -> _RetryableWrite:
        n = tally.failures[kind] = tally.failures.get(kind, 0) + 1
        if deficit is not None:
            # The shop said how short the bucket is: wait exactly that, within a larger budget.
            return _RetryableWrite(kind, error, deficit if n < MAX_DEFICIT_THROTTLES else None)
        return _RetryableWrite(kind, error, delay_after(kind, n, retry_after_of(error), rng))

    def attempt() -> AdminAnswer:
        tally.attempts += 1
        try:
            answer = client.execute_once(source, variables, BULK_UPDATE_DOCUMENT)
        except ShopifyAdminError as exc:
            exc.attempts = tally.attempts
            if exc.maybe_written:
                raise  # may have been applied: the caller reads back, we never resend blindly
            kind = failure_kind(exc.error_class, exc.code)
            if kind is WriteFailureKind.THROTTLED:
                tally.throttled += 1
            if kind in (WriteFailureKind.TRANSIENT, WriteFailureKind.THROTTLED):
                raise failed(kind, exc) from exc
            raise
        if answer.throttled:
            tally.throttled += 1
            # With a throttleStatus the client computed the exact deficit (answer.retry_after);
            # only without one do Retry-After / 16-32-64 s apply.
            has_status = isinstance(answer.cost.get("throttleStatus"), Mapping)
            raise failed(
                WriteFailureKind.THROTTLED,
                ShopifyAdminError(
                    f"Shopify throttled {BULK_UPDATE_DOCUMENT} for {product_gid}",
                    error_class=ErrorClass.RATE_LIMITED,
                    code="THROTTLED",
                    status=answer.status,
                    retry_after=answer.retry_after_header,
                ),
                deficit=answer.retry_after if has_status else None,
            )
        return answer

    def before_sleep(state: tenacity.RetryCallState) -> None:
        tally.retries += 1
        client.count(retries=1)
        exc = state.outcome.exception() if state.outcome else None
        log.info(
            "retrying price write of %s after %s (attempt %d, waiting %.2fs)",
            product_gid,
            getattr(exc, "kind", exc),
            state.attempt_number,
            state.upcoming_sleep,
        )

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(_RetryableWrite),
        stop=lambda state: _last(state).delay is None,
        wait=lambda state: _last(state).delay or 0.0,
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        answer = retrying(attempt)
    except _RetryableWrite as exc:
        error = exc.error
        raise ShopifyAdminError(
            f"{BULK_UPDATE_DOCUMENT} for {product_gid} gave up after {tally.attempts} attempts "
            f"({tally.failures.get(exc.kind, 0)} {exc.kind.value} failures): {error.message}",
            error_class=error.error_class,
            code=error.code,
            status=error.status,
            messages=error.messages,
            retry_after=error.retry_after,
            attempts=tally.attempts,
        ) from error

    try:
        results = _map_results(answer, product_gid, updates, allow_partial)
    except ShopifyAdminError as exc:
        exc.attempts = tally.attempts
        raise
    return BulkUpdateResult(
        product_gid=product_gid,
        results=results,
        attempts=tally.attempts,
        throttled=tally.throttled,
        retries=tally.retries,
        request_id=answer.request_id,
    )


def _last(state: tenacity.RetryCallState) -> _RetryableWrite:
    exc = state.outcome.exception() if state.outcome else None
    assert isinstance(exc, _RetryableWrite)  # retry= only lets these through
    return exc


def _map_results(
    answer: AdminAnswer, product_gid: str, updates: Sequence[VariantPriceUpdate], allow_partial: bool
) -> list[VariantWriteResult]:
    data = answer.data
    if answer.errors and isinstance(data, Mapping) and isinstance(data.get("productVariantsBulkUpdate"), Mapping):
        # GraphQL may return a payload *and* errors: the mutation ran, at least in part.
        raise ShopifyAdminError(
            f"Shopify answered {BULK_UPDATE_DOCUMENT} for {product_gid} with data and errors: "
            + "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in (answer.errors if isinstance(answer.errors, list) else [answer.errors])),
            error_class=ErrorClass.MALFORMED_BODY,
            code="DATA_WITH_ERRORS",
            maybe_written=True,
        )
    if answer.errors:
        messages = tuple(
            str(e.get("message", e)) if isinstance(e, dict) else str(e)
            for e in (answer.errors if isinstance(answer.errors, list) else [answer.errors])
        )
        codes = [(e.get("extensions") or {}).get("code") for e in answer.errors if isinstance(e, dict)] if isinstance(answer.errors, list) else []
        raise ShopifyAdminError(
            f"Shopify rejected {BULK_UPDATE_DOCUMENT} for {product_gid}: " + "; ".join(messages),
            error_class=ErrorClass.HTTP_4XX,
            code=next((c for c in codes if c), None),
            messages=messages,
        )
    payload = data.get("productVariantsBulkUpdate") if isinstance(data, Mapping) else None
    if not isinstance(payload, Mapping):
        raise ShopifyAdminError(
            f"Shopify answered {BULK_UPDATE_DOCUMENT} for {product_gid} without its payload",
            error_class=ErrorClass.MALFORMED_BODY,
            maybe_written=True,
        )
    user_errors = [e for e in payload.get("userErrors") or () if isinstance(e, Mapping)]
    product_level: list[Mapping[str, Any]] = []
    per_variant: dict[int, list[Mapping[str, Any]]] = {}
    for error in user_errors:
        index = _variant_index(error.get("field"), len(updates))
        if index is None:
            product_level.append(error)
        else:
            per_variant.setdefault(index, []).append(error)
    written = {
        v["id"]: v for v in payload.get("productVariants") or () if isinstance(v, Mapping) and "id" in v
    }
    nothing_written = bool(user_errors) and not allow_partial

    results: list[VariantWriteResult] = []
    for index, update in enumerate(updates):
        errors = product_level or per_variant.get(index)
        if errors:
            results.append(
                VariantWriteResult(
                    update.variant_gid,
                    ok=False,
                    error_code=next((e.get("code") for e in errors if e.get("code")), "USER_ERROR"),
                    error_message="; ".join(str(e.get("message")) for e in errors),
                )
            )
        elif nothing_written:
            results.append(
                VariantWriteResult(
                    update.variant_gid,
                    ok=False,
                    error_code=ROLLED_BACK,
                    error_message="not written: another variant of this all-or-nothing update failed validation",
                )
            )
        else:
            echoed = written.get(update.variant_gid)
            price = to_decimal(echoed["price"]) if echoed and echoed.get("price") is not None else update.price
            results.append(VariantWriteResult(update.variant_gid, ok=True, written_price=price))
    if user_errors:
        log.info(
            "%s: %d of %d variants refused by Shopify (%s)",
            product_gid,
            sum(not r.ok for r in results),
            len(results),
            ", ".join(sorted({str(e.get("code")) for e in user_errors})),
        )
    return results


def _variant_index(field_path: object, n: int) -> int | None:
    """``["variants", "3", "price"]`` → 3; anything not naming one entry → None (product level)."""
    if not isinstance(field_path, Sequence) or isinstance(field_path, str) or len(field_path) < 2:
        return None
    if field_path[0] != "variants":
        return None
    raw = field_path[1]
    try:
        index = int(raw)
    except (TypeError, ValueError):
        return None
    return index if 0 <= index < n else None


# -- reads for reconciliation ------------------------------------------------------------------


def read_variants(
    client: ShopifyAdminClient, variant_gids: Iterable[str], *, batch_size: int = DEFAULT_READ_BATCH, with_cost: bool = False
) -> dict[str, VariantSnapshot | None]:
    """Current state of each variant (``None`` when deleted), via ``nodes(ids:)`` in batches.

    Every batch goes through :meth:`ShopifyAdminClient.execute`, so it waits for the
    cost bucket and gets the client's transport retries (reads are safe to repeat).
    ``with_cost`` also reads ``inventoryItem.unitCost`` (the write-time checks).
    """
    document = READ_WITH_COST_DOCUMENT if with_cost else READ_DOCUMENT
    if not 1 <= batch_size <= MAX_READ_BATCH:
        raise ValueError(f"batch_size must be within 1..{MAX_READ_BATCH}, got {batch_size}")
    gids = list(dict.fromkeys(variant_gids))
    out: dict[str, VariantSnapshot | None] = {}
    for start in range(0, len(gids), batch_size):
        chunk = gids[start : start + batch_size]
        data = client.execute(document, {"ids": chunk})
        nodes = data.get("nodes")
        if not isinstance(nodes, list) or len(nodes) != len(chunk):
            raise ShopifyAdminError(
                f"{document} answered {len(nodes) if isinstance(nodes, list) else 'no'} nodes for {len(chunk)} ids",
                error_class=ErrorClass.MALFORMED_BODY,
            )
        for gid, node in zip(chunk, nodes, strict=True):
            if not isinstance(node, Mapping) or node.get("price") is None:
                out[gid] = None  # deleted, or not a variant
                continue
            if node.get("id") not in (None, gid):
                raise ShopifyAdminError(
                    f"{document} answered {node.get('id')} in the place of {gid}",
                    error_class=ErrorClass.MALFORMED_BODY,
                )
            compare_at = node.get("compareAtPrice")
            unit_cost = ((node.get("inventoryItem") or {}).get("unitCost") or {}).get("amount")
            out[gid] = VariantSnapshot(
                variant_gid=gid,
                price=to_decimal(node["price"]),
                compare_at_price=to_decimal(compare_at) if compare_at is not None else None,
                updated_at=node.get("updatedAt"),
                unit_cost=to_decimal(unit_cost) if unit_cost is not None else None,
            )
    return out


def read_variant_prices(
    client: ShopifyAdminClient, variant_gids: Sequence[str], *, batch_size: int = DEFAULT_READ_BATCH
) -> dict[str, Decimal | None]:
    """Current price of each variant; ``None`` for variants that no longer exist."""
    return {
        gid: (snapshot.price if snapshot is not None else None)
        for gid, snapshot in read_variants(client, variant_gids, batch_size=batch_size).items()
    }

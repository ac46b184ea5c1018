"""Shopify Admin GraphQL client that pays attention to the cost bucket.

Two layers of patience:

* **cost**: every document is priced before it is sent, and the client sleeps until
  its mirror of the shop's bucket (:class:`CostBucket`) can pay, so a lone client
  never gets THROTTLED. The price is what the shop itself announced for that document
  and page size (``requestedQueryCost``, learned by :class:`CostModel` from every
  answer); only a document the shop has never priced is charged the static,
  conservative estimate. If another consumer drained the bucket and Shopify throttles
  anyway, the client waits for exactly the deficit its ``throttleStatus`` reports
  (``(requested − currentlyAvailable) / restoreRate`` plus a little jitter) and tries
  again; an answer without a status falls back to ``Retry-After``, else 16/32/64 s.
* **transport**: 5xx, 429 (honouring ``Retry-After``), timeouts, connection errors
  and truncated bodies are retried with tenacity (exponential backoff, full jitter,
  bounded attempts) and end as a :class:`ShopifyAdminError` with an error class.

Mutations are retried too: the ones we send set absolute values (prices), so a retry
after a lost answer writes the same thing again.

:meth:`ShopifyAdminClient.execute_once` is the single-shot variant for callers that
own their retry schedule (price writes, :mod:`.writes`): it still waits for the cost
bucket, but sends exactly one request and reports THROTTLED as an answer, not a loop;
the answer's ``retry_after`` then carries the wait the shop's status implies.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Self

import requests
import urllib3
from graphql import DocumentNode, GraphQLError, GraphQLSchema, parse
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from calibr_pipeline.connectors.graphql_schema import (
    ADMIN_API_VERSION,
    load_admin_schema,
)
from calibr_pipeline.connectors.shopify_admin.bucket import (
    CostBucket,
    Reservation,
    ThrottleStatus,
)
from calibr_pipeline.connectors.shopify_admin.cost import (
    SINGLE_QUERY_MAX_COST,
    CostModel,
    page_signature,
    requested_query_cost,
)
from calibr_pipeline.connectors.shopify_admin.documents import load_document
from calibr_pipeline.connectors.shopify_admin.errors import ShopifyAdminError
from calibr_pipeline.domain.backoff import bucket_jitter, throttle_deficit_wait
from calibr_pipeline.domain.errors import ErrorClass
from calibr_pipeline.domain.write_policy import WRITE_THROTTLE_POLICY

log = logging.getLogger(__name__)

ACCESS_TOKEN_HEADER = "X-Shopify-Access-Token"
# How long a THROTTLED answer makes the client assume another app shares the bucket.
CONTENTION_MEMORY_SECONDS = 60.0


@dataclass
class ClientStats:
    """Counters for metrics and benchmarks; one instance per client, never reset by it."""

    requests: int = 0  # HTTP requests sent, retries included
    throttled: int = 0  # answers that were THROTTLED
    retries: int = 0  # transport-level retries (5xx, 429, timeouts, connection, malformed)
    bucket_waits: int = 0  # times the client slept to let the bucket refill
    bucket_wait_seconds: float = 0.0
    requested_cost: int = 0  # sum of requestedQueryCost Shopify reported for answered queries
    actual_cost: int = 0  # sum of actualQueryCost
    throttle_wait_seconds: float = 0.0  # slept after THROTTLED answers (execute) or advised (execute_once)
    estimate_misses: int = 0  # answers whose requestedQueryCost differed from what we reserved

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AdminAnswer:
    """One HTTP answer of :meth:`ShopifyAdminClient.execute_once`, as Shopify sent it."""

    payload: dict[str, Any]
    status: int
    # Seconds to wait before retrying, when the shop implies one: for a THROTTLED answer
    # with a throttleStatus, the deficit to refill (plus jitter); otherwise the
    # Retry-After header, parsed; None when neither (callers use their own schedule).
    retry_after: float | None
    request_id: str | None  # X-Request-Id, for support tickets and logs
    retry_after_header: float | None = None  # the Retry-After header as sent, parsed

    @property
    def data(self) -> Any:
        return self.payload.get("data")

    @property
    def errors(self) -> Any:
        return self.payload.get("errors")

    @property
    def throttled(self) -> bool:
        return _is_throttled(self.payload.get("errors"))

    @property
    def cost(self) -> dict[str, Any]:
        return (self.payload.get("extensions") or {}).get("cost") or {}


class _Transient(Exception):
    """A failure worth retrying; ``retry_after`` is the server's wish in seconds.

    ``sent``: the request may have reached the shop (False only when it provably did not:
    the connection was never made, or the shop answered 429).
    """

    def __init__(self, error_class: ErrorClass, message: str, *, status: int | None = None, retry_after: float | None = None, sent: bool = True):
        super().__init__(message)
        self.error_class = error_class
        self.message = message
        self.status = status
        self.retry_after = retry_after
        self.sent = sent


def _never_connected(exc: requests.ConnectionError) -> bool:
    """True when the TCP connection was never made, so the request cannot have been applied."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.NameResolutionError, ConnectionRefusedError)):
            return True
        reason = getattr(cause, "reason", None)
        if isinstance(reason, BaseException) and id(reason) not in seen:
            cause = reason
            continue
        cause = cause.__cause__ or cause.__context__ or (cause.args[0] if cause.args and isinstance(cause.args[0], BaseException) else None)
    return False


def mask_token(token: str) -> str:
    return f"{token[:6]}…{token[-2:]}" if len(token) > 12 else "***"


def admin_graphql_url(endpoint_url: str, api_version: str) -> str:
    """Accepts the full ``…/graphql.json`` URL or a shop base (``https://x.myshopify.com``)."""
    url = endpoint_url.rstrip("/")
    if url.endswith("/graphql.json"):
        return url
    return f"{url}/admin/api/{api_version}/graphql.json"


@functools.lru_cache(maxsize=64)
def _parse_cached(source: str) -> DocumentNode:
    return parse(source)


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)  # seconds, possibly fractional ("2.0"); not money
    except ValueError:
        return None  # HTTP-date form: fall back to our own backoff
    return max(0.0, seconds)


class ShopifyAdminClient:
    def __init__(
        self,
        endpoint_url: str,
        access_token: str,
        *,
        api_version: str = ADMIN_API_VERSION,
        timeout: float | tuple[float, float] = (3.05, 30.0),
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        max_attempts: int = 5,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        max_retry_after: float = 120.0,
        max_throttle_retries: int = 8,
        max_query_cost: int = SINGLE_QUERY_MAX_COST,
        schema: GraphQLSchema | None = None,
    ):
        if not access_token:
            raise ValueError("access_token is required")
        self.endpoint = admin_graphql_url(endpoint_url, api_version)
        self.api_version = api_version
        self._token = access_token
        self.timeout = timeout
        self._owns_session = session is None
        self.session = session or requests.Session()
        self._sleep = sleep
        self._clock = clock
        self.max_attempts = max_attempts
        self._backoff = wait_random_exponential(multiplier=backoff_base, max=backoff_max)
        self.max_retry_after = max_retry_after
        self.max_throttle_retries = max_throttle_retries
        self.max_query_cost = max_query_cost
        self._schema = schema
        self.bucket = CostBucket(clock)
        self.cost_model = CostModel()
        self.stats = ClientStats()
        self._stats_lock = threading.Lock()
        self._static_costs: dict[tuple, int] = {}
        # Until then, another consumer is spending the shop's bucket (we were THROTTLED):
        # bucket waits get the same jitter as THROTTLED waits, so that neither app
        # systematically arrives second and starves.
        self._contended_until = float("-inf")

    def __repr__(self) -> str:
        return f"ShopifyAdminClient(endpoint={self.endpoint!r}, access_token={mask_token(self._token)!r})"

    def close(self) -> None:
        if self._owns_session:
            self.session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema(self) -> GraphQLSchema:
        if self._schema is None:
            self._schema = load_admin_schema()
        return self._schema

    # -- public -------------------------------------------------------------------------

    def execute(self, document_name: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Run ``documents/<document_name>.graphql`` (operation of the same name); returns ``data``."""
        return self.execute_source(load_document(document_name), variables, operation_name=document_name)

    def execute_source(
        self,
        source: str,
        variables: Mapping[str, Any] | None = None,
        operation_name: str | None = None,
    ) -> dict[str, Any]:
        variables = dict(variables or {})
        body = {"query": source, "variables": variables, "operationName": operation_name}

        for throttles in range(self.max_throttle_retries + 1):
            cost, static = self._price(source, variables, operation_name)
            reservation = self._wait_for_bucket(cost, operation_name, self._is_learned(source, variables, operation_name))
            try:
                payload, response = self._post_with_retries(body)
            except BaseException:
                self.bucket.settle(reservation, None)
                raise
            status = ThrottleStatus.from_extensions(payload.get("extensions"), self._clock())
            self.bucket.settle(reservation, status, charged=_charged(payload))
            cost_info = (payload.get("extensions") or {}).get("cost") or {}
            self._learn(source, variables, operation_name, static, cost, cost_info)
            errors = payload.get("errors")
            if _is_throttled(errors):
                self._contended_until = self._clock() + CONTENTION_MEMORY_SECONDS
                wait = self._throttle_wait(cost_info, status, response, throttles + 1, cost)
                with self._stats_lock:
                    self.stats.throttled += 1
                    self.stats.throttle_wait_seconds += wait
                log.info("Shopify throttled %s (cost %s); waiting %.3fs", operation_name, cost, wait)
                self._sleep(wait)
                continue
            with self._stats_lock:
                self.stats.requested_cost += int(cost_info.get("requestedQueryCost") or 0)
                self.stats.actual_cost += int(cost_info.get("actualQueryCost") or 0)
            if errors:
                raise _graphql_error(errors, operation_name)
            data = payload.get("data")
            if not isinstance(data, dict):
                raise ShopifyAdminError(
                    f"Shopify answered {operation_name or 'query'} without data",
                    error_class=ErrorClass.MALFORMED_BODY,
                )
            return data
        raise ShopifyAdminError(
            f"{operation_name or 'query'} still THROTTLED after {self.max_throttle_retries + 1} attempts",
            error_class=ErrorClass.RATE_LIMITED,
            code="THROTTLED",
        )

    def execute_once(
        self,
        source: str,
        variables: Mapping[str, Any] | None = None,
        operation_name: str | None = None,
    ) -> AdminAnswer:
        """Wait until the bucket can pay, send once, and return the answer as it came.

        No retries of any kind. Transport failures raise :class:`ShopifyAdminError`
        with their class (``http_5xx``, ``timeout``, ``connection``, ``rate_limited``
        for HTTP 429 with ``retry_after`` set, ``malformed_body``); a THROTTLED answer
        is *returned* (``answer.throttled``) and counted in ``stats.throttled``; GraphQL
        errors are left in ``answer.errors`` for the caller to judge.
        """
        variables = dict(variables or {})
        cost, static = self._price(source, variables, operation_name)
        body = {"query": source, "variables": variables, "operationName": operation_name}
        reservation = self._wait_for_bucket(cost, operation_name, self._is_learned(source, variables, operation_name))
        try:
            payload, response = self._post_once_response(body)
        except BaseException as exc:
            self.bucket.settle(reservation, None)
            if not isinstance(exc, _Transient):
                raise
            raise ShopifyAdminError(
                f"Shopify Admin API failed ({exc.error_class.value}): {exc.message}",
                error_class=exc.error_class,
                status=exc.status,
                code="THROTTLED" if exc.status == 429 else None,
                retry_after=exc.retry_after,
                maybe_written=exc.sent,
            ) from exc
        status = ThrottleStatus.from_extensions(payload.get("extensions"), self._clock())
        self.bucket.settle(reservation, status, charged=_charged(payload))
        cost_info = (payload.get("extensions") or {}).get("cost") or {}
        self._learn(source, variables, operation_name, static, cost, cost_info)
        header = _parse_retry_after(response.headers.get("Retry-After"))
        throttled = _is_throttled(payload.get("errors"))
        retry_after = header
        if throttled:
            self._contended_until = self._clock() + CONTENTION_MEMORY_SECONDS
            # The shop's own figures beat any schedule; without them the caller's
            # policy applies (Retry-After, else its exponential steps).
            retry_after = throttle_deficit_wait(
                cost_info.get("requestedQueryCost", cost),
                status.currently_available if status else None,
                status.restore_rate if status else None,
            )
            if retry_after is None:
                retry_after = header
        answer = AdminAnswer(
            payload=payload,
            status=response.status_code,
            retry_after=retry_after,
            request_id=response.headers.get("X-Request-Id"),
            retry_after_header=header,
        )
        with self._stats_lock:
            if answer.throttled:
                self.stats.throttled += 1
                self.stats.throttle_wait_seconds += retry_after or 0.0
            else:
                self.stats.requested_cost += int(answer.cost.get("requestedQueryCost") or 0)
                self.stats.actual_cost += int(answer.cost.get("actualQueryCost") or 0)
        return answer

    def estimate_cost(self, document: str, variables: Mapping[str, Any] | None = None) -> int:
        """Points the client would reserve for ``document`` (a document name or source).

        What the shop announced for this document and page sizes when it did, else an
        extrapolation from its answers for other page sizes, else the static estimate.
        Callers size their pages with it (never above :attr:`max_query_cost`).
        """
        source, operation_name = (load_document(document), document) if "{" not in document else (document, None)
        return self._estimate(source, dict(variables or {}), operation_name)[0]

    @property
    def cost_limit(self) -> int:
        """The dearest request this client may send: the single-query limit, or less
        when the shop's bucket is smaller."""
        status = self.bucket.status
        if status is None:
            return self.max_query_cost
        return int(min(self.max_query_cost, status.maximum_available))

    def count(self, **deltas: float) -> None:
        """Add to :attr:`stats` from outside (e.g. ``retries=1`` by a caller's own retry loop)."""
        with self._stats_lock:
            for name, delta in deltas.items():
                setattr(self.stats, name, getattr(self.stats, name) + delta)

    # -- internals ----------------------------------------------------------------------

    def _estimate(self, source: str, variables: Mapping[str, Any], operation_name: str | None) -> tuple[int, int]:
        """(points to reserve, static estimate) for one request."""
        key = (operation_name, source, page_signature(variables))
        static = self._static_costs.get(key)
        if static is None:
            try:
                document = _parse_cached(source)
                static = requested_query_cost(document, variables, operation_name, schema=self.schema)
            except (GraphQLError, ValueError) as exc:
                raise ShopifyAdminError(f"cannot price GraphQL document: {exc}", error_class=ErrorClass.HTTP_4XX) from exc
            if len(self._static_costs) > 1024:
                self._static_costs.clear()
            self._static_costs[key] = static
        return self.cost_model.estimate(source, variables, operation_name, static), static

    def _learn(
        self, source: str, variables: Mapping[str, Any], operation_name: str | None, static: int, reserved: int, cost_info: Mapping[str, Any]
    ) -> None:
        requested = cost_info.get("requestedQueryCost")
        if requested is None:
            return
        self.cost_model.observe(source, variables, operation_name, static, requested)
        if requested != reserved:
            with self._stats_lock:
                self.stats.estimate_misses += 1

    def _throttle_wait(self, cost_info: Mapping[str, Any], status: ThrottleStatus | None, response: requests.Response, n: int, cost: int) -> float:
        """How long to wait after the ``n``-th THROTTLED answer of one call."""
        wait = throttle_deficit_wait(
            cost_info.get("requestedQueryCost", cost),
            status.currently_available if status else None,
            status.restore_rate if status else None,
        )
        if wait is not None:
            return wait
        return WRITE_THROTTLE_POLICY.delay_for(n, _parse_retry_after(response.headers.get("Retry-After")))

    def _price(self, source: str, variables: Mapping[str, Any], operation_name: str | None) -> tuple[int, int]:
        cost, static = self._estimate(source, variables, operation_name)
        if cost > self.max_query_cost:
            # Shopify would answer MAX_COST_EXCEEDED; saying so before sending saves a round trip.
            raise ShopifyAdminError(
                f"{operation_name or 'query'} costs {cost} points, over the single-query limit of "
                f"{self.max_query_cost}; request smaller pages",
                error_class=ErrorClass.HTTP_4XX,
                code="MAX_COST_EXCEEDED",
            )
        return cost, static

    def _is_learned(self, source: str, variables: Mapping[str, Any], operation_name: str | None) -> bool:
        return self.cost_model.learned(source, variables, operation_name) is not None

    def _wait_for_bucket(self, cost: int, operation_name: str | None, learned: bool = True) -> Reservation:
        status = self.bucket.status
        if status is not None and cost > status.maximum_available and not learned:
            # Only our estimate says it does not fit; the shop has never priced this
            # document at this size. Wait for a full bucket and let the shop price it:
            # a THROTTLED answer then teaches us the real cost.
            cost = int(status.maximum_available)
        if status is not None and cost > status.maximum_available:
            raise ShopifyAdminError(
                f"{operation_name or 'query'} costs {cost} points but the shop's bucket holds at most "
                f"{status.maximum_available:g}",
                error_class=ErrorClass.RATE_LIMITED,
                code="MAX_COST_EXCEEDED",
            )
        reservation = self.bucket.acquire(cost)
        wait = reservation.wait
        if wait > 0 and self._clock() < self._contended_until:
            wait += bucket_jitter(wait)
        if wait > 0:
            with self._stats_lock:
                self.stats.bucket_waits += 1
                self.stats.bucket_wait_seconds += wait
            log.debug("waiting %.3fs for %d points before %s", wait, cost, operation_name)
            try:
                self._sleep(wait)
            except BaseException:
                self.bucket.settle(reservation, None)
                raise
        return reservation

    def _retry_wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Transient) and exc.retry_after is not None:
            return exc.retry_after
        return self._backoff(state)

    def _stop(self, state: RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Transient) and exc.retry_after is not None and exc.retry_after > self.max_retry_after:
            return True  # a wait that long belongs to the scheduler, not to a sleeping worker
        return stop_after_attempt(self.max_attempts)(state)

    def _count_retry(self, state: RetryCallState) -> None:
        with self._stats_lock:
            self.stats.retries += 1
        exc = state.outcome.exception() if state.outcome else None
        log.info("retrying Shopify Admin call after %s (attempt %d)", exc, state.attempt_number)

    def _post_with_retries(self, body: dict[str, Any]) -> tuple[dict[str, Any], requests.Response]:
        retrying = Retrying(
            retry=retry_if_exception_type(_Transient),
            wait=self._retry_wait,
            stop=self._stop,
            sleep=self._sleep,
            before_sleep=self._count_retry,
            reraise=True,
        )
        try:
            return retrying(self._post_once_response, body)
        except _Transient as exc:
            raise ShopifyAdminError(
                f"Shopify Admin API failed ({exc.error_class.value}): {exc.message}",
                error_class=exc.error_class,
                status=exc.status,
                code="THROTTLED" if exc.status == 429 else None,
            ) from exc

    def _post_once(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._post_once_response(body)[0]

    def _post_once_response(self, body: dict[str, Any]) -> tuple[dict[str, Any], requests.Response]:
        headers = {
            ACCESS_TOKEN_HEADER: self._token,
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        with self._stats_lock:
            self.stats.requests += 1
        try:
            response = self.session.post(self.endpoint, data=json.dumps(body), headers=headers, timeout=self.timeout)
        except requests.ConnectTimeout as exc:
            raise _Transient(ErrorClass.TIMEOUT, f"no connection within {self.timeout}s", sent=False) from exc
        except requests.Timeout as exc:
            raise _Transient(ErrorClass.TIMEOUT, f"no answer within {self.timeout}s") from exc
        except requests.ConnectionError as exc:
            raise _Transient(ErrorClass.CONNECTION, f"cannot reach {self.endpoint}: {type(exc).__name__}", sent=not _never_connected(exc)) from exc
        except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError) as exc:
            # The answer was cut off while it was being read: the request was processed.
            raise _Transient(ErrorClass.MALFORMED_BODY, f"answer cut off: {type(exc).__name__}") from exc
        except requests.RequestException as exc:
            raise _Transient(ErrorClass.CONNECTION, f"request to {self.endpoint} failed: {type(exc).__name__}") from exc

        status = response.status_code
        if status == 429:
            raise _Transient(
                ErrorClass.RATE_LIMITED,
                "HTTP 429 Too Many Requests",
                status=status,
                retry_after=_parse_retry_after(response.headers.get("Retry-After")),
                sent=False,  # a 429 is answered before the request is processed
            )
        if status >= 500:
            raise _Transient(ErrorClass.HTTP_5XX, f"HTTP {status}", status=status)
        if status >= 400:
            raise ShopifyAdminError(
                f"Shopify Admin API refused the request (HTTP {status}): {_error_text(response)}",
                error_class=ErrorClass.HTTP_4XX,
                status=status,
            )
        try:
            payload = response.json()
        except ValueError as exc:
            # A cut-off body is a transport accident as often as not; asking again is cheap.
            raise _Transient(ErrorClass.MALFORMED_BODY, f"unreadable JSON body ({len(response.content)} bytes)", status=status) from exc
        if not isinstance(payload, dict):
            raise _Transient(ErrorClass.MALFORMED_BODY, "JSON body is not an object", status=status)
        return payload, response


def _error_text(response: requests.Response) -> str:
    try:
        payload = response.json()
    except ValueError:
        return response.text[:200]
    errors = payload.get("errors") if isinstance(payload, dict) else None
    if isinstance(errors, str):
        return errors
    if isinstance(errors, list):
        return "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors)
    return json.dumps(payload)[:200]


def _charged(payload: Mapping[str, Any]) -> bool:
    """Whether Shopify charged the request: it ran (THROTTLED and refused documents carry no data)."""
    return "data" in payload


def _is_throttled(errors: object) -> bool:
    return isinstance(errors, list) and any(
        isinstance(e, dict) and (e.get("extensions") or {}).get("code") == "THROTTLED" for e in errors
    )


def _graphql_error(errors: object, operation_name: str | None) -> ShopifyAdminError:
    if isinstance(errors, list):
        messages = tuple(str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors)
        codes = [(e.get("extensions") or {}).get("code") for e in errors if isinstance(e, dict)]
    else:
        messages, codes = (str(errors),), []
    code = next((c for c in codes if c), None)
    return ShopifyAdminError(
        f"Shopify rejected {operation_name or 'query'}: " + "; ".join(messages),
        error_class=ErrorClass.HTTP_4XX,
        code=code,
        messages=messages,
    )

"""Fetch competitor product pages and turn each into one :class:`ScrapeOutcome`.

Every target yields exactly one outcome, success or failure; nothing raises out of
:meth:`StorefrontScraper.scrape_many` and nothing is dropped, because a missing
observation would look like "price unchanged" downstream.

Policies (the reasons are in the comments where they are applied):

* **URL policy.** Each target URL is re-validated at fetch time with
  :mod:`calibr_pipeline.domain.url_policy` (a blocked URL costs no request), every
  redirect target is validated before it is followed (at most
  :data:`MAX_REDIRECTS`), and every socket is checked *after* it connected against
  the address it actually reached, which defeats DNS rebinding. Environment proxies
  and ``.netrc`` are ignored (``trust_env=False``): a proxy would make the socket
  check meaningless and netrc could leak credentials to a competitor.
* **Retries** (tenacity, timing from :class:`~calibr_pipeline.domain.backoff.RetryPolicy`):
  connection errors, timeouts, 5xx and 429 are retried with exponential backoff and
  jitter; ``Retry-After`` is honoured (capped by the policy). DNS failures are
  retried only when the resolver says the failure is temporary (``EAI_AGAIN``); a
  name that does not exist (``EAI_NONAME``, e.g. a typo or a shop that closed) will
  not exist two seconds later. Other 4xx, TLS errors, blocked URLs, bodies that are
  too large or undecodable, and extraction errors are not retried.
* **Politeness.** At most ``per_domain_concurrency`` requests in flight per host
  (a semaphore held for one attempt, redirects included, released during backoff
  sleeps), and ``scrape_many`` interleaves hosts so one big competitor does not
  occupy every worker while others wait.
* **Limits.** Bodies over ``max_body_bytes`` (after decompression, so a gzip bomb
  is caught too) are ``malformed_body``; an attempt that trickles data slower than
  ``attempt_deadline`` seconds in total is a ``timeout``.
* **Shopify** targets fetch ``/products/<handle>.js`` (prices in minor units, the
  endpoint themes use) and fall back to ``.json`` when ``.js`` is 404. Any
  ``/collections/<c>`` segment and the query are dropped, a locale prefix such as
  ``/en-ca`` is kept (it selects the market and so the currency), and a ``variant``
  query parameter becomes the variant hint when none was given. The ``.js`` payload
  carries no currency: without a ``currency_hint`` the store's ``cart_currency``
  cookie is used when present, otherwise the parser decides (``currency_unknown``).

Error classes: ``dns``, ``connection``, ``timeout`` (connect or read), ``tls``,
``http_4xx``, ``http_5xx``, ``rate_limited`` (429 still after the last attempt),
``blocked_url`` (refused by policy, also for redirects), ``invalid_url`` (not a
usable URL, a Shopify target that is not a product URL, or a redirect chain that is
broken or too long), ``malformed_body`` (empty, too large, undecodable, not JSON
where JSON was expected), and the extraction classes raised by the extractors.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import random
import re
import socket
import ssl
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qs, urljoin, urlsplit, urlunsplit

import requests
import tenacity
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from calibr_pipeline.domain.backoff import RetryPolicy, retrying_from_policy
from calibr_pipeline.domain.errors import ErrorClass, ExtractionError
from calibr_pipeline.domain.url_policy import (
    Resolver,
    UrlPolicyError,
    check_connected_address,
    system_resolve,
    validate_competitor_url,
)

if TYPE_CHECKING:  # pragma: no cover
    from calibr_pipeline.domain.offer_extraction import ExtractedOffer

log = logging.getLogger(__name__)

DEFAULT_USER_AGENT = "CalibrateBot/0.1 (+https://calibrate.example/bot)"
MAX_REDIRECTS = 5
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_HTML_ACCEPT = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8"
_JSON_ACCEPT = "application/json,text/javascript;q=0.9,*/*;q=0.5"

TargetKind = Literal["shopify", "html"]
HtmlExtractor = Callable[..., "ExtractedOffer"]
ShopifyParser = Callable[..., "ExtractedOffer"]


# --------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class ListingTarget:
    listing_id: int
    url: str
    kind: TargetKind = "html"
    variant_hint: str | None = None
    currency_hint: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("shopify", "html"):
            raise ValueError(f"listing {self.listing_id}: kind must be 'shopify' or 'html', got {self.kind!r}")


_SHOPIFY_PATH = re.compile(
    r"^(?P<prefix>(?:/[^/]+)*?)(?:/collections/[^/]+)?/products/(?P<handle>[^/]+?)"
    r"(?:\.(?:js|json|oembed|xml))?/?$"
)


@dataclass(frozen=True)
class ShopifyEndpoints:
    js_url: str
    json_url: str
    variant_hint: str | None


def shopify_endpoints(product_url: str, variant_hint: str | None = None) -> ShopifyEndpoints:
    """The ``.js``/``.json`` endpoints of a Shopify product page URL.

    Raises ``UrlPolicyError`` (invalid_url) when the URL is not a product URL.
    """
    parts = urlsplit(product_url)
    match = _SHOPIFY_PATH.match(parts.path)
    if match is None:
        raise UrlPolicyError(
            ErrorClass.INVALID_URL,
            f"'{product_url}' is not a Shopify product URL (expected .../products/<handle>).",
            product_url,
        )
    base = f"{match['prefix']}/products/{match['handle']}"
    if variant_hint is None:
        variant = parse_qs(parts.query).get("variant", [None])[0]
        variant_hint = variant if variant and variant.isdigit() else None
    js_url = urlunsplit((parts.scheme, parts.netloc, base + ".js", "", ""))
    json_url = urlunsplit((parts.scheme, parts.netloc, base + ".json", "", ""))
    return ShopifyEndpoints(js_url, json_url, variant_hint)


# --------------------------------------------------------------------------- outcomes


@dataclass(frozen=True)
class ScrapeOutcome:
    listing_id: int
    url: str
    status: Literal["ok", "error"]
    http_status: int | None
    error_class: ErrorClass | None
    error_message: str | None
    offer: ExtractedOffer | None
    attempts: int
    started_at: datetime
    fetched_at: datetime
    elapsed_ms: int
    final_url: str | None = None
    content_sha256: str | None = None
    content_length: int | None = None
    # stock state a page without a usable price still states (ExtractionError.availability)
    availability: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "listing_id": self.listing_id,
            "url": self.url,
            "final_url": self.final_url,
            "status": self.status,
            "http_status": self.http_status,
            "error_class": self.error_class.value if self.error_class else None,
            "error_message": self.error_message,
            "offer": self.offer.to_json_dict() if self.offer is not None else None,
            "attempts": self.attempts,
            "started_at": self.started_at.isoformat(),
            "fetched_at": self.fetched_at.isoformat(),
            "elapsed_ms": self.elapsed_ms,
            "content_sha256": self.content_sha256,
            "content_length": self.content_length,
        }


@dataclass(frozen=True)
class ScraperStats:
    requests_sent: int
    retries: int
    targets: int
    succeeded: int
    failed: int
    bytes_received: int
    errors_by_class: dict[str, int] = field(default_factory=dict)


# --------------------------------------------------------------------------- internals


class _AttemptFailure(Exception):
    """One failed attempt, already classified. ``retryable`` drives tenacity."""

    def __init__(
        self,
        error_class: ErrorClass,
        message: str,
        *,
        retryable: bool = False,
        http_status: int | None = None,
        retry_after: str | None = None,
        final_url: str | None = None,
    ):
        super().__init__(message)
        self.error_class = error_class
        self.message = message
        self.retryable = retryable
        self.http_status = http_status
        self.retry_after = retry_after
        self.final_url = final_url
        self.attempts = 0


@dataclass
class _Fetched:
    url: str
    final_url: str
    http_status: int
    body: bytes
    content_type: str
    charset: str | None
    cookies: dict[str, str]
    attempts: int = 0


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception and everything it wraps (requests and urllib3 nest deeply)."""
    seen: set[int] = set()
    todo: deque[BaseException] = deque([exc])
    while todo:
        e = todo.popleft()
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        for nested in (e.__cause__, e.__context__, getattr(e, "reason", None), *getattr(e, "args", ())):
            if isinstance(nested, BaseException):
                todo.append(nested)


def _classify_exception(exc: requests.RequestException, url: str) -> _AttemptFailure:
    chain = list(_causes(exc))
    if isinstance(exc, requests.exceptions.SSLError) or any(
        isinstance(e, (ssl.SSLError, ssl.CertificateError, urllib3.exceptions.SSLError)) for e in chain
    ):
        return _AttemptFailure(ErrorClass.TLS, f"TLS handshake or certificate check failed: {_short(exc)}")
    gai = next((e for e in chain if isinstance(e, socket.gaierror)), None)
    if gai is not None or any(isinstance(e, urllib3.exceptions.NameResolutionError) for e in chain):
        temporary = gai is not None and gai.errno == socket.EAI_AGAIN
        host = urlsplit(url).hostname
        detail = "temporary DNS failure" if temporary else "the host name does not resolve"
        return _AttemptFailure(ErrorClass.DNS, f"DNS lookup for '{host}' failed ({detail})", retryable=temporary)
    # urllib3 2.x makes NewConnectionError (refused, unreachable) a subclass of
    # ConnectTimeoutError for backwards compatibility; it is not a timeout.
    if isinstance(exc, requests.exceptions.ConnectTimeout) or any(
        isinstance(e, urllib3.exceptions.ConnectTimeoutError) and not isinstance(e, urllib3.exceptions.NewConnectionError)
        for e in chain
    ):
        return _AttemptFailure(ErrorClass.TIMEOUT, "connecting timed out", retryable=True)
    if isinstance(exc, requests.exceptions.Timeout) or any(
        isinstance(e, (urllib3.exceptions.ReadTimeoutError, TimeoutError, socket.timeout)) for e in chain
    ):
        return _AttemptFailure(ErrorClass.TIMEOUT, "the server stopped responding (read timeout)", retryable=True)
    if isinstance(exc, requests.exceptions.ContentDecodingError):
        return _AttemptFailure(ErrorClass.MALFORMED_BODY, f"the response could not be decompressed: {_short(exc)}")
    if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema, requests.exceptions.MissingSchema)):
        return _AttemptFailure(ErrorClass.INVALID_URL, f"the URL cannot be requested: {_short(exc)}")
    refused = any(isinstance(e, ConnectionRefusedError) or getattr(e, "errno", None) == errno.ECONNREFUSED for e in chain)
    detail = "connection refused" if refused else _short(exc)
    return _AttemptFailure(ErrorClass.CONNECTION, f"could not talk to the server: {detail}", retryable=True)


def _short(exc: BaseException, limit: int = 300) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _charset(content_type: str) -> str | None:
    match = re.search(r"charset\s*=\s*\"?([\w.:-]+)", content_type, re.IGNORECASE)
    return match.group(1) if match else None


def _guarded_adapter(allowed_hosts: tuple[str, ...], pool_maxsize: int) -> HTTPAdapter:
    """An adapter whose every new socket is checked against the URL policy."""

    def check(conn: HTTPConnection, sock: socket.socket) -> None:
        try:
            peer = sock.getpeername()[0]
            check_connected_address(conn.host, conn.port, peer, allowed_hosts)
        except BaseException:
            sock.close()
            raise

    # UrlPolicyError is not an OSError, so urllib3 and requests let it through
    # unwrapped and un-retried; the scraper turns it into blocked_url.
    class GuardedHTTPConnection(HTTPConnection):
        def _new_conn(self) -> socket.socket:
            sock = super()._new_conn()
            check(self, sock)
            return sock

    class GuardedHTTPSConnection(HTTPSConnection):
        def _new_conn(self) -> socket.socket:
            sock = super()._new_conn()
            check(self, sock)
            return sock

    class GuardedHTTPConnectionPool(HTTPConnectionPool):
        ConnectionCls = GuardedHTTPConnection

    class GuardedHTTPSConnectionPool(HTTPSConnectionPool):
        ConnectionCls = GuardedHTTPSConnection

    class GuardedAdapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {
                "http": GuardedHTTPConnectionPool,
                "https": GuardedHTTPSConnectionPool,
            }

        def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
            raise UrlPolicyError(ErrorClass.BLOCKED_URL, "competitor pages are never fetched through a proxy")

    # max_retries=0: retries belong to tenacity, with our policy and our stats.
    return GuardedAdapter(pool_connections=pool_maxsize, pool_maxsize=pool_maxsize, max_retries=0)


# --------------------------------------------------------------------------- scraper


class StorefrontScraper:
    """Fetches competitor pages politely and classifies every failure."""

    def __init__(
        self,
        *,
        timeout: tuple[float, float] = (5.0, 20.0),
        retry_policy: RetryPolicy | None = None,
        per_domain_concurrency: int = 2,
        max_workers: int = 16,
        allowed_hosts: Iterable[str] = (),
        user_agent: str = DEFAULT_USER_AGENT,
        sleep: Callable[[float], Any] = time.sleep,
        session_factory: Callable[[], requests.Session] = requests.Session,
        max_body_bytes: int = 5 * 1024 * 1024,
        attempt_deadline: float = 60.0,
        resolve: Resolver | None = system_resolve,
        rng: random.Random | None = None,
        html_extractor: HtmlExtractor | None = None,
        shopify_parser: ShopifyParser | None = None,
    ):
        if per_domain_concurrency < 1 or max_workers < 1:
            raise ValueError("per_domain_concurrency and max_workers must be at least 1")
        self.timeout = timeout
        self.retry_policy = retry_policy or RetryPolicy()
        self.per_domain_concurrency = per_domain_concurrency
        self.max_workers = max_workers
        self.allowed_hosts = tuple([allowed_hosts] if isinstance(allowed_hosts, str) else allowed_hosts)
        self.user_agent = user_agent
        self.max_body_bytes = max_body_bytes
        self.attempt_deadline = attempt_deadline
        self._sleep = sleep
        self._session_factory = session_factory
        self._resolve = resolve
        self._rng = rng or random.Random()
        self._html_extractor = html_extractor
        self._shopify_parser = shopify_parser

        self._lock = threading.Lock()
        self._domain_slots: dict[str, threading.BoundedSemaphore] = {}
        self._local = threading.local()
        self._sessions: dict[threading.Thread, requests.Session] = {}
        self._requests_sent = 0
        self._retries = 0
        self._bytes = 0
        self._results: Counter[str] = Counter()

    # ----------------------------------------------------------------- lifecycle

    def close(self) -> None:
        with self._lock:
            sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            session.close()

    def __enter__(self) -> StorefrontScraper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _session(self) -> requests.Session:
        # requests.Session is not documented as thread-safe: one per worker thread.
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._session_factory()
            session.trust_env = False
            session.max_redirects = MAX_REDIRECTS
            adapter = _guarded_adapter(self.allowed_hosts, self.per_domain_concurrency)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            self._local.session = session
            with self._lock:
                # Each scrape_many has its own worker threads; close the sessions of
                # threads that are gone so a long-lived scraper does not leak sockets.
                dead = [t for t in self._sessions if not t.is_alive()]
                stale = [self._sessions.pop(t) for t in dead]
                self._sessions[threading.current_thread()] = session
            for old_session in stale:
                old_session.close()
        return session

    # ----------------------------------------------------------------- stats

    @property
    def stats(self) -> ScraperStats:
        with self._lock:
            errors = {k: v for k, v in self._results.items() if k != "ok"}
            return ScraperStats(
                requests_sent=self._requests_sent,
                retries=self._retries,
                targets=sum(self._results.values()),
                succeeded=self._results["ok"],
                failed=sum(errors.values()),
                bytes_received=self._bytes,
                errors_by_class=errors,
            )

    def _count(self, *, requests_sent: int = 0, retries: int = 0, body_bytes: int = 0) -> None:
        with self._lock:
            self._requests_sent += requests_sent
            self._retries += retries
            self._bytes += body_bytes

    # ----------------------------------------------------------------- public

    def scrape_many(self, targets: Sequence[ListingTarget]) -> list[ScrapeOutcome]:
        """One outcome per target, in the order of ``targets``."""
        targets = list(targets)
        if not targets:
            return []
        results: list[ScrapeOutcome | None] = [None] * len(targets)
        order = _interleave_by_host(targets)
        workers = min(self.max_workers, len(targets))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="storefront") as pool:
            futures = {i: pool.submit(self.scrape, targets[i]) for i in order}
            for i, future in futures.items():
                try:
                    results[i] = future.result()
                except Exception as exc:  # scrape() catches everything; this is the last net
                    log.exception("scrape of listing %s crashed", targets[i].listing_id)
                    now = datetime.now(UTC)
                    results[i] = self._error_outcome(
                        targets[i], targets[i].url, now, time.monotonic(), ErrorClass.MALFORMED_BODY,
                        f"internal error while scraping: {_short(exc)}", attempts=0,
                    )
        return [r for r in results if r is not None]

    def scrape(self, target: ListingTarget) -> ScrapeOutcome:
        """Fetch and extract one target. Never raises for a bad page or network."""
        started_at = datetime.now(UTC)
        t0 = time.monotonic()
        try:
            outcome = self._scrape(target, started_at, t0)
        except Exception as exc:
            # An extractor bug must not lose the observation; it is logged with a
            # traceback and stored with a message that points at us, not the page.
            log.exception("unexpected error scraping listing %s (%s)", target.listing_id, target.url)
            outcome = self._error_outcome(
                target, target.url, started_at, t0, ErrorClass.MALFORMED_BODY,
                f"internal error while reading the page: {_short(exc)}", attempts=0,
            )
        with self._lock:
            self._results[outcome.error_class.value if outcome.error_class else "ok"] += 1
        if not outcome.ok:
            log.info(
                "listing %s: %s after %d attempt(s): %s",
                target.listing_id, outcome.error_class, outcome.attempts, outcome.error_message,
            )
        return outcome

    # ----------------------------------------------------------------- steps

    def _scrape(self, target: ListingTarget, started_at: datetime, t0: float) -> ScrapeOutcome:
        try:
            url = validate_competitor_url(target.url, allowed_hosts=self.allowed_hosts, resolve=self._resolve)
        except UrlPolicyError as exc:
            return self._error_outcome(target, target.url, started_at, t0, exc.error_class, exc.message, attempts=0)

        if target.kind == "html":
            return self._scrape_html(target, url, started_at, t0)
        return self._scrape_shopify(target, url, started_at, t0)

    def _scrape_html(self, target: ListingTarget, url: str, started_at: datetime, t0: float) -> ScrapeOutcome:
        try:
            fetched = self._fetch(url, accept=_HTML_ACCEPT)
        except _AttemptFailure as failure:
            return self._failure_outcome(target, url, started_at, t0, failure)
        try:
            html: str | bytes = fetched.body
            if fetched.charset:
                try:
                    html = fetched.body.decode(fetched.charset)
                except LookupError:
                    pass  # unknown charset name: let the extractor sniff <meta charset>
                except UnicodeDecodeError as exc:
                    raise ExtractionError(
                        ErrorClass.MALFORMED_BODY,
                        f"the page is not valid {fetched.charset} text as its headers claim ({exc.reason} at byte {exc.start})",
                    ) from exc
            offer = self._extract_html(
                html, fetched.final_url, variant_hint=target.variant_hint, currency_hint=target.currency_hint
            )
        except ExtractionError as exc:
            return self._error_outcome(
                target, url, started_at, t0, exc.error_class, exc.message, attempts=fetched.attempts, fetched=fetched,
                availability=exc.availability,
            )
        return self._ok_outcome(target, url, started_at, t0, offer, fetched)

    def _scrape_shopify(self, target: ListingTarget, url: str, started_at: datetime, t0: float) -> ScrapeOutcome:
        try:
            endpoints = shopify_endpoints(url, target.variant_hint)
        except UrlPolicyError as exc:
            return self._error_outcome(target, url, started_at, t0, exc.error_class, exc.message, attempts=0)
        attempts = 0
        fetched: _Fetched | None = None
        kind: Literal["js", "json"] = "js"
        for kind, endpoint in (("js", endpoints.js_url), ("json", endpoints.json_url)):
            try:
                fetched = self._fetch(endpoint, accept=_JSON_ACCEPT)
                attempts += fetched.attempts
                fetched.attempts = attempts
                break
            except _AttemptFailure as failure:
                attempts += failure.attempts
                failure.attempts = attempts
                # Older or customised themes may lack .js; 404 is the only answer that
                # means "try the other endpoint" rather than "the product is unreachable".
                if kind == "js" and failure.http_status == 404:
                    continue
                if kind == "json" and failure.http_status == 404:
                    failure.message = "product not found: both .js and .json endpoints answered 404"
                return self._failure_outcome(target, endpoint, started_at, t0, failure)
        assert fetched is not None
        try:
            currency = target.currency_hint or fetched.cookies.get("cart_currency") or None
            # The raw body goes to the parser: it decodes JSON numbers as Decimal, and
            # json.loads here would already have turned prices into floats.
            offer = self._parse_shopify(fetched.body, kind=kind, variant_hint=endpoints.variant_hint, currency=currency)
        except ExtractionError as exc:
            message = exc.message
            if exc.error_class is ErrorClass.MALFORMED_BODY and "json" not in fetched.content_type.lower():
                # Usually a password page or a bot wall served instead of the product.
                message = f"{message} (served as {fetched.content_type or 'no content type'})"
            return self._error_outcome(
                target, fetched.url, started_at, t0, exc.error_class, message,
                attempts=fetched.attempts, fetched=fetched,
            )
        return self._ok_outcome(target, fetched.url, started_at, t0, offer, fetched)

    def _extract_html(self, html: str | bytes, page_url: str, **kw: Any) -> ExtractedOffer:
        extractor = self._html_extractor
        if extractor is None:
            from calibr_pipeline.domain.offer_extraction import extract_offer

            extractor = extract_offer
        return extractor(html, page_url, **kw)

    def _parse_shopify(self, payload: bytes, **kw: Any) -> ExtractedOffer:
        parser = self._shopify_parser
        if parser is None:
            from calibr_pipeline.domain.shopify_storefront import parse_shopify_product

            parser = parse_shopify_product
        return parser(payload, **kw)

    # ----------------------------------------------------------------- HTTP

    def _fetch(self, url: str, *, accept: str) -> _Fetched:
        """GET with retries. Raises ``_AttemptFailure`` carrying the attempt count."""
        attempts = 0

        def one_attempt() -> _Fetched:
            nonlocal attempts
            attempts += 1
            return self._attempt(url, accept)

        def before_sleep(state: tenacity.RetryCallState) -> None:
            self._count(retries=1)

        retrying = retrying_from_policy(
            self.retry_policy,
            retry=lambda exc: isinstance(exc, _AttemptFailure) and exc.retryable,
            sleep=self._sleep,
            rng=self._rng,
            before_sleep=before_sleep,
        )
        try:
            fetched = retrying(one_attempt)
        except _AttemptFailure as failure:
            failure.attempts = attempts
            raise
        fetched.attempts = attempts
        return fetched

    @contextmanager
    def _domain_slot(self, host: str) -> Iterator[None]:
        with self._lock:
            slot = self._domain_slots.get(host)
            if slot is None:
                slot = self._domain_slots[host] = threading.BoundedSemaphore(self.per_domain_concurrency)
        with slot:
            yield

    def _attempt(self, url: str, accept: str) -> _Fetched:
        session = self._session()
        headers = {"User-Agent": self.user_agent, "Accept": accept}
        host = (urlsplit(url).hostname or "").lower()
        current = url
        with self._domain_slot(host):
            deadline = time.monotonic() + self.attempt_deadline
            for _hop in range(MAX_REDIRECTS + 1):
                self._count(requests_sent=1)
                try:
                    response = session.get(
                        current, headers=headers, timeout=self.timeout, stream=True, allow_redirects=False
                    )
                except UrlPolicyError as exc:
                    raise _AttemptFailure(exc.error_class, exc.message, final_url=current) from exc
                except requests.RequestException as exc:
                    failure = _classify_exception(exc, current)
                    failure.final_url = current
                    raise failure from exc
                try:
                    if response.status_code in _REDIRECT_STATUSES:
                        current = self._redirect_target(current, response)
                        continue
                    return self._read(url, current, response, deadline)
                finally:
                    response.close()
        raise _AttemptFailure(
            ErrorClass.INVALID_URL, f"the page redirects more than {MAX_REDIRECTS} times", final_url=current
        )

    def _redirect_target(self, current: str, response: requests.Response) -> str:
        location = response.headers.get("Location")
        if not location:
            raise _AttemptFailure(
                ErrorClass.INVALID_URL,
                f"the server answered {response.status_code} (redirect) without saying where to",
                http_status=response.status_code,
                final_url=current,
            )
        target = urljoin(current, location)
        try:
            return validate_competitor_url(target, allowed_hosts=self.allowed_hosts, resolve=self._resolve)
        except UrlPolicyError as exc:
            raise _AttemptFailure(
                exc.error_class,
                f"the page redirects to a URL that cannot be fetched: {exc.message}",
                http_status=response.status_code,
                final_url=target,
            ) from exc

    def _read(self, url: str, final_url: str, response: requests.Response, deadline: float) -> _Fetched:
        status = response.status_code
        retry_after = response.headers.get("Retry-After")
        if status == 429:
            raise _AttemptFailure(
                ErrorClass.RATE_LIMITED, "the server is rate limiting us (HTTP 429)",
                retryable=True, http_status=status, retry_after=retry_after, final_url=final_url,
            )
        if 500 <= status <= 599:
            raise _AttemptFailure(
                ErrorClass.HTTP_5XX, f"the server failed (HTTP {status})",
                retryable=True, http_status=status, retry_after=retry_after, final_url=final_url,
            )
        if 400 <= status <= 499:
            what = {404: "page not found", 410: "page removed", 403: "access denied", 401: "login required"}
            raise _AttemptFailure(
                ErrorClass.HTTP_4XX, f"{what.get(status, 'request refused')} (HTTP {status})",
                http_status=status, final_url=final_url,
            )
        if not 200 <= status <= 299:
            raise _AttemptFailure(
                ErrorClass.MALFORMED_BODY, f"unexpected HTTP status {status}", http_status=status, final_url=final_url
            )

        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise self._too_large(status, final_url)
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.iter_content(chunk_size=64 * 1024):
                size += len(chunk)
                self._count(body_bytes=len(chunk))
                if size > self.max_body_bytes:
                    raise self._too_large(status, final_url)
                if time.monotonic() > deadline:
                    # Per-read timeouts cannot catch a server that trickles a byte at a time.
                    raise _AttemptFailure(
                        ErrorClass.TIMEOUT, f"the page took longer than {self.attempt_deadline:g}s to download",
                        retryable=True, http_status=status, final_url=final_url,
                    )
                chunks.append(chunk)
        except requests.RequestException as exc:
            failure = _classify_exception(exc, final_url)
            failure.http_status = status
            failure.final_url = final_url
            raise failure from exc
        body = b"".join(chunks)
        if not body:
            raise _AttemptFailure(
                ErrorClass.MALFORMED_BODY, f"the server sent an empty response (HTTP {status})",
                http_status=status, final_url=final_url,
            )
        content_type = response.headers.get("Content-Type", "")
        return _Fetched(
            url=url,
            final_url=final_url,
            http_status=status,
            body=body,
            content_type=content_type,
            charset=_charset(content_type),
            cookies={c.name: c.value or "" for c in response.cookies},
        )

    def _too_large(self, status: int, final_url: str) -> _AttemptFailure:
        return _AttemptFailure(
            ErrorClass.MALFORMED_BODY,
            f"the page is larger than {self.max_body_bytes} bytes",
            http_status=status,
            final_url=final_url,
        )

    # ----------------------------------------------------------------- outcomes

    def _ok_outcome(
        self, target: ListingTarget, url: str, started_at: datetime, t0: float, offer: ExtractedOffer, fetched: _Fetched
    ) -> ScrapeOutcome:
        return ScrapeOutcome(
            listing_id=target.listing_id, url=url, status="ok", http_status=fetched.http_status,
            error_class=None, error_message=None, offer=offer, attempts=fetched.attempts,
            started_at=started_at, fetched_at=datetime.now(UTC), elapsed_ms=_ms_since(t0),
            final_url=fetched.final_url, content_sha256=hashlib.sha256(fetched.body).hexdigest(),
            content_length=len(fetched.body),
        )

    def _failure_outcome(
        self, target: ListingTarget, url: str, started_at: datetime, t0: float, failure: _AttemptFailure
    ) -> ScrapeOutcome:
        return ScrapeOutcome(
            listing_id=target.listing_id, url=url, status="error", http_status=failure.http_status,
            error_class=failure.error_class, error_message=failure.message, offer=None,
            attempts=failure.attempts, started_at=started_at, fetched_at=datetime.now(UTC),
            elapsed_ms=_ms_since(t0), final_url=failure.final_url,
        )

    def _error_outcome(
        self, target: ListingTarget, url: str, started_at: datetime, t0: float, error_class: ErrorClass,
        message: str, *, attempts: int, fetched: _Fetched | None = None, availability: str | None = None,
    ) -> ScrapeOutcome:
        return ScrapeOutcome(
            listing_id=target.listing_id, url=url, status="error",
            http_status=fetched.http_status if fetched else None,
            error_class=error_class, error_message=message, offer=None, attempts=attempts,
            started_at=started_at, fetched_at=datetime.now(UTC), elapsed_ms=_ms_since(t0),
            final_url=fetched.final_url if fetched else None,
            content_sha256=hashlib.sha256(fetched.body).hexdigest() if fetched else None,
            content_length=len(fetched.body) if fetched else None,
            availability=availability,
        )


def _ms_since(t0: float) -> int:
    return int(round((time.monotonic() - t0) * 1000))


def _interleave_by_host(targets: Sequence[ListingTarget]) -> list[int]:
    """Target indexes in round-robin order across hosts."""
    queues: dict[str, deque[int]] = defaultdict(deque)
    for i, target in enumerate(targets):
        try:
            host = (urlsplit(target.url).hostname or "").lower()
        except ValueError:
            host = ""
        queues[host].append(i)
    order: list[int] = []
    while queues:
        for host in list(queues):
            order.append(queues[host].popleft())
            if not queues[host]:
                del queues[host]
    return order

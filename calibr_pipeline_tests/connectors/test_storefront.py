"""StorefrontScraper against a real HTTP server on 127.0.0.1 (no mocked requests)."""

from __future__ import annotations

import gzip
import json
import random
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from calibr_pipeline.connectors.storefront import (
    ListingTarget,
    ScrapeOutcome,
    StorefrontScraper,
    shopify_endpoints,
)
from calibr_pipeline.domain.backoff import RetryPolicy
from calibr_pipeline.domain.errors import ErrorClass, ExtractionError
from calibr_pipeline.domain.url_policy import UrlPolicyError

pytestmark = pytest.mark.integration

# --------------------------------------------------------------------------- test server

Reply = tuple[int, dict[str, str], bytes]


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]


@dataclass
class PageServer:
    """Serves ``routes[path](handler) -> (status, headers, body)`` and records what it saw."""

    routes: dict[str, Callable[[BaseHTTPRequestHandler], Reply]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    in_flight: dict[str, int] = field(default_factory=dict)
    max_in_flight: dict[str, int] = field(default_factory=dict)
    max_in_flight_total: int = 0
    hold_seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)
    port: int = 0

    def base(self, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}"

    def paths(self) -> list[str]:
        with self.lock:
            return [r.path for r in self.requests]


def _handler_for(state: PageServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            host = self.headers.get("Host", "").split(":")[0]
            with state.lock:
                state.requests.append(Recorded(self.path, dict(self.headers)))
                state.in_flight[host] = state.in_flight.get(host, 0) + 1
                state.max_in_flight[host] = max(state.max_in_flight.get(host, 0), state.in_flight[host])
                state.max_in_flight_total = max(state.max_in_flight_total, sum(state.in_flight.values()))
            done = False

            def finish() -> None:
                # The request stops counting as in flight once its answer is ready, *before* the
                # last bytes go out: the client may release its slot and send the next request
                # as soon as it has read them, before this thread would get back here.
                nonlocal done
                if not done:
                    done = True
                    with state.lock:
                        state.in_flight[host] -= 1

            try:
                if state.hold_seconds:
                    time.sleep(state.hold_seconds)
                route = state.routes.get(self.path.split("?")[0])
                status, headers, body = route(self) if route else (404, {}, b"not found")
                finish()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if "Content-Length" not in headers:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass
            finally:
                finish()

    return Handler


@pytest.fixture
def server():
    state = PageServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(state))
    httpd.daemon_threads = True
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


def html(body: str, status: int = 200, **headers: str) -> Callable[[Any], Reply]:
    return lambda _h: (status, {"Content-Type": "text/html; charset=utf-8", **headers}, body.encode())


def sequence(*replies: Reply) -> Callable[[Any], Reply]:
    """Replies in order, repeating the last one."""
    queue = list(replies)
    lock = threading.Lock()

    def route(_h: Any) -> Reply:
        with lock:
            return queue.pop(0) if len(queue) > 1 else queue[0]

    return route


# --------------------------------------------------------------------------- stand-in extractors
# Transport tests use tiny stand-ins so they do not depend on extraction rules; the
# real extractors are exercised at the bottom when they are importable.


@dataclass(frozen=True)
class StandInOffer:
    amount: Decimal
    currency: str
    variant_id: str | None = None
    source: str = "stand-in"

    def to_json_dict(self) -> dict[str, Any]:
        return {"amount": str(self.amount), "currency": self.currency, "variant_id": self.variant_id}


def stand_in_html(html_text: str | bytes, page_url: str, *, variant_hint=None, currency_hint=None) -> StandInOffer:
    text = html_text.decode("utf-8") if isinstance(html_text, bytes) else html_text
    match = re.search(r'data-price="([0-9.]+)" data-currency="([A-Z]{3})"', text)
    if not match:
        raise ExtractionError(ErrorClass.PARSE_NO_PRICE, "no price on the page")
    return StandInOffer(Decimal(match[1]), match[2])


def stand_in_shopify(body: str | bytes, *, kind: str, variant_hint=None, currency=None) -> StandInOffer:
    try:
        payload = json.loads(body, parse_float=Decimal)
    except ValueError as exc:
        raise ExtractionError(ErrorClass.MALFORMED_BODY, f"not JSON: {exc}") from exc
    if currency is None:
        raise ExtractionError(ErrorClass.CURRENCY_UNKNOWN, "no currency")
    variants = payload["variants"] if kind == "js" else payload["product"]["variants"]
    chosen = next((v for v in variants if str(v["id"]) == variant_hint), variants[0]) if variant_hint else variants[0]
    if kind == "js":
        amount = Decimal(chosen["price"]).scaleb(-2)  # .js prices are minor units
    else:
        amount = Decimal(chosen["price"])
    return StandInOffer(amount, currency, str(chosen["id"]))


PRODUCT_PAGE = '<html><body><span data-price="19.99" data-currency="EUR">19,99 €</span></body></html>'
JS_PAYLOAD = {"id": 1, "handle": "widget", "variants": [{"id": 41, "price": 1999}, {"id": 42, "price": 2499}]}
JSON_PAYLOAD = {"product": {"id": 1, "handle": "widget", "variants": [{"id": 41, "price": "19.99"}]}}


def jsonify(payload: Any, status: int = 200, **headers: str) -> Callable[[Any], Reply]:
    return lambda _h: (status, {"Content-Type": "application/json", **headers}, json.dumps(payload).encode())


@pytest.fixture
def sleeps() -> list[float]:
    return []


def make_scraper(sleeps: list[float], **overrides: Any) -> StorefrontScraper:
    options: dict[str, Any] = dict(
        timeout=(1.0, 1.0),
        retry_policy=RetryPolicy(max_attempts=3, base_seconds=0.5, jitter=0.0),
        allowed_hosts=["127.0.0.1"],
        sleep=sleeps.append,  # recorded, not waited: keeps retry tests instant
        rng=random.Random(7),
        html_extractor=stand_in_html,
        shopify_parser=stand_in_shopify,
    )
    options.update(overrides)
    return StorefrontScraper(**options)


# --------------------------------------------------------------------------- success paths


def test_html_page_success(server: PageServer, sleeps: list[float]) -> None:
    server.routes["/p/widget"] = html(PRODUCT_PAGE)
    with make_scraper(sleeps) as scraper:
        outcome = scraper.scrape(ListingTarget(7, server.base() + "/p/widget"))
    assert outcome.status == "ok", outcome.error_message
    assert outcome.offer.amount == Decimal("19.99") and outcome.offer.currency == "EUR"
    assert (outcome.listing_id, outcome.http_status, outcome.attempts) == (7, 200, 1)
    assert outcome.error_class is None and outcome.error_message is None
    assert outcome.content_length == len(PRODUCT_PAGE.encode()) and len(outcome.content_sha256) == 64
    assert outcome.started_at.tzinfo is not None and outcome.fetched_at >= outcome.started_at
    assert outcome.elapsed_ms >= 0
    assert server.requests[0].headers["User-Agent"] == "CalibrateBot/0.1 (+https://calibrate.example/bot)"
    assert sleeps == []
    assert json.loads(json.dumps(outcome.to_json_dict()))["offer"]["amount"] == "19.99"


def test_gzip_body_is_decompressed(server: PageServer, sleeps: list[float]) -> None:
    body = gzip.compress(PRODUCT_PAGE.encode())
    server.routes["/gz"] = lambda _h: (200, {"Content-Type": "text/html", "Content-Encoding": "gzip"}, body)
    with make_scraper(sleeps) as scraper:
        outcome = scraper.scrape(ListingTarget(1, server.base() + "/gz"))
    assert outcome.ok and outcome.offer.amount == Decimal("19.99")


def test_shopify_js_in_minor_units_with_variant_from_query(server: PageServer, sleeps: list[float]) -> None:
    server.routes["/products/widget.js"] = jsonify(JS_PAYLOAD)
    target = ListingTarget(3, server.base() + "/collections/sale/products/widget?variant=42", "shopify", currency_hint="CAD")
    with make_scraper(sleeps) as scraper:
        outcome = scraper.scrape(target)
    assert outcome.ok, outcome.error_message
    assert server.paths() == ["/products/widget.js"]
    assert outcome.url == server.base() + "/products/widget.js"
    assert outcome.offer.amount == Decimal("24.99") and outcome.offer.variant_id == "42"
    assert outcome.offer.currency == "CAD"
    assert server.requests[0].headers["Accept"].startswith("application/json")


def test_shopify_currency_from_cart_currency_cookie(server: PageServer, sleeps: list[float]) -> None:
    server.routes["/products/widget.js"] = jsonify(JS_PAYLOAD, **{"Set-Cookie": "cart_currency=GBP; path=/"})
    with make_scraper(sleeps) as scraper:
        outcome = scraper.scrape(ListingTarget(3, server.base() + "/products/widget", "shopify"))
    assert outcome.ok and outcome.offer.currency == "GBP"


def test_shopify_falls_back_to_json_when_js_is_404(server: PageServer, sleeps: list[float]) -> None:
    server.routes["/products/widget.json"] = jsonify(JSON_PAYLOAD)
    with make_scraper(sleeps) as scraper:
        outcome = scraper.scrape(ListingTarget(4, server.base() + "/products/widget", "shopify", currency_hint="USD"))
    assert outcome.ok, outcome.error_message
    assert server.paths() == ["/products/widget.js", "/products/widget.json"]
    assert outcome.url.endswith("/products/widget.json")
    assert outcome.offer.amount == Decimal("19.99")
    assert outcome.attempts == 2 and sleeps == []


def test_shopify_both_endpoints_404(server: PageServer, sleeps: list[float]) -> None:
    with make_scraper(sleeps) as scraper:
        outcome = scraper.scrape(ListingTarget(4, server.base() + "/products/gone", "shopify", currency_hint="USD"))
    assert outcome.error_class is ErrorClass.HTTP_4XX and outcome.http_status == 404
    assert "both .js and .json" in outcome.error_message
    assert outcome.attempts == 2


def test_shopify_non_json_body_is_malformed(server: PageServer, sleeps: list[float]) -> None:
    server.routes["/products/widget.js"] = html("<html>password page</html>")
    with make_scraper(sleeps) as scraper:
        outcome = scraper.scrape(ListingTarget(4, server.base() + "/products/widget", "shopify", currency_hint="USD"))
    assert outcome.error_class is ErrorClass.MALFORMED_BODY and outcome.http_status == 200
    assert "text/html" in outcome.error_message


def test_shopify_target_that_is_not_a_product_url(server: PageServer, sleeps: list[float]) -> None:
    with make_scraper(sleeps) as scraper:
        outcome = scraper.scrape(ListingTarget(4, server.base() + "/collections/all", "shopify"))
    assert outcome.error_class is ErrorClass.INVALID_URL and outcome.attempts == 0
    assert server.requests == []


@pytest.mark.parametrize(
    ("url", "js", "variant"),
    [
        ("https://shop.example/products/tee", "https://shop.example/products/tee.js", None),
        ("https://shop.example/products/tee/?variant=123&utm=x", "https://shop.example/products/tee.js", "123"),
        ("https://shop.example/collections/men/products/tee", "https://shop.example/products/tee.js", None),
        ("https://shop.example/en-ca/products/tee.json", "https://shop.example/en-ca/products/tee.js", None),
        ("https://shop.example/products/tee?variant=abc", "https://shop.example/products/tee.js", None),
    ],
)
def test_shopify_endpoints(url: str, js: str, variant: str | None) -> None:
    endpoints = shopify_endpoints(url)
    assert endpoints.js_url == js
    assert endpoints.json_url == js[: -len(".js")] + ".json"
    assert endpoints.variant_hint == variant


def test_shopify_endpoints_keeps_explicit_variant_hint() -> None:
    assert shopify_endpoints("https://s.example/products/t?variant=1", "2").variant_hint == "2"
    with pytest.raises(UrlPolicyError) as info:
        shopify_endpoints("https://s.example/pages/about")
    assert info.value.error_class is ErrorClass.INVALID_URL


# --------------------------------------------------------------------------- retries


def test_5xx_then_success_is_retried(server: PageServer, sleeps: list[float]) -> None:
    server.routes["/flaky"] = sequence((503, {}, b"busy"), (200, {"Content-Type": "text/html"}, PRODUCT_PAGE.encode()))
    with make_scraper(sleeps) as scraper:
        outcome = scraper.scrape(ListingTarget(1, server.base() + "/flaky"))
        stats = scraper.stats
    assert outcome.ok and outcome.attempts == 2
    assert sleeps == [0.5]
    assert (stats.requests_sent, stats.retries, stats.succeeded) == (2, 1, 1)


def test_5xx_until_the_end_is_http_5xx(server: PageServer, sleeps: list[float]) -> None:
    server.routes["/down"] = lambda _h: (500, {}, b"boom")
    with make_scraper(sleeps) as scraper:
        outcome = scraper.scrape(ListingTarget(1, server.base() + "/down"))
    assert outcome.error_class is ErrorClass.HTTP_5XX and outcome.http_status == 500
    assert outcome.attempts == 3 and sleeps == [0.5, 1.0]  # exponential, jitter off


def test_429_retry_after_is_honoured(server: PageServer, sleeps: list[float]) -> None:
    server.routes["/limited"] = sequence(
        (429, {"Retry-After": "7"}, b"slow down"), (200, {"Content-Type": "text/html"}, PRODUCT_PAGE.encode())
    )
    with make_scraper(sleeps) as scraper:
        outcome = scraper.scrape(ListingTarget(1, server.base() + "/limited"))
    assert outcome.ok and outcome.attempts == 2
    assert sleeps == [7.0]


def test_429_retry_after_is_capped(server: PageServer, sleeps: list[float]) -> None:
    server.routes["/limited"] = lambda _h: (429, {"Retry-After": "86400"}, b"")
    policy = RetryPolicy(max_attempts=2, base_seconds=0.5, jitter=0.0, retry_after_cap=30.0)
    with make_scraper(sleeps, retry_policy=policy) as scraper:
        outcome = scraper.scrape(ListingTarget(1, server.base() + "/limited"))
    assert outcome.error_class is ErrorClass.RATE_LIMITED and outcome.http_status == 429
    assert outcome.attempts == 2 and sleeps == [30.0]


def test_read_timeout_is_classified_timeout(server: PageServer, sleeps: list[float]) -> None:
    def slow(_h: Any) -> Reply:
        time.sleep(0.6)
        return 200, {"Content-Type": "text/html"}, PRODUCT_PAGE.encode()

    server.routes["/slow"] = slow
    policy = RetryPolicy(max_attempts=2, base_seconds=0.5, jitter=0.0)
    with make_scraper(sleeps, timeout=(1.0, 0.15), retry_policy=policy) as scraper:
        outcome = scraper.scrape(ListingTarget(1, server.base() + "/slow"))
    assert outcome.error_class is ErrorClass.TIMEOUT, outcome.error_message
    assert outcome.attempts == 2 and sleeps == [0.5]


def test_trickling_body_hits_the_attempt_deadline(server: PageServer, sleeps: list[float]) -> None:
    def trickle(handler: BaseHTTPRequestHandler) -> Reply:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/html")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        for _ in range(30):
            handler.wfile.write(b"1\r\nx\r\n")
            handler.wfile.flush()
            time.sleep(0.02)
        handler.wfile.write(b"0\r\n\r\n")
        raise BrokenPipeError  # already answered: skip the generic reply

    server.routes["/trickle"] = trickle
    policy = RetryPolicy(max_attempts=1)
    with make_scraper(sleeps, retry_policy=policy, attempt_deadline=0.1) as scraper:
        outcome = scraper.scrape(ListingTarget(1, server.base() + "/trickle"))
    assert outcome.error_class is ErrorClass.TIMEOUT
    assert "longer than" in outcome.error_message


def test_unknown_host_is_dns_and_not_retried(sleeps: list[float]) -> None:
    with make_scraper(sleeps) as scraper:
        outcome = scraper.scrape(ListingTarget(1, "http://no-such-shop.invalid/products/x"))
    assert outcome.error_class is ErrorClass.DNS, outcome.error_message
    assert "no-such-shop.invalid" in outcome.error_message
    assert outcome.attempts == 1 and sleeps == []


def test_connection_refused_is_connection_and_retried(sleeps: list[float]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with make_scraper(sleeps) as scraper:
        outcome = scraper.scrape(ListingTarget(1, f"http://127.0.0.1:{port}/p"))
    assert outcome.error_class is ErrorClass.CONNECTION
    assert "refused" in outcome.error_message
    assert outcome.attempts == 3 and len(sleeps) == 2


def test_tls_failure_is_tls_and_not_retried(server: PageServer, sleeps: list[float]) -> None:
    # A plain-HTTP server spoken to over https fails the TLS handshake.
    with make_scraper(sleeps) as scraper:
        outcome = scraper.scrape(ListingTarget(1, f"https://127.0.0.1:{server.port}/p"))
    assert outcome.error_class is ErrorClass.TLS, outcome.error_message
    assert outcome.attempts == 1 and sleeps == []


def test_404_is_http_4xx_and_not_retried(server: PageServer, sleeps: list[float]) -> None:
    with make_scraper(sleeps) as scraper:
        outcome = scraper.scrape(ListingTarget(1, server.base() + "/missing"))
    assert outcome.error_class is ErrorClass.HTTP_4XX and outcome.http_status == 404
    assert outcome.attempts == 1 and sleeps == [] and len(server.requests) == 1


# --------------------------------------------------------------------------- bodies and extraction


def test_body_too_large(server: PageServer, sleeps: list[float]) -> None:
    server.routes["/big"] = html("x" * 5000)
    with make_scraper(sleeps, max_body_bytes=1000) as scraper:
        outcome = scraper.scrape(ListingTarget(1, server.base() + "/big"))
    assert outcome.error_class is ErrorClass.MALFORMED_BODY and "larger than 1000" in outcome.error_message


def test_body_too_large_without_content_length(server: PageServer, sleeps: list[float]) -> None:
    bomb = gzip.compress(b"x" * 200_000)  # small on the wire, large once decompressed
    server.routes["/bomb"] = lambda _h: (200, {"Content-Type": "text/html", "Content-Encoding": "gzip"}, bomb)
    with make_scraper(sleeps, max_body_bytes=100_000) as scraper:
        outcome = scraper.scrape(ListingTarget(1, server.base() + "/bomb"))
    assert outcome.error_class is ErrorClass.MALFORMED_BODY and outcome.attempts == 1


def test_undecodable_body_is_malformed(server: PageServer, sleeps: list[float]) -> None:
    server.routes["/latin"] = lambda _h: (200, {"Content-Type": "text/html; charset=utf-8"}, b"<p>caf\xe9</p>")
    server.routes["/empty"] = lambda _h: (200, {"Content-Type": "text/html"}, b"")
    with make_scraper(sleeps) as scraper:
        latin = scraper.scrape(ListingTarget(1, server.base() + "/latin"))
        empty = scraper.scrape(ListingTarget(2, server.base() + "/empty"))
    assert latin.error_class is ErrorClass.MALFORMED_BODY and "utf-8" in latin.error_message
    assert latin.content_length == 11
    assert empty.error_class is ErrorClass.MALFORMED_BODY and "empty" in empty.error_message


def test_extraction_error_becomes_outcome(server: PageServer, sleeps: list[float]) -> None:
    server.routes["/noprice"] = html("<html>sold out</html>")
    with make_scraper(sleeps) as scraper:
        outcome = scraper.scrape(ListingTarget(1, server.base() + "/noprice"))
    assert outcome.error_class is ErrorClass.PARSE_NO_PRICE and outcome.http_status == 200
    assert outcome.attempts == 1 and outcome.content_sha256 is not None


def test_price_less_page_keeps_its_stated_stock_state(server: PageServer, sleeps: list[float]) -> None:
    """A sold-out page without a price (development set: amazon_mx_out_of_stock_no_price.html)
    is still a PARSE_NO_PRICE outcome, but its "OutOfStock" reaches the observation."""
    from pathlib import Path

    from calibr_pipeline.domain.offer_extraction import extract_offer
    from calibr_pipeline.services.competitor_monitoring import to_observation

    page = Path(__file__).resolve().parent.parent / "fixtures" / "pages" / "pages" / "amazon_mx_out_of_stock_no_price.html"
    server.routes["/dp/2"] = html(page.read_text(encoding="utf-8"))
    server.routes["/p/plain"] = html("<html><body><h1>Widget</h1><p>Nice widget.</p></body></html>")
    with make_scraper(sleeps, html_extractor=extract_offer) as scraper:
        sold_out = scraper.scrape(ListingTarget(1, server.base() + "/dp/2"))
        silent = scraper.scrape(ListingTarget(2, server.base() + "/p/plain"))
    assert sold_out.error_class is ErrorClass.PARSE_NO_PRICE and sold_out.offer is None
    assert sold_out.availability == "OutOfStock"
    observation = to_observation(sold_out)
    assert (observation.status, observation.amount, observation.availability) == ("error", None, "OutOfStock")
    assert silent.error_class is ErrorClass.PARSE_NO_PRICE and silent.availability is None
    assert to_observation(silent).availability is None


def test_extractor_crash_is_an_outcome_not_an_exception(server: PageServer, sleeps: list[float]) -> None:
    server.routes["/p"] = html(PRODUCT_PAGE)

    def broken(*_a: Any, **_k: Any) -> Any:
        raise RuntimeError("bug in extractor")

    with make_scraper(sleeps, html_extractor=broken) as scraper:
        outcome = scraper.scrape(ListingTarget(1, server.base() + "/p"))
    assert outcome.status == "error" and outcome.error_class is ErrorClass.MALFORMED_BODY
    assert "internal error" in outcome.error_message and "bug in extractor" in outcome.error_message


# --------------------------------------------------------------------------- URL policy at fetch time


def test_blocked_url_sends_no_request(server: PageServer, sleeps: list[float]) -> None:
    with make_scraper(sleeps, allowed_hosts=()) as scraper:
        loopback = scraper.scrape(ListingTarget(1, server.base() + "/p"))
        metadata = scraper.scrape(ListingTarget(2, "http://169.254.169.254/latest/meta-data/"))
        userinfo = scraper.scrape(ListingTarget(3, "http://user:pw@shop.example/p"))
    assert loopback.error_class is ErrorClass.BLOCKED_URL and loopback.attempts == 0
    assert metadata.error_class is ErrorClass.BLOCKED_URL and "metadata" in metadata.error_message
    assert userinfo.error_class is ErrorClass.INVALID_URL
    assert server.requests == []


def test_allow_list_by_port_only_admits_that_port(server: PageServer, sleeps: list[float]) -> None:
    server.routes["/p"] = html(PRODUCT_PAGE)
    with make_scraper(sleeps, allowed_hosts=[f"127.0.0.1:{server.port}"]) as scraper:
        good = scraper.scrape(ListingTarget(1, server.base() + "/p"))
        other = scraper.scrape(ListingTarget(2, f"http://127.0.0.1:{server.port + 1 if server.port < 65535 else 1}/p"))
    assert good.ok
    assert other.error_class is ErrorClass.BLOCKED_URL


def test_redirects_are_followed_and_validated(server: PageServer, sleeps: list[float]) -> None:
    server.routes["/old"] = lambda _h: (301, {"Location": "/new"}, b"")
    server.routes["/new"] = html(PRODUCT_PAGE)
    server.routes["/evil"] = lambda _h: (302, {"Location": "http://169.254.169.254/latest/"}, b"")
    server.routes["/loop"] = lambda _h: (302, {"Location": "/loop"}, b"")
    with make_scraper(sleeps, allowed_hosts=[f"127.0.0.1:{server.port}"]) as scraper:
        moved = scraper.scrape(ListingTarget(1, server.base() + "/old"))
        evil = scraper.scrape(ListingTarget(2, server.base() + "/evil"))
        loop = scraper.scrape(ListingTarget(3, server.base() + "/loop"))
    assert moved.ok and moved.final_url == server.base() + "/new" and moved.url == server.base() + "/old"
    assert evil.error_class is ErrorClass.BLOCKED_URL and "redirects" in evil.error_message
    assert loop.error_class is ErrorClass.INVALID_URL and loop.attempts == 1
    assert server.paths().count("/loop") == 6


def test_connected_address_is_checked_against_dns_rebinding(server: PageServer, sleeps: list[float]) -> None:
    # Validation sees a public address (the fake resolver); the socket then reaches
    # loopback, as after a rebinding. The check on the connected socket must refuse.
    name = socket.gethostname()
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(name, server.port, type=socket.SOCK_STREAM)}
    except socket.gaierror:
        addresses = set()
    if "127.0.0.1" not in addresses or name.lower() in ("localhost",) or name.lower().endswith((".localhost", ".internal")):
        pytest.skip("needs a machine host name that resolves to 127.0.0.1")
    server.routes["/p"] = html(PRODUCT_PAGE)
    with make_scraper(sleeps, allowed_hosts=(), resolve=lambda _host: ["93.184.216.34"]) as scraper:
        outcome = scraper.scrape(ListingTarget(1, f"http://{name}:{server.port}/p"))
    assert outcome.error_class is ErrorClass.BLOCKED_URL, outcome.error_message
    assert "127.0.0.1" in outcome.error_message
    assert server.requests == []


# --------------------------------------------------------------------------- many targets


def test_per_domain_concurrency_is_never_exceeded(server: PageServer, sleeps: list[float]) -> None:
    server.routes["/p"] = html(PRODUCT_PAGE)
    server.hold_seconds = 0.05
    targets = [ListingTarget(i, server.base() + "/p") for i in range(10)]
    targets += [ListingTarget(100 + i, server.base("localhost") + "/p") for i in range(10)]
    with make_scraper(sleeps, allowed_hosts=["127.0.0.1", "localhost"], per_domain_concurrency=2, max_workers=8) as scraper:
        outcomes = scraper.scrape_many(targets)
    assert all(o.ok for o in outcomes), [o.error_message for o in outcomes if not o.ok]
    assert server.max_in_flight["127.0.0.1"] == 2
    assert server.max_in_flight["localhost"] == 2
    assert server.max_in_flight_total > 2  # the two hosts were fetched in parallel


def test_scrape_many_returns_one_outcome_per_input_in_order(server: PageServer, sleeps: list[float]) -> None:
    server.routes["/p"] = html(PRODUCT_PAGE)
    server.routes["/down"] = lambda _h: (500, {}, b"")
    targets = [
        ListingTarget(1, server.base() + "/p"),
        ListingTarget(2, "http://10.0.0.1/p"),
        ListingTarget(3, "not a url"),
        ListingTarget(4, server.base() + "/missing"),
        ListingTarget(5, "http://shop.invalid/p"),
        ListingTarget(6, server.base() + "/down"),
        ListingTarget(1, server.base() + "/p"),  # duplicates are kept, not merged
    ]
    with make_scraper(sleeps) as scraper:
        outcomes = scraper.scrape_many(targets)
        stats = scraper.stats
    assert [o.listing_id for o in outcomes] == [1, 2, 3, 4, 5, 6, 1]
    assert all(isinstance(o, ScrapeOutcome) for o in outcomes)
    assert [o.error_class for o in outcomes] == [
        None,
        ErrorClass.BLOCKED_URL,
        ErrorClass.INVALID_URL,
        ErrorClass.HTTP_4XX,
        ErrorClass.DNS,
        ErrorClass.HTTP_5XX,
        None,
    ]
    assert all(o.error_message for o in outcomes if not o.ok)
    assert stats.targets == 7 and stats.succeeded == 2 and stats.failed == 5
    assert stats.errors_by_class["http_5xx"] == 1
    assert stats.retries == 2  # only the 5xx target was retried
    assert scraper.scrape_many([]) == []


# --------------------------------------------------------------------------- real extractors


def _real(module: str) -> Any:
    return pytest.importorskip(module, reason=f"{module} not available yet")


def test_real_html_extractor_reads_json_ld(server: PageServer, sleeps: list[float]) -> None:
    _real("calibr_pipeline.domain.offer_extraction")
    page = """<html><head><script type="application/ld+json">
    {"@context": "https://schema.org", "@type": "Product", "name": "Widget", "sku": "W-1",
     "offers": {"@type": "Offer", "price": "19.99", "priceCurrency": "EUR",
                "availability": "https://schema.org/InStock"}}
    </script></head><body><h1>Widget</h1></body></html>"""
    server.routes["/p/widget"] = html(page)
    with make_scraper(sleeps, html_extractor=None) as scraper:
        outcome = scraper.scrape(ListingTarget(1, server.base() + "/p/widget"))
    assert outcome.ok, outcome.error_message
    assert outcome.offer.amount == Decimal("19.99") and outcome.offer.currency == "EUR"


def test_real_html_extractor_error_class(server: PageServer, sleeps: list[float]) -> None:
    _real("calibr_pipeline.domain.offer_extraction")
    server.routes["/p/none"] = html("<html><body><h1>Nothing to see</h1></body></html>")
    with make_scraper(sleeps, html_extractor=None) as scraper:
        outcome = scraper.scrape(ListingTarget(1, server.base() + "/p/none"))
    assert outcome.status == "error" and outcome.error_class is not None
    assert outcome.error_class.value.startswith(("parse_", "currency_"))


def test_real_shopify_parser_js_minor_units(server: PageServer, sleeps: list[float]) -> None:
    _real("calibr_pipeline.domain.shopify_storefront")
    payload = {
        "id": 1,
        "title": "Widget",
        "handle": "widget",
        "price": 1999,
        "compare_at_price": 2999,
        "available": True,
        "variants": [
            {"id": 41, "title": "S", "price": 1999, "compare_at_price": 2999, "available": True, "sku": "W-S"},
            {"id": 42, "title": "M", "price": 2499, "compare_at_price": None, "available": True, "sku": "W-M"},
        ],
    }
    server.routes["/products/widget.js"] = jsonify(payload)
    target = ListingTarget(1, server.base() + "/products/widget?variant=42", "shopify", currency_hint="USD")
    with make_scraper(sleeps, shopify_parser=None) as scraper:
        outcome = scraper.scrape(target)
    assert outcome.ok, outcome.error_message
    assert outcome.offer.amount == Decimal("24.99") and outcome.offer.currency == "USD"
    assert str(outcome.offer.variant_id) == "42"


def test_real_shopify_parser_json_fallback_keeps_decimals_exact(server: PageServer, sleeps: list[float]) -> None:
    _real("calibr_pipeline.domain.shopify_storefront")
    payload = (
        '{"product": {"id": 1, "title": "Widget", "variants": '
        '[{"id": 41, "sku": "W-S", "price": "19.99", "compare_at_price": "24.99"}]}}'
    )
    server.routes["/products/widget.json"] = lambda _h: (200, {"Content-Type": "application/json"}, payload.encode())
    target = ListingTarget(1, server.base() + "/products/widget", "shopify", currency_hint="EUR")
    with make_scraper(sleeps, shopify_parser=None) as scraper:
        outcome = scraper.scrape(target)
    assert outcome.ok, outcome.error_message
    assert outcome.url.endswith("/products/widget.json") and outcome.attempts == 2
    assert outcome.offer.amount == Decimal("19.99") and outcome.offer.regular_amount == Decimal("24.99")


def test_real_shopify_parser_without_currency(server: PageServer, sleeps: list[float]) -> None:
    _real("calibr_pipeline.domain.shopify_storefront")
    server.routes["/products/widget.js"] = jsonify(JS_PAYLOAD)
    with make_scraper(sleeps, shopify_parser=None) as scraper:
        outcome = scraper.scrape(ListingTarget(1, server.base() + "/products/widget", "shopify"))
    assert outcome.error_class is ErrorClass.CURRENCY_UNKNOWN, outcome.error_message

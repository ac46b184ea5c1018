"""The ``calibr`` command line, called in-process through ``main([...])``.

Every warehouse command runs against both backends (``warehouse_url``/``seeded`` are
parametrized over SQLite and the local Postgres). User errors must be exactly one
stderr line starting with ``calibr: error:``, exit code 2, no traceback, and must
leave the warehouse untouched.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import func, select

from calibr_pipeline.cli import main
from calibr_pipeline.domain import price_parsing
from calibr_pipeline.warehouse.engine import alembic_config, current_revision, get_engine, session_scope
from calibr_pipeline.warehouse.models import (
    Competitor,
    CompetitorListing,
    EventLog,
    FxRate,
    OutboxEvent,
    Project,
    Shop,
    Tenant,
    Variant,
)
from calibr_pipeline_tests.extraction_report import PAGES, reference_entries

FIXTURES = PAGES
MANIFEST = reference_entries(FIXTURES)
ALLOWED_ENV = "CALIBR_SANDBOX_ALLOWED_HOSTS"


# --------------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    """No test may depend on the developer's environment."""
    for name in (ALLOWED_ENV, "CALIBR_DEBUG", "CALIBR_WAREHOUSE_URL"):
        monkeypatch.delenv(name, raising=False)


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def cli(capsys, url: str, *args: str) -> tuple[int, str, str]:
    return run(capsys, "--warehouse-url", url, *args)


def assert_user_error(code: int, out: str, err: str, *fragments: str) -> str:
    """Exit 2, nothing on stdout, one ``calibr: error:`` line naming ``fragments``."""
    assert code == 2, (code, out, err)
    assert out == ""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("calibr: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def count(url: str, model, *where) -> int:
    with session_scope(url) as session:
        return session.scalar(select(func.count()).select_from(model).where(*where))


def is_postgres(url: str) -> bool:
    return url.startswith("postgresql")


# --------------------------------------------------------------------------- competitors add

PUBLIC_DNS = {"shop.example.com": "93.184.216.34", "other.example.org": "93.184.216.35", "sneaky.example.com": "10.1.2.3"}


@pytest.fixture
def fake_dns(monkeypatch):
    """Hermetic DNS for the URL policy: known names only, the rest do not resolve."""

    def getaddrinfo(host, port, *args, **kwargs):
        address = PUBLIC_DNS.get(str(host).lower())
        if address is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port or 0))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def add_competitor(capsys, url: str, *extra: str, project="acme-store", sku="A", page="https://shop.example.com/products/tent"):
    return cli(capsys, url, "competitors", "add", "--project", project, "--sku", sku, "--url", page, *extra)


def assert_no_competitor_rows(url: str) -> None:
    assert count(url, CompetitorListing) == 0
    assert count(url, Competitor) == 0
    assert count(url, OutboxEvent) == 0
    assert count(url, EventLog) == 0


def test_competitors_add_stores_listing_and_one_outbox_event(seeded, capsys, fake_dns):
    url, tenant_id = seeded
    code, out, err = add_competitor(capsys, url, "--name", "Shop Co", "--currency", "eur", "--actor", "alice")
    assert (code, err) == (0, "")
    match = re.fullmatch(r"listing (\d+) added for SKU A; event (\S+) queued \(competitor\.added\)\n", out)
    assert match, out
    listing_id, event_id = int(match[1]), match[2]

    with session_scope(url) as session:
        listing = session.get(CompetitorListing, listing_id)
        assert listing is not None
        assert listing.url == "https://shop.example.com/products/tent"
        assert listing.page_kind == "shopify"  # /products/<handle> guessed as Shopify
        assert listing.match_type == "exact"
        assert session.get(Variant, listing.variant_id).sku == "A"
        competitor = session.get(Competitor, listing.competitor_id)
        assert (competitor.name, competitor.domain, competitor.currency) == ("Shop Co", "shop.example.com", "EUR")

        events = session.scalars(select(OutboxEvent)).all()
        assert len(events) == 1
        event = events[0]
        assert (event.id, event.event_type, event.tenant_id) == (event_id, "competitor.added", tenant_id)
        assert event.dispatched_at is None
        assert event.payload["listing_id"] == listing_id
        assert event.payload["sku"] == "A"
        assert event.payload["project"] == "acme-store"
        assert event.payload["url"] == "https://shop.example.com/products/tent"
        log = session.scalars(select(EventLog)).all()
        assert [(e.event_type, e.correlation_id, e.actor) for e in log] == [("competitor.added", event_id, "alice")]


def test_competitors_add_same_url_again_queues_nothing(seeded, capsys, fake_dns):
    url, _ = seeded
    code, out, _ = add_competitor(capsys, url)
    assert code == 0
    listing_id = int(re.match(r"listing (\d+) added", out)[1])

    # The same page spelled differently (case, default port, fragment) is the same listing.
    for spelling in ("https://shop.example.com/products/tent", "HTTPS://Shop.Example.COM:443/products/tent#reviews"):
        code, out, err = add_competitor(capsys, url, page=spelling)
        assert (code, err) == (0, "")
        assert out == f"listing {listing_id} already exists for SKU A; nothing queued\n"
    assert count(url, CompetitorListing) == 1
    assert count(url, OutboxEvent) == 1

    # The same URL for another SKU is another listing (same competitor) and another event.
    code, out, _ = add_competitor(capsys, url, sku="B")
    assert code == 0 and "added for SKU B" in out
    assert count(url, CompetitorListing) == 2
    assert count(url, Competitor) == 1
    assert count(url, OutboxEvent) == 2

    code, out, _ = cli(capsys, url, "competitors", "list", "--project", "acme-store")
    assert code == 0
    rows = [line.split("\t") for line in out.splitlines()]
    assert [(sku, kind, page) for _, sku, _, kind, page in rows] == [
        ("A", "shopify", "https://shop.example.com/products/tent"),
        ("B", "shopify", "https://shop.example.com/products/tent"),
    ]


INVALID_URLS = [
    ("ftp://shop.example.com/tent", "http:// or https://"),
    ("http:///products/tent", "no host"),
    ("javascript:alert(1)", "http:// or https://"),
    ("http://user:pass@shop.example.com/tent", "user name or password"),
    ("https://shop.example.com/" + "a" * 3000, "longer than"),
    # Within the policy's 2048 characters but longer than the 2000-character column.
    ("https://shop.example.com/" + "b" * 2010, "longer than 2000"),
]


def check_refuses_invalid_urls(url, capsys):
    for page, fragment in INVALID_URLS:
        code, out, err = add_competitor(capsys, url, page=page)
        line = assert_user_error(code, out, err, "invalid_url", fragment)
        assert len(line) < 400, "the message must not echo a huge URL"
    assert_no_competitor_rows(url)


BLOCKED_URLS = [
    ("http://127.0.0.1/x", "127.0.0.1", "loopback"),
    ("http://10.0.0.5/x", "10.0.0.5", "private network"),
    ("http://169.254.169.254/latest/meta-data", "169.254.169.254", "metadata"),
    ("http://[::1]/", "[::1]", "loopback"),
    ("http://localhost/", "localhost", "this machine"),
    ("http://2130706433/y", "127.0.0.1", "loopback"),  # 127.0.0.1 written as one number
    ("https://sneaky.example.com/p", "sneaky.example.com", "resolves to a private network address"),
]


def check_refuses_internal_addresses(url, capsys):
    for page, _, fragment in BLOCKED_URLS:
        code, out, err = add_competitor(capsys, url, page=page)
        assert_user_error(code, out, err, "blocked_url", fragment)
    assert_no_competitor_rows(url)


def test_competitors_add_sandbox_allow_list_admits_listed_hosts_only(seeded, capsys, fake_dns, monkeypatch):
    url, _ = seeded
    monkeypatch.setenv(ALLOWED_ENV, ",".join(host for _, host, _ in BLOCKED_URLS) + ",127.0.0.2:8080")
    for i, (page, _, _) in enumerate(BLOCKED_URLS):
        code, out, err = add_competitor(capsys, url, page=page)
        assert (code, err) == (0, ""), (page, err)
        assert "added for SKU A" in out
        assert count(url, CompetitorListing) == i + 1

    # host:port admits that port only; an unlisted private host is still refused.
    code, out, err = add_competitor(capsys, url, page="http://127.0.0.2:8080/p")
    assert code == 0, err
    code, out, err = add_competitor(capsys, url, page="http://127.0.0.2:9090/p")
    assert_user_error(code, out, err, "blocked_url")
    code, out, err = add_competitor(capsys, url, page="http://10.0.0.6/x")
    assert_user_error(code, out, err, "blocked_url", "10.0.0.6")
    # The allow-list skips address rules, never syntax rules.
    code, out, err = add_competitor(capsys, url, page="ftp://127.0.0.1/x")
    assert_user_error(code, out, err, "invalid_url")
    assert count(url, CompetitorListing) == len(BLOCKED_URLS) + 1
    assert count(url, OutboxEvent) == len(BLOCKED_URLS) + 1


def check_unknown_project_sku_or_currency(url, capsys):
    code, out, err = add_competitor(capsys, url, project="no-such-project")
    assert_user_error(code, out, err, "unknown project 'no-such-project'", "acme-store")
    code, out, err = add_competitor(capsys, url, sku="ZZZ-9")
    assert_user_error(code, out, err, "unknown SKU 'ZZZ-9'", "acme-store")
    for bad in ("EURO", "E1R", "xxy"):
        code, out, err = add_competitor(capsys, url, "--currency", bad)
        assert_user_error(code, out, err, "--currency", repr(bad))
    assert_no_competitor_rows(url)


def test_competitors_add_refusals_write_nothing(seeded, capsys, fake_dns):
    url, _ = seeded
    check_refuses_invalid_urls(url, capsys)
    check_refuses_internal_addresses(url, capsys)
    check_unknown_project_sku_or_currency(url, capsys)


# --------------------------------------------------------------------------- parse-price


@pytest.mark.parametrize(
    "text, hints, amount, currency",
    [
        ("1.299,00 €", [], "1299.00", "EUR"),
        ("$1,234.56", ["--currency-hint", "CAD"], "1234.56", "CAD"),
        ("$5.00", ["--locale", "en-CA"], "5.00", "CAD"),
        ("¥1,000", ["--currency-hint", "JPY"], "1000", "JPY"),
        ("KWD 1.250", [], "1.250", "KWD"),
    ],
)
def test_parse_price_prints_exact_amount_and_iso_currency(capsys, text, hints, amount, currency):
    code, out, err = run(capsys, "parse-price", text, *hints)
    assert (code, err) == (0, "")
    data = json.loads(out)
    assert data == {"amount": amount, "currency": currency, "raw": text}


@pytest.mark.parametrize(
    "text, hints, error_class",
    [
        ("garbage", [], "parse_no_price"),
        ("0.00", ["--currency-hint", "USD"], "parse_zero_price"),
        ("0.00", [], "parse_zero_price"),
        ("1.234", [], "currency_unknown"),
        ("-5.00 EUR", [], "parse_no_price"),
    ],
)
def test_parse_price_errors_name_the_error_class(capsys, text, hints, error_class):
    code, out, err = run(capsys, "parse-price", text, *hints)
    assert_user_error(code, out, err, f"calibr: error: {error_class}: ")


# --------------------------------------------------------------------------- extract-offer (files)


@pytest.mark.parametrize("page", MANIFEST, ids=[p["file"] for p in MANIFEST])
def test_extract_offer_file_matches_manifest(capsys, page):
    code, out, err = run(capsys, "extract-offer", str(FIXTURES / "pages" / page["file"]))
    assert (code, err) == (0, "")
    data = json.loads(out)
    assert data["currency"] == page["expected_currency"]
    assert data["availability"] == page["expected_availability"]
    if page["expected_price"] is not None:
        assert Decimal(data["amount"]) == Decimal(page["expected_price"])
    else:  # AggregateOffer without one right answer: the range must be stated
        assert (Decimal(data["low_price"]), Decimal(data["high_price"])) == (Decimal("5.29"), Decimal("9.56"))
        assert Decimal(data["amount"]) in (Decimal("5.29"), Decimal("9.56"))
        assert data["offer_count"] == 2


def test_extract_offer_missing_file_or_directory(capsys, tmp_path):
    missing = tmp_path / "nope.html"
    code, out, err = run(capsys, "extract-offer", str(missing))
    assert_user_error(code, out, err, repr(str(missing)), "neither an http(s) URL nor a readable file")
    code, out, err = run(capsys, "extract-offer", str(tmp_path))
    assert_user_error(code, out, err, "readable file")


def test_extract_offer_file_without_price_names_error_class(capsys, tmp_path):
    page = tmp_path / "empty.html"
    page.write_text("<html><body><h1>Nothing for sale</h1></body></html>")
    code, out, err = run(capsys, "extract-offer", str(page))
    assert_user_error(code, out, err, "parse_no_price")


def test_extract_offer_rejects_invalid_currency_hint(capsys):
    page = FIXTURES / "pages" / MANIFEST[0]["file"]
    code, out, err = run(capsys, "extract-offer", str(page), "--currency-hint", "dollars")
    assert_user_error(code, out, err, "--currency-hint", "'dollars'")


# --------------------------------------------------------------------------- extract-offer (URLs)

PRODUCT_PAGE = b"""<!doctype html><html><head><title>Trail Tent</title>
<script type="application/ld+json">
{"@context": "https://schema.org", "@type": "Product", "name": "Trail Tent 2P", "sku": "TT-2",
 "offers": {"@type": "Offer", "price": "249.90", "priceCurrency": "EUR",
            "availability": "https://schema.org/InStock"}}
</script></head><body><p>Only 249,90 EUR</p></body></html>"""

SHOPIFY_JS = json.dumps(
    {
        "id": 7001,
        "title": "Widget",
        "handle": "widget",
        "variants": [
            {"id": 11, "title": "Small", "sku": "W-S", "price": 1999, "compare_at_price": 2499, "available": True},
            {"id": 12, "title": "Large", "sku": "W-L", "price": 2999, "compare_at_price": None, "available": False},
        ],
    }
).encode()


class _Server:
    def __init__(self):
        self.routes: dict[str, tuple[int, str, bytes]] = {
            "/tent": (200, "text/html; charset=utf-8", PRODUCT_PAGE),
            "/products/widget.js": (200, "application/javascript; charset=utf-8", SHOPIFY_JS),
            "/broken": (500, "text/plain", b"internal error"),
            "/gone": (404, "text/plain", b"not here"),
        }
        self.hits: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.hits.append(self.path)
                status, content_type, body = server.routes.get(self.path, (404, "text/plain", b"no route"))
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def storefront(monkeypatch):
    server = _Server()
    monkeypatch.setenv(ALLOWED_ENV, f"127.0.0.1:{server.port}")
    yield server
    server.close()


def test_extract_offer_url_json_ld_page(capsys, storefront):
    code, out, err = run(capsys, "extract-offer", f"{storefront.base}/tent")
    assert (code, err) == (0, "")
    data = json.loads(out)
    assert (data["amount"], data["currency"], data["availability"]) == ("249.90", "EUR", "InStock")
    assert (data["source"], data["sku"], data["title"]) == ("json-ld", "TT-2", "Trail Tent 2P")
    assert data["fetched_url"] == f"{storefront.base}/tent"
    assert storefront.hits == ["/tent"]


def test_extract_offer_url_shopify_js_endpoint(capsys, storefront):
    # A product page URL is fetched through its .js endpoint (prices in minor units).
    code, out, err = run(capsys, "extract-offer", f"{storefront.base}/products/widget?variant=12", "--currency-hint", "usd")
    assert (code, err) == (0, "")
    data = json.loads(out)
    assert (data["amount"], data["currency"], data["availability"]) == ("29.99", "USD", "OutOfStock")
    assert (data["source"], data["variant_id"], data["sku"]) == ("shopify_js", "12", "W-L")
    assert storefront.hits == ["/products/widget.js"]

    # The .js URL itself, no variant: the cheapest variant with the price range.
    code, out, err = run(capsys, "extract-offer", f"{storefront.base}/products/widget.js", "--currency-hint", "USD")
    assert (code, err) == (0, "")
    data = json.loads(out)
    assert (data["amount"], data["currency"], data["regular_price"], data["on_sale"]) == ("19.99", "USD", "24.99", True)
    assert (data["low_price"], data["high_price"]) == ("19.99", "29.99")


def test_extract_offer_url_shopify_without_currency(capsys, storefront):
    code, out, err = run(capsys, "extract-offer", f"{storefront.base}/products/widget")
    assert_user_error(code, out, err, "currency_unknown", "/products/widget.js")


def test_extract_offer_url_http_5xx_is_retried_then_reported(capsys, storefront):
    t0 = time.monotonic()
    code, out, err = run(
        capsys, "extract-offer", f"{storefront.base}/broken", "--max-attempts", "2", "--retry-base-seconds", "0"
    )
    assert time.monotonic() - t0 < 5
    assert_user_error(code, out, err, "http_5xx", "HTTP 500", "2 attempt(s)")
    assert storefront.hits == ["/broken", "/broken"]


def test_extract_offer_url_http_4xx_is_not_retried(capsys, storefront):
    code, out, err = run(capsys, "extract-offer", f"{storefront.base}/gone", "--max-attempts", "3", "--retry-base-seconds", "0")
    assert_user_error(code, out, err, "http_4xx", "1 attempt(s)")
    assert storefront.hits == ["/gone"]


def test_extract_offer_url_loopback_refused_without_allow_list(capsys, storefront, monkeypatch):
    monkeypatch.delenv(ALLOWED_ENV)
    code, out, err = run(capsys, "extract-offer", f"{storefront.base}/tent")
    assert_user_error(code, out, err, "blocked_url", "0 attempt(s)")
    assert storefront.hits == []  # refused before any request


def test_extract_offer_retry_options_are_validated(capsys):
    for option, value in (("--max-attempts", "0"), ("--max-attempts", "x"), ("--retry-base-seconds", "-1"), ("--retry-base-seconds", "inf")):
        code, out, err = run(capsys, "extract-offer", "http://127.0.0.1/x", option, value)
        assert code == 2, (option, value)
        assert out == ""
        assert f"argument {option}" in err and "Traceback" not in err


# --------------------------------------------------------------------------- tenants, projects


def check_tenants_add(warehouse_url, capsys):
    code, out, err = cli(capsys, warehouse_url, "tenants", "add", "globex", "--name", "Globex Corp")
    assert (code, err) == (0, "")
    tenant_id = int(re.fullmatch(r"tenant globex \(id (\d+)\)\n", out)[1])
    code, out, _ = cli(capsys, warehouse_url, "tenants", "add", "globex")
    assert (code, out) == (0, f"tenant globex (id {tenant_id})\n")
    with session_scope(warehouse_url) as session:
        assert [(t.id, t.slug, t.name) for t in session.scalars(select(Tenant))] == [(tenant_id, "globex", "Globex Corp")]

    for bad in ("Bad Slug!", "UPPER", "_leading", "a" * 64):
        code, out, err = cli(capsys, warehouse_url, "tenants", "add", bad)
        assert_user_error(code, out, err, "tenant slug", repr(bad))
    assert count(warehouse_url, Tenant) == 1


def check_projects_add(warehouse_url, capsys):
    assert cli(capsys, warehouse_url, "tenants", "add", "globex")[0] == 0
    assert cli(capsys, warehouse_url, "tenants", "add", "initech")[0] == 0

    code, out, err = cli(capsys, warehouse_url, "projects", "add", "globex-eu", "--tenant", "globex", "--currency", "eur")
    assert (code, err) == (0, "")
    assert re.fullmatch(r"project globex-eu \(id \d+, tenant globex, EUR\)\n", out), out
    with session_scope(warehouse_url) as session:
        project = session.scalar(select(Project))
        assert (project.slug, project.currency, project.name) == ("globex-eu", "EUR", "globex-eu")

    code, out, err = cli(capsys, warehouse_url, "projects", "add", "Bad Slug!", "--tenant", "globex", "--currency", "USD")
    assert_user_error(code, out, err, "project slug 'Bad Slug!' is invalid")
    code, out, err = cli(capsys, warehouse_url, "projects", "add", "p2", "--tenant", "umbrella", "--currency", "USD")
    assert_user_error(code, out, err, "unknown tenant 'umbrella'", "globex")
    code, out, err = cli(capsys, warehouse_url, "projects", "add", "p2", "--tenant", "globex", "--currency", "usdx")
    assert_user_error(code, out, err, "--currency 'usdx'", "ISO 4217")
    code, out, err = cli(capsys, warehouse_url, "projects", "add", "globex-eu", "--tenant", "initech", "--currency", "EUR")
    assert_user_error(code, out, err, "'globex-eu' already belongs to another tenant")
    assert count(warehouse_url, Project) == 1


def test_tenants_and_projects_add(warehouse_url, capsys):
    check_tenants_add(warehouse_url, capsys)
    check_projects_add(warehouse_url, capsys)


# --------------------------------------------------------------------------- shops


def test_shops_add_csv(seeded, capsys, tmp_path):
    url, _ = seeded
    catalog = tmp_path / "catalog.csv"
    catalog.write_text("sku,price\nA,10.00\n")
    code, out, err = cli(capsys, url, "shops", "add", "--project", "acme-store", "--name", "outlet", "--platform", "csv",
                         "--currency", "usd", "--csv", str(catalog))
    assert (code, err) == (0, "")
    assert re.fullmatch(r"shop outlet \(id \d+, csv\) in project acme-store\n", out), out
    with session_scope(url) as session:
        shop = session.scalar(select(Shop).where(Shop.name == "outlet"))
        assert (shop.platform, shop.currency, shop.catalog_csv_path) == ("csv", "USD", str(catalog.resolve()))

    missing = tmp_path / "missing.csv"
    code, out, err = cli(capsys, url, "shops", "add", "--project", "acme-store", "--name", "other", "--platform", "csv",
                         "--currency", "USD", "--csv", str(missing))
    assert_user_error(code, out, err, "--csv", str(missing))
    code, out, err = cli(capsys, url, "shops", "add", "--project", "acme-store", "--name", "other", "--platform", "csv",
                         "--currency", "USD")
    assert_user_error(code, out, err, "--csv must name an existing catalog CSV file")
    code, out, err = cli(capsys, url, "shops", "add", "--project", "nope", "--name", "other", "--platform", "csv",
                         "--currency", "USD", "--csv", str(catalog))
    assert_user_error(code, out, err, "unknown project 'nope'")
    assert count(url, Shop) == 2  # the seeded "main" shop and "outlet"


SECRET = "shpat_0123456789abcdef_SECRET"
ENDPOINT = "https://acme.myshopify.com/admin/api/2025-01/graphql.json"


def shopify_shop(capsys, url, *extra, name="flagship", project="acme-store"):
    return cli(capsys, url, "shops", "add", "--project", project, "--name", name, "--platform", "shopify",
               "--currency", "USD", "--endpoint", ENDPOINT, *extra)


def test_shops_add_shopify_reads_token_from_env_and_never_prints_it(seeded, capsys, monkeypatch):
    url, _ = seeded
    monkeypatch.delenv("ACME_SHOPIFY_TOKEN", raising=False)
    code, out, err = shopify_shop(capsys, url, "--token-env", "ACME_SHOPIFY_TOKEN")
    assert_user_error(code, out, err, "--token-env", "'ACME_SHOPIFY_TOKEN'")
    code, out, err = shopify_shop(capsys, url)
    assert_user_error(code, out, err, "--token-env")
    code, out, err = cli(capsys, url, "shops", "add", "--project", "acme-store", "--name", "x", "--platform", "shopify",
                         "--currency", "USD", "--token-env", "ACME_SHOPIFY_TOKEN")
    assert_user_error(code, out, err, "--endpoint is required")
    assert count(url, Shop) == 1

    monkeypatch.setenv("ACME_SHOPIFY_TOKEN", SECRET)
    code, out, err = shopify_shop(capsys, url, "--token-env", "ACME_SHOPIFY_TOKEN", "--preset", "plus")
    assert (code, err) == (0, "")
    assert re.fullmatch(r"shop flagship \(id \d+, shopify\) in project acme-store\n", out), out
    assert SECRET not in out
    with session_scope(url) as session:
        shop = session.scalar(select(Shop).where(Shop.name == "flagship"))
        assert (shop.platform, shop.admin_endpoint, shop.api_version, shop.rate_limit_preset) == (
            "shopify", ENDPOINT, "2025-01", "plus"
        )
        assert shop.access_token == SECRET

    code, out, err = shopify_shop(capsys, url, "--token-env", "ACME_SHOPIFY_TOKEN", project="nope")
    assert_user_error(code, out, err, "unknown project 'nope'")
    assert SECRET not in err


def check_database_error_does_not_leak_token(url, capsys, monkeypatch):
    """A failing INSERT must not print its SQL parameters, which include the token."""
    monkeypatch.setenv("ACME_SHOPIFY_TOKEN", SECRET)
    code, out, err = shopify_shop(capsys, url, "--token-env", "ACME_SHOPIFY_TOKEN", name="n" * 300)
    assert SECRET not in out + err
    if is_postgres(url):  # name is VARCHAR(200): Postgres refuses, SQLite does not enforce lengths
        assert code == 1 and out == ""
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("calibr: unexpected error: "), err
        assert "value too long" in lines[0] and "[parameters" not in lines[0]
        assert count(url, Shop) == 1
    else:
        assert code == 0


def check_shops_add_rejects_invalid_currency(url, capsys, tmp_path):
    catalog = tmp_path / "c.csv"
    catalog.write_text("sku\n")
    code, out, err = cli(capsys, url, "shops", "add", "--project", "acme-store", "--name", "x", "--platform", "csv",
                         "--currency", "dollars", "--csv", str(catalog))
    assert_user_error(code, out, err, "--currency 'dollars'")
    assert count(url, Shop) == 1


def test_shops_add_errors(seeded, capsys, tmp_path, monkeypatch):
    url, _ = seeded
    check_shops_add_rejects_invalid_currency(url, capsys, tmp_path)
    check_database_error_does_not_leak_token(url, capsys, monkeypatch)


# --------------------------------------------------------------------------- fx


def test_fx_set(warehouse_url, capsys):
    code, out, err = cli(capsys, warehouse_url, "fx", "set", "eur", "usd", "1.0845", "--date", "2026-11-01")
    assert (code, err, out) == (0, "", "1 EUR = 1.0845 USD from 2026-11-01\n")
    code, out, _ = cli(capsys, warehouse_url, "fx", "set", "EUR", "USD", "1.09", "--date", "2026-11-01", "--source", "ecb")
    assert code == 0
    with session_scope(warehouse_url) as session:
        rows = session.scalars(select(FxRate)).all()
        assert [(r.base_currency, r.quote_currency, r.rate, r.source, r.rate_date.isoformat()) for r in rows] == [
            ("EUR", "USD", Decimal("1.09"), "ecb", "2026-11-01")
        ]

    bad_rates = {
        "-1.2": "positive",
        "0": "positive",
        "abc": "not a decimal amount",
        "nan": "finite",
        "1e400": "between",  # Postgres NUMERIC(20, 6) overflow
        "0.0000001": "between",  # would round to a zero rate
    }
    for rate, fragment in bad_rates.items():
        code, out, err = cli(capsys, warehouse_url, "fx", "set", "GBP", "USD", rate, "--date", "2026-11-02")
        assert_user_error(code, out, err, fragment)
    for base, quote in (("EURO", "USD"), ("EUR", "US")):
        code, out, err = cli(capsys, warehouse_url, "fx", "set", base, quote, "1.1")
        assert_user_error(code, out, err, "ISO 4217")
    code, out, err = cli(capsys, warehouse_url, "fx", "set", "usd", "USD", "1")
    assert_user_error(code, out, err, "both USD")
    code, out, err = cli(capsys, warehouse_url, "fx", "set", "GBP", "USD", "1.2", "--date", "2026-13-01")
    assert code == 2 and out == "" and "not a date" in err
    assert count(warehouse_url, FxRate) == 1


# --------------------------------------------------------------------------- db upgrade


def test_db_upgrade_on_a_new_warehouse_prints_head_revision(capsys, tmp_path):
    from alembic.script import ScriptDirectory

    url = f"sqlite:///{tmp_path / 'new.db'}"
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    try:
        assert current_revision(url) is None
        code, out, err = cli(capsys, url, "db", "upgrade")
        assert (code, err) == (0, "")
        assert out == f"warehouse at revision {head}\n"
        assert current_revision(url) == head
    finally:
        get_engine(url).dispose()


def test_db_upgrade_is_idempotent(warehouse_url, capsys):
    revision = current_revision(warehouse_url)
    assert revision
    for _ in range(2):
        code, out, err = cli(capsys, warehouse_url, "db", "upgrade")
        assert (code, out, err) == (0, f"warehouse at revision {revision}\n", "")


def test_warehouse_url_defaults_to_environment(capsys, tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'from-env.db'}"
    monkeypatch.setenv("CALIBR_WAREHOUSE_URL", url)
    try:
        code, out, _ = run(capsys, "tenants", "add", "envco")
        assert code == 0 and out.startswith("tenant envco")
        assert count(url, Tenant, Tenant.slug == "envco") == 1
    finally:
        get_engine(url).dispose()


# --------------------------------------------------------------------------- unexpected errors and usage


def _explode(*args, **kwargs):
    raise RuntimeError("boom\nsecond line")


def test_unexpected_error_is_one_line_without_traceback(capsys, monkeypatch):
    monkeypatch.setattr(price_parsing, "parse_price", _explode)
    code, out, err = run(capsys, "parse-price", "$1")
    assert code == 1 and out == ""
    assert "Traceback" not in err
    assert err.splitlines() == ["calibr: unexpected error: RuntimeError: boom second line (set CALIBR_DEBUG=1 for details)"]

    monkeypatch.setenv("CALIBR_DEBUG", "0")  # "0" means off
    assert run(capsys, "parse-price", "$1")[0] == 1


def test_calibr_debug_lets_the_exception_through(capsys, monkeypatch):
    monkeypatch.setattr(price_parsing, "parse_price", _explode)
    monkeypatch.setenv("CALIBR_DEBUG", "1")
    with pytest.raises(RuntimeError, match="boom"):
        main(["parse-price", "$1"])


def test_keyboard_interrupt_exits_130(capsys, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(price_parsing, "parse_price", interrupt)
    assert run(capsys, "parse-price", "$1")[0] == 130


def test_usage_errors_return_instead_of_exiting(capsys):
    code, out, err = run(capsys)
    assert code == 2 and "required: command" in err
    code, out, err = run(capsys, "competitors", "add", "--project", "p")
    assert code == 2 and "--sku" in err and "Traceback" not in err
    code, out, _ = run(capsys, "--help")
    assert code == 0 and "usage: calibr" in out

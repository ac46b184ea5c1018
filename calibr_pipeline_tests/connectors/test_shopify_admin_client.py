"""ShopifyAdminClient against the sandbox Admin API over real HTTP (nothing mocked)."""

from __future__ import annotations

import socket
import time

import pytest

from calibr_pipeline.connectors.shopify_admin import (
    CostBucket,
    ShopifyAdminClient,
    ShopifyAdminError,
    ThrottleStatus,
    fetch_catalog,
)
from calibr_pipeline.domain.errors import CalibrError, ErrorClass
from calibr_pipeline.sandbox.demo_catalog import generate_demo_catalog
from calibr_pipeline.sandbox.shopify_admin import BucketPreset, ShopifyAdminSandbox

pytestmark = pytest.mark.integration

CATALOG_300 = generate_demo_catalog("big-shop", 300, seed=7, currency="USD")
SMALL = generate_demo_catalog("small", 12, seed=3, currency="EUR")
ADMIN_PATH = "/shops/*/admin/api/*/graphql.json"


class RecordingSleep:
    """Records waits instead of sleeping, so backoff tests take no time."""

    def __init__(self):
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture(scope="module")
def admin():
    with ShopifyAdminSandbox() as server:
        # Plus-sized bucket: these tests exercise transport retries, not cost waits.
        server.add_shop("small", SMALL, preset="plus")
        yield server


@pytest.fixture(autouse=True)
def no_faults(admin):
    admin.server.control.faults.clear()
    yield
    admin.server.control.faults.clear()


def client_for(admin, shop="small", **kw):
    kw.setdefault("timeout", (1.0, 2.0))
    return ShopifyAdminClient(admin.shop_url(shop), admin.shop(shop).access_token, **kw)


def test_reads_a_300_variant_catalog_through_a_tiny_bucket_without_being_throttled():
    # 80-point bucket restoring 200/s: each catalog page (57 points as the shop prices
    # it, after a first page reserved at the static 827) has to wait for the refill,
    # fast enough to keep the test short.
    tiny = BucketPreset("tiny", 80.0, 200.0)
    with ShopifyAdminSandbox() as server:
        shop = server.add_shop("big-shop", CATALOG_300, preset=tiny)
        with ShopifyAdminClient(server.shop_url("big-shop"), shop.access_token) as client:
            started = time.monotonic()
            currency, rows = fetch_catalog(client)
            elapsed = time.monotonic() - started
    assert currency == "USD"
    assert rows == CATALOG_300  # exact: ids, titles, Decimal prices, compare-at, costs
    assert shop.stats.throttled == 0 and client.stats.throttled == 0
    assert client.stats.bucket_waits > 0  # the bucket was the constraint, and was respected
    assert client.stats.requests == shop.stats.requests
    assert client.stats.actual_cost == shop.stats.points_spent
    assert elapsed < 5


def test_variants_beyond_the_first_page_are_fetched_per_product(admin):
    with client_for(admin) as client:
        currency, rows = fetch_catalog(client, products_page_size=5, variants_page_size=1)
    assert currency == "EUR"
    assert rows == SMALL
    multi = sum(1 for pid in {r.product_external_id for r in SMALL} if sum(r.product_external_id == pid for r in SMALL) > 1)
    products = len({r.product_external_id for r in SMALL})
    # shop + product pages + one extra variants page per multi-variant product
    assert client.stats.requests == 1 + -(-products // 5) + multi


def test_throttled_by_another_consumer_waits_for_the_deficit_and_retries():
    slow = BucketPreset("slow", 1000.0, 500.0)
    with ShopifyAdminSandbox() as server:
        shop = server.add_shop("shared", SMALL, preset=slow)
        sleep = RecordingSleep()
        client = ShopifyAdminClient(server.shop_url("shared"), shop.access_token, sleep=lambda s: (sleep(s), time.sleep(s)))
        client.execute("ShopCurrency")  # the client now believes the bucket is full
        shop.bucket.drain(to=0)  # ...but another app spends it all
        data = client.execute("CatalogProducts", {"first": 10, "variantsFirst": 5})  # the shop charges 38
    assert len(data["products"]["nodes"]) == min(10, len({r.product_external_id for r in SMALL}))
    assert client.stats.throttled == 1 and shop.stats.throttled == 1
    # waited for (requested − available) / restoreRate: 38 points (less the few restored
    # since the drain) / 500 per s, plus < 28 ms of jitter; once
    assert len(sleep.waits) == 1 and 0.066 <= sleep.waits[0] < 0.076 + 0.028


def test_retries_through_5xx(admin):
    admin.server.control.faults.add(shop="small", path=ADMIN_PATH, fail_next=2, fail_mode="5xx", error_status=502)
    sleep = RecordingSleep()
    with client_for(admin, sleep=sleep) as client:
        assert client.execute("ShopCurrency")["shop"]["currencyCode"] == "EUR"
    assert client.stats.requests == 3 and client.stats.retries == 2
    assert len(sleep.waits) == 2 and all(0 <= w <= 30 for w in sleep.waits)


def test_429_retry_after_is_honoured(admin):
    admin.server.control.faults.add(shop="small", path=ADMIN_PATH, fail_next=2, fail_mode="429", retry_after="1.5")
    sleep = RecordingSleep()
    with client_for(admin, sleep=sleep) as client:
        client.execute("ShopCurrency")
    assert sleep.waits == [1.5, 1.5]


def test_timeouts_and_truncated_bodies_are_retried(admin):
    faults = admin.server.control.faults
    faults.add(shop="small", path=ADMIN_PATH, fail_next=1, fail_mode="malformed")
    faults.add(shop="small", path=ADMIN_PATH, fail_next=1, fail_mode="timeout", timeout_delay=1.0)
    sleep = RecordingSleep()
    with client_for(admin, sleep=sleep, timeout=(1.0, 0.25)) as client:
        assert client.execute("ShopCurrency")["shop"]["currencyCode"] == "EUR"
    assert client.stats.retries == 2
    assert faults.faults("timeout", shop="small") == 1 and faults.faults("malformed", shop="small") == 1


def test_gives_up_after_bounded_attempts_with_an_error_class(admin):
    admin.server.control.faults.add(shop="small", path=ADMIN_PATH, fail_next=10, fail_mode="5xx")
    with client_for(admin, sleep=RecordingSleep(), max_attempts=3) as client, pytest.raises(ShopifyAdminError) as caught:
        client.execute("ShopCurrency")
    assert isinstance(caught.value, CalibrError)
    assert caught.value.error_class is ErrorClass.HTTP_5XX and caught.value.status == 503
    assert client.stats.requests == 3


def test_an_overlong_retry_after_is_not_slept_through(admin):
    admin.server.control.faults.add(shop="small", path=ADMIN_PATH, fail_next=1, fail_mode="429", retry_after="3600")
    sleep = RecordingSleep()
    with client_for(admin, sleep=sleep) as client, pytest.raises(ShopifyAdminError) as caught:
        client.execute("ShopCurrency")
    assert caught.value.error_class is ErrorClass.RATE_LIMITED
    assert sleep.waits == []


def test_connection_refused_is_a_connection_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket is closed
    sleep = RecordingSleep()
    client = ShopifyAdminClient(f"http://127.0.0.1:{port}/shops/x", "shpat_x" * 4, sleep=sleep, max_attempts=2)
    with pytest.raises(ShopifyAdminError) as caught:
        client.execute("ShopCurrency")
    assert caught.value.error_class is ErrorClass.CONNECTION
    assert len(sleep.waits) == 1


def test_bad_token_fails_fast_and_never_shows_the_token(admin):
    secret = "shpat_" + "f" * 32
    client = ShopifyAdminClient(admin.shop_url("small"), secret, sleep=RecordingSleep())
    with pytest.raises(ShopifyAdminError) as caught:
        client.execute("ShopCurrency")
    assert caught.value.status == 401 and caught.value.error_class is ErrorClass.HTTP_4XX
    assert "Invalid API key or access token" in str(caught.value)
    assert client.stats.requests == 1
    assert secret not in str(caught.value) and secret not in repr(caught.value)
    assert secret not in repr(client) and "shpat_" in repr(client)


def test_graphql_errors_are_raised_with_their_messages(admin):
    with client_for(admin) as client, pytest.raises(ShopifyAdminError) as caught:
        client.execute_source("query Bad { shop { name nickname } }", operation_name="Bad")
    assert caught.value.code == "undefinedField"
    assert caught.value.messages == ("Field 'nickname' doesn't exist on type 'Shop'",)


def test_a_query_over_the_cost_limit_is_not_sent(admin):
    with client_for(admin) as client, pytest.raises(ShopifyAdminError) as caught:
        client.execute("CatalogProducts", {"first": 250, "variantsFirst": 100})
    assert caught.value.code == "MAX_COST_EXCEEDED"
    assert client.stats.requests == 0


def test_endpoint_accepts_shop_base_or_full_url(admin):
    full = ShopifyAdminClient(admin.endpoint("small"), "t" * 20)
    base = ShopifyAdminClient(admin.shop_url("small") + "/", "t" * 20)
    assert full.endpoint == base.endpoint == admin.endpoint("small")


def test_cost_bucket_projects_restore_and_books_points():
    now = [100.0]
    bucket = CostBucket(clock=lambda: now[0])
    assert bucket.reserve(500) == 0.0  # unknown status: just send
    bucket.observe(ThrottleStatus(1000.0, 100.0, 50.0, observed_at=100.0))
    assert bucket.reserve(100) == 0.0  # 100 available now
    wait = bucket.reserve(300)  # 0 left after the first booking: 300 / 50 = 6 s
    assert 6.0 <= wait < 6.01
    now[0] = 200.0
    assert bucket.available() == 1000.0  # capped at the maximum

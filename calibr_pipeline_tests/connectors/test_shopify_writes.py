"""Price writes and reconciliation reads against the sandbox Admin API over real HTTP.

Retry waits go through an injected recording ``sleep`` (nothing sleeps 16 s here);
the client's own cost-bucket pacing sleeps for real, on buckets fast enough to keep
the tests short.
"""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest

from calibr_pipeline.connectors.shopify_admin import (
    ROLLED_BACK,
    ShopifyAdminClient,
    ShopifyAdminError,
    VariantPriceUpdate,
    bulk_update_prices,
    read_variant_prices,
    read_variants,
)
from calibr_pipeline.connectors.shopify_admin.writes import money_string
from calibr_pipeline.domain.catalog import CatalogVariant
from calibr_pipeline.domain.errors import ErrorClass
from calibr_pipeline.sandbox.demo_catalog import product_gid, variant_gid
from calibr_pipeline.sandbox.shopify_admin import BucketPreset, ShopifyAdminSandbox

pytestmark = pytest.mark.integration


class RecordingSleep:
    def __init__(self):
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def catalog(n_products: int, variants_per_product: int, currency: str = "USD") -> list[CatalogVariant]:
    rows = []
    for p in range(n_products):
        for v in range(variants_per_product):
            rows.append(
                CatalogVariant(
                    product_external_id=product_gid(8_000_000_000_000 + p),
                    product_title=f"Product {p}",
                    product_type="Test",
                    vendor="Calibrate",
                    tags=(),
                    variant_external_id=variant_gid(46_000_000_000_000 + p * 100 + v),
                    sku=f"SKU-{p}-{v}",
                    variant_title=f"Size {v}",
                    price=Decimal("20.00") + v,
                    compare_at_price=None,
                    cost=Decimal("8.00"),
                    currency=currency,
                )
            )
    return rows


@pytest.fixture
def admin():
    with ShopifyAdminSandbox() as server:
        server.add_shop("shop", catalog(6, 3), preset="plus")
        yield server


@pytest.fixture
def shop(admin):
    return admin.shop("shop")


@pytest.fixture
def client(admin, shop):
    with ShopifyAdminClient(admin.shop_url("shop"), shop.access_token, timeout=(1.0, 2.0)) as c:
        yield c


def updates_for(product, prices):
    return [VariantPriceUpdate(v.gid, Decimal(p)) for v, p in zip(product.variants, prices, strict=False)]


def write(client, product, updates, **kw):
    kw.setdefault("sleep", RecordingSleep())
    kw.setdefault("rng", random.Random(7))
    return bulk_update_prices(client, product.gid, updates, **kw)


# -- success and userErrors ---------------------------------------------------------------------


def test_bulk_update_writes_each_variant_exactly_once(client, shop):
    product = shop.products[0]
    old = [v.price for v in product.variants]
    result = write(client, product, updates_for(product, ["19.99", "24.50", "30"]))
    assert result.ok and result.attempts == 1 and result.retries == 0 and result.throttled == 0
    assert [(r.variant_gid, r.written_price) for r in result.results] == [
        (product.variants[0].gid, Decimal("19.99")),
        (product.variants[1].gid, Decimal("24.50")),
        (product.variants[2].gid, Decimal("30.00")),
    ]
    assert [v.price for v in product.variants] == [Decimal("19.99"), Decimal("24.50"), Decimal("30.00")]
    log = shop.writes()
    assert [(w.variant_gid, w.old_price, w.new_price) for w in log] == [
        (v.gid, o, v.price) for v, o in zip(product.variants, old, strict=True)
    ]
    assert result.request_id is not None and {w.request_id for w in log} == {result.request_id}
    assert max(shop.write_counts().values()) == 1
    assert shop.stats.mutations == 1


def test_mutation_costs_10_points_requested_and_actual(client, shop):
    product = shop.products[0]
    write(client, product, updates_for(product, ["1.00"]))
    assert client.stats.requested_cost == 10 and client.stats.actual_cost == 10
    assert shop.stats.points_spent == 10


def test_compare_at_price_is_sent_only_when_given(client, shop):
    product = shop.products[1]
    a, b = product.variants[:2]
    a.compare_at_price = Decimal("99.00")
    result = write(
        client,
        product,
        [VariantPriceUpdate(a.gid, Decimal("10.00")), VariantPriceUpdate(b.gid, Decimal("11.00"), compare_at_price=Decimal("15.00"))],
    )
    assert result.ok
    assert a.compare_at_price == Decimal("99.00")  # left alone
    assert b.compare_at_price == Decimal("15.00")


def test_all_or_nothing_writes_nothing_when_one_variant_is_invalid(client, shop):
    product = shop.products[2]
    before = [v.price for v in product.variants]
    result = write(client, product, updates_for(product, ["10.00", "-1.00", "12.00"]), allow_partial=False)
    assert not result.ok
    assert [(r.ok, r.error_code) for r in result.results] == [
        (False, ROLLED_BACK),
        (False, "GREATER_THAN_OR_EQUAL_TO"),
        (False, ROLLED_BACK),
    ]
    assert result.results[1].error_message == "Price must be greater than or equal to 0"
    assert [v.price for v in product.variants] == before
    assert shop.writes() == []


def test_partial_updates_write_the_valid_variants(client, shop):
    product = shop.products[2]
    result = write(client, product, updates_for(product, ["10.00", "-1.00", "12.00"]))  # allow_partial=True by default
    assert [(r.ok, r.error_code, r.written_price) for r in result.results] == [
        (True, None, Decimal("10.00")),
        (False, "GREATER_THAN_OR_EQUAL_TO", None),
        (True, None, Decimal("12.00")),
    ]
    assert [w.variant_gid for w in shop.writes()] == [product.variants[0].gid, product.variants[2].gid]
    assert result.attempts == 1  # userErrors are answers: never retried


def test_user_errors_are_mapped_to_their_variant_with_the_code(admin, client, shop):
    product = shop.products[3]
    a, b, c = product.variants
    stranger = shop.products[4].variants[0]
    admin.faults("shop").fail_variants([c.gid], code="PRODUCT_SUSPENDED", message="Product is suspended.")
    result = write(
        client,
        product,
        [
            VariantPriceUpdate(stranger.gid, Decimal("5.00")),  # another product's variant
            VariantPriceUpdate(a.gid, Decimal("5.00")),
            VariantPriceUpdate(c.gid, Decimal("5.00")),
            VariantPriceUpdate(b.gid, Decimal("5.00")),
        ],
    )
    by_variant = result.by_variant()
    assert by_variant[stranger.gid].error_code == "PRODUCT_VARIANT_DOES_NOT_EXIST"
    assert by_variant[c.gid].error_code == "PRODUCT_SUSPENDED"
    assert by_variant[c.gid].error_message == "Product is suspended."
    assert by_variant[a.gid].ok and by_variant[b.gid].ok
    assert sorted(w.variant_gid for w in shop.writes()) == sorted([a.gid, b.gid])
    assert stranger.price == Decimal("20.00")


def test_a_product_level_user_error_fails_every_variant(client, shop):
    product = shop.products[0]
    result = bulk_update_prices(
        client, "gid://shopify/Product/1", updates_for(product, ["1", "2"]), sleep=RecordingSleep()
    )
    assert [(r.ok, r.error_code) for r in result.results] == [(False, "PRODUCT_DOES_NOT_EXIST")] * 2
    assert shop.writes() == []


def test_input_is_checked_before_anything_is_sent(client, shop):
    product = shop.products[0]
    v = product.variants[0]
    with pytest.raises(ValueError, match="twice"):
        write(client, product, [VariantPriceUpdate(v.gid, Decimal(1)), VariantPriceUpdate(v.gid, Decimal(2))])
    with pytest.raises(ValueError, match="finite Decimal"):
        write(client, product, [VariantPriceUpdate(v.gid, 1.5)])  # type: ignore[arg-type]
    assert write(client, product, []).results == []
    assert client.stats.requests == 0
    assert money_string(Decimal("1E+2")) == "100" and money_string(Decimal("19.990")) == "19.990"


# -- retries ------------------------------------------------------------------------------------


def test_5xx_is_not_sent_again_and_says_it_may_have_written(admin, client, shop):
    # A 5xx can come after the shop applied the mutation: resending blindly could overwrite a
    # price set in between. The caller reads back instead (services.price_apply).
    product = shop.products[0]
    admin.faults("shop").http_5xx(next=2, status=502)
    sleep = RecordingSleep()
    with pytest.raises(ShopifyAdminError) as caught:
        write(client, product, updates_for(product, ["9.99"]), sleep=sleep)
    error = caught.value
    assert error.error_class is ErrorClass.HTTP_5XX and error.status == 502
    assert error.maybe_written is True and error.attempts == 1
    assert sleep.waits == [] and client.stats.requests == 1


def test_timeout_after_sending_is_not_sent_again(admin, shop):
    product = shop.products[0]
    admin.faults("shop").slow(next=3, delay=0.6)
    sleep = RecordingSleep()
    client = ShopifyAdminClient(admin.shop_url("shop"), shop.access_token, timeout=(1.0, 0.15))
    with client, pytest.raises(ShopifyAdminError) as caught:
        write(client, product, updates_for(product, ["9.99"]), sleep=sleep)
    assert caught.value.error_class is ErrorClass.TIMEOUT
    assert caught.value.maybe_written is True and caught.value.attempts == 1
    assert sleep.waits == [] and client.stats.requests == 1


def test_a_connection_never_made_is_retried_then_reported_as_not_written(shop):
    import socket

    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    product = shop.products[0]
    sleep = RecordingSleep()
    client = ShopifyAdminClient(f"http://127.0.0.1:{port}/admin/api/2025-01/graphql.json", shop.access_token, timeout=(0.5, 0.5))
    with client, pytest.raises(ShopifyAdminError) as caught:
        write(client, product, updates_for(product, ["9.99"]), sleep=sleep, rng=random.Random(1))
    assert caught.value.error_class is ErrorClass.CONNECTION
    assert caught.value.maybe_written is False and caught.value.attempts == 3
    assert len(sleep.waits) == 2 and 1.6 <= sleep.waits[0] <= 2.4 and 3.2 <= sleep.waits[1] <= 4.8


def test_throttled_burst_honours_retry_after(admin, client, shop):
    product = shop.products[0]
    admin.faults("shop").throttle(next=2, retry_after="0.75", status=False)  # no throttleStatus: Retry-After counts
    sleep = RecordingSleep()
    result = write(client, product, updates_for(product, ["9.99"]), sleep=sleep)
    assert result.ok and result.throttled == 2 and result.attempts == 3
    assert sleep.waits == [0.75, 0.75]
    assert client.stats.throttled == 2 and client.stats.retries == 2
    assert shop.write_counts() == {product.variants[0].gid: 1}


def test_throttled_waits_exactly_the_deficit_the_shop_reports(admin, client, shop):
    # Another app overspent the bucket: about 500 points are missing at 1,000/s (Plus), so the
    # wait is about 0.5 s (what the answer's throttleStatus says, plus the bucket jitter: up to
    # 20 ms + 10 % of the wait, i.e. 70 ms here; domain.backoff.bucket_jitter), not 16 s.
    product = shop.products[0]
    shop.bucket.drain(to=-490)
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    result = write(client, product, updates_for(product, ["9.99"]), sleep=sleep)
    assert result.ok and result.throttled >= 1
    # (how much is missing depends on how long the request took to leave: a loaded machine refills more)
    assert waits and 0 < waits[0] <= 0.5 + 0.02 + 0.1 * 0.5 and sum(waits) < 1.5, waits
    assert shop.write_counts() == {product.variants[0].gid: 1}


class _NoThrottleStatus:
    """A client whose THROTTLED answers carry no ``throttleStatus`` (an older or odd proxy)."""

    def __init__(self, client):
        self._client = client

    def __getattr__(self, name):
        return getattr(self._client, name)

    def execute_once(self, *args, **kwargs):
        answer = self._client.execute_once(*args, **kwargs)
        if answer.throttled:
            answer.payload.get("extensions", {}).get("cost", {}).pop("throttleStatus", None)
        return answer


def test_throttled_without_status_or_retry_after_waits_16_32_64(admin, client, shop):
    product = shop.products[0]
    admin.faults("shop").throttle(next=3, status=False)  # neither throttleStatus nor Retry-After
    sleep = RecordingSleep()
    result = write(_NoThrottleStatus(client), product, updates_for(product, ["9.99"]), sleep=sleep)
    assert result.ok and result.throttled == 3 and result.attempts == 4
    assert sleep.waits == [16.0, 32.0, 64.0]


def test_throttle_exhaustion_raises_rate_limited(admin, client, shop):
    product = shop.products[0]
    admin.faults("shop").throttle(next=10, status=False)
    sleep = RecordingSleep()
    with pytest.raises(ShopifyAdminError) as caught:
        write(_NoThrottleStatus(client), product, updates_for(product, ["9.99"]), sleep=sleep)
    assert caught.value.error_class is ErrorClass.RATE_LIMITED and caught.value.code == "THROTTLED"
    assert caught.value.maybe_written is False and caught.value.attempts == 4
    assert sleep.waits == [16.0, 32.0, 64.0]
    assert shop.writes() == []


def test_http_429_retry_after_decimal_is_honoured(admin, client, shop):
    product = shop.products[0]
    admin.faults("shop").http_429(next=1, retry_after="1.5")
    sleep = RecordingSleep()
    result = write(client, product, updates_for(product, ["9.99"]), sleep=sleep)
    assert result.ok and result.throttled == 1 and result.retries == 1
    assert sleep.waits == [1.5]


def test_attempts_count_every_request_sent(admin, client, shop):
    product = shop.products[0]
    faults = admin.faults("shop")
    faults.http_429(next=1, retry_after="0.5")
    faults.throttle(next=1, retry_after="0.25", status=False)  # no throttleStatus: Retry-After applies
    sleep = RecordingSleep()
    result = write(client, product, updates_for(product, ["9.99"]), sleep=sleep)
    assert result.ok and result.attempts == 3 and result.throttled == 2
    assert sleep.waits == [0.5, 0.25]


def test_graphql_errors_are_not_retried(monkeypatch, client, shop):
    from calibr_pipeline.connectors.shopify_admin import writes

    product = shop.products[0]
    monkeypatch.setattr(writes, "_variables", lambda *a: {"variants": [{"id": product.variants[0].gid, "price": "1.00"}]})
    with pytest.raises(ShopifyAdminError) as caught:
        write(client, product, updates_for(product, ["1"]))
    assert caught.value.error_class is ErrorClass.HTTP_4XX
    assert client.stats.requests == 1


# -- reconciliation ------------------------------------------------------------------------------


def test_read_variant_prices_after_a_merchant_edit(client, shop):
    product = shop.products[5]
    a, b, c = product.variants
    write(client, product, updates_for(product, ["10.00", "11.00", "12.00"]))
    shop.set_price(b.gid, Decimal("13.37"))  # the merchant changes it in the admin
    shop.delete_variant(c.gid)
    requests_before = client.stats.requests
    others = [v.gid for v in shop.products[0].variants]
    prices = read_variant_prices(client, [a.gid, b.gid, c.gid, *others, a.gid], batch_size=2)
    assert prices[a.gid] == Decimal("10.00")
    assert prices[b.gid] == Decimal("13.37")
    assert prices[c.gid] is None
    assert list(prices) == [a.gid, b.gid, c.gid, *others]  # deduplicated, in order
    assert client.stats.requests - requests_before == 3  # 6 ids in batches of 2
    snapshot = read_variants(client, [b.gid])[b.gid]
    assert snapshot is not None and snapshot.price == Decimal("13.37") and snapshot.updated_at.endswith("Z")
    with pytest.raises(ValueError):
        read_variant_prices(client, [a.gid], batch_size=251)


# -- load --------------------------------------------------------------------------------------


def test_500_variants_across_100_products_on_a_small_fast_bucket():
    # 60 points (6 mutations) restoring 600/s: the bucket, not the network, sets the pace.
    small_fast = BucketPreset("small-fast", 60.0, 600.0)
    rows = catalog(100, 5)
    with ShopifyAdminSandbox() as server:
        shop = server.add_shop("load", rows, preset=small_fast)
        with ShopifyAdminClient(server.shop_url("load"), shop.access_token, timeout=(1.0, 5.0)) as client:
            sleep = RecordingSleep()

            def write_product(product):
                ups = [VariantPriceUpdate(v.gid, v.price + Decimal("1.11")) for v in product.variants]
                return ups, bulk_update_prices(client, product.gid, ups, sleep=sleep, rng=random.Random(0))

            started = time.monotonic()
            with ThreadPoolExecutor(max_workers=4) as pool:
                outcomes = list(pool.map(write_product, shop.products))
            elapsed = time.monotonic() - started
            expected = {u.variant_gid: u.price for ups, _ in outcomes for u in ups}
            prices = read_variant_prices(client, list(expected))

    assert len(outcomes) == 100 and len(expected) == 500
    assert all(result.ok for _, result in outcomes)
    assert prices == expected
    counts = shop.write_counts()
    assert len(counts) == 500 and max(counts.values()) == 1  # no variant written twice
    mutations = shop.stats.mutations
    assert mutations == 100
    assert shop.stats.throttled <= 0.01 * shop.stats.requests, (shop.stats.throttled, shop.stats.requests)
    assert client.stats.throttled == shop.stats.throttled
    assert client.stats.bucket_waits > 0  # the bucket was the constraint, and was respected
    assert elapsed < 10


def test_cost_bucket_counts_requests_in_flight_and_distrusts_overtaken_answers():
    from calibr_pipeline.connectors.shopify_admin import CostBucket, ThrottleStatus

    now = [0.0]
    bucket = CostBucket(clock=lambda: now[0])
    bucket.observe(ThrottleStatus(100.0, 100.0, 10.0, observed_at=0.0))
    a = bucket.acquire(30)
    b = bucket.acquire(30)
    assert a.wait == 0.0 and b.wait == 0.0
    # B's answer comes first; Shopify charged A and B (40 left) but A is still in flight.
    bucket.settle(b, ThrottleStatus(100.0, 40.0, 10.0, observed_at=0.0))
    assert bucket.available() == 10.0  # 40 minus A's 30: counted twice rather than never
    # A's older answer (charged A only: 70) must not raise the mirror.
    bucket.settle(a, ThrottleStatus(100.0, 70.0, 10.0, observed_at=0.0))
    assert bucket.available() == 10.0
    # Alone again, Shopify's figure is taken as it is, refunds included.
    c = bucket.acquire(5)
    bucket.settle(c, ThrottleStatus(100.0, 38.0, 10.0, observed_at=0.0))
    assert bucket.available() == 38.0
    # A failed request keeps its booking.
    d = bucket.acquire(20)
    bucket.settle(d, None)
    assert bucket.available() == 18.0
    now[0] = 1.0
    assert bucket.available() == 28.0


# -- answers lost after the write landed ---------------------------------------------------------


@pytest.mark.parametrize("mode", ["503", "slow", "reset", "cut", "data_and_errors"])
def test_an_answer_lost_after_the_write_is_reported_as_maybe_written(admin, shop, mode):
    product = shop.products[1]
    admin.faults("shop").lose_answer(next=1, mode=mode, delay=0.6)
    sleep = RecordingSleep()
    client = ShopifyAdminClient(admin.shop_url("shop"), shop.access_token, timeout=(1.0, 0.3))
    with client, pytest.raises(ShopifyAdminError) as caught:
        write(client, product, updates_for(product, ["7.77"]), sleep=sleep)
    assert caught.value.maybe_written is True and caught.value.attempts == 1
    assert sleep.waits == [] and client.stats.requests == 1  # never resent blindly
    # ... and the shop did apply it: only a read can tell.
    assert shop.write_counts() == {product.variants[0].gid: 1}
    assert read_variant_prices(client, [product.variants[0].gid]) == {product.variants[0].gid: Decimal("7.77")}

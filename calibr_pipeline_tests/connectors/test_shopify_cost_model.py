"""The client prices requests with what the shop charges, and waits exactly for THROTTLED deficits.

Unit tests of :class:`CostModel` (pure), then the client and the catalog reader against
the sandbox shop over real HTTP: the shop's ``requestedQueryCost`` is the ground truth
the client learns, so catalog pages grow to 250 products where the old static price
(827 points for 25 products) kept them at 25; a THROTTLED answer caused by another app
spending the bucket waits for the deficit ``throttleStatus`` reports, not 16 s.
"""

from __future__ import annotations

import random
import threading
import time
from decimal import Decimal

import pytest

from calibr_pipeline.connectors.shopify_admin import (
    ShopifyAdminClient,
    VariantPriceUpdate,
    bulk_update_prices,
    fetch_catalog,
    load_document,
    requested_query_cost,
)
from calibr_pipeline.connectors.shopify_admin.cost import CostModel, page_signature
from calibr_pipeline.domain.backoff import throttle_deficit_wait
from calibr_pipeline.domain.catalog import CatalogVariant
from calibr_pipeline.sandbox.demo_catalog import product_gid, variant_gid
from calibr_pipeline.sandbox.shopify_admin import BucketPreset, ShopifyAdminSandbox

CATALOG = load_document("CatalogProducts")


class RecordingSleep:
    def __init__(self):
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def catalog(n_products: int, per_product: int = 1) -> list[CatalogVariant]:
    return [
        CatalogVariant(
            product_external_id=product_gid(8_200_000_000_000 + p),
            product_title=f"Cost product {p}",
            product_type="Test",
            vendor="Calibrate",
            tags=(),
            variant_external_id=variant_gid(47_000_000_000_000 + p * 10 + v),
            sku=f"C-{p}-{v}",
            variant_title=f"V{v}",
            price=Decimal("10.00") + v,
            compare_at_price=None,
            cost=Decimal("4.00"),
            currency="USD",
        )
        for p in range(n_products)
        for v in range(per_product)
    ]


# -- CostModel (pure) ----------------------------------------------------------------------------


def test_page_signature_keeps_page_sizes_and_list_lengths_only():
    assert page_signature({"first": 25, "after": "abc", "productId": "gid://x", "ids": ["a", "b"], "flag": True}) == (
        ("first", 25),
        ("ids", ("len", 2)),
    )
    assert page_signature({"first": 25, "after": None}) == page_signature({"first": 25, "after": "cursor-2"})


def test_static_estimate_until_the_shop_has_priced_the_document():
    model = CostModel()
    assert model.estimate(CATALOG, {"first": 25, "variantsFirst": 10}, "CatalogProducts", 827) == 827
    model.observe(CATALOG, {"first": 25, "variantsFirst": 10, "after": None}, "CatalogProducts", 827, 57)
    # Exactly what the shop said, for every later page of that size (cursor ignored).
    assert model.estimate(CATALOG, {"first": 25, "variantsFirst": 10, "after": "c2"}, "CatalogProducts", 827) == 57
    assert model.learned(CATALOG, {"first": 25, "variantsFirst": 10}, "CatalogProducts") == 57
    # Another document with the same variables learned nothing.
    assert model.estimate("query Other { shop { name } }", {"first": 25, "variantsFirst": 10}, None, 827) == 827


def test_larger_pages_are_extrapolated_conservatively_smaller_ones_not_at_all():
    model = CostModel()
    model.observe(CATALOG, {"first": 25, "variantsFirst": 10}, "CatalogProducts", 827, 57)
    # 250 products: static 8,252 × 57/827 = 569, an over-estimate of the 178 Shopify charges
    # (its costs grow with the square root of the page), and below the 1,000-point limit.
    bigger = model.estimate(CATALOG, {"first": 250, "variantsFirst": 10}, "CatalogProducts", 8252)
    assert bigger == 569
    # A smaller page has no smaller sample to scale from: the static estimate stands.
    assert model.estimate(CATALOG, {"first": 10, "variantsFirst": 10}, "CatalogProducts", 332) == 332
    # Several samples: the dearest ratio among pages no larger than the new one counts.
    model.observe(CATALOG, {"first": 250, "variantsFirst": 10}, "CatalogProducts", 8252, 178)
    assert model.estimate(CATALOG, {"first": 200, "variantsFirst": 10}, "CatalogProducts", 6602) == 456  # ceil(6602 × 57/827)


def test_a_linear_shop_is_never_under_estimated():
    # A shop charging exactly the static price: the ratio is 1 and stays 1.
    model = CostModel()
    model.observe(CATALOG, {"first": 10, "variantsFirst": 10}, "CatalogProducts", 332, 332)
    assert model.estimate(CATALOG, {"first": 25, "variantsFirst": 10}, "CatalogProducts", 827) == 827


def test_garbage_costs_are_not_learned():
    model = CostModel()
    for bad in (None, "12", -1, True):
        model.observe(CATALOG, {"first": 25}, "CatalogProducts", 827, bad)
    assert model.learned(CATALOG, {"first": 25}, "CatalogProducts") is None


def test_throttle_deficit_wait_is_exact_plus_small_jitter():
    rng = random.Random(3)
    waits = [throttle_deficit_wait(52, 42, 100, rng=rng) for _ in range(200)]
    assert all(0.1 <= w <= 0.1 + 0.02 + 0.01 for w in waits)
    assert max(waits) - min(waits) > 0.01  # it does spread
    assert throttle_deficit_wait(10, 500, 100, rng=rng) < 0.021  # nothing missing: jitter only
    assert throttle_deficit_wait(10_000, 0, 1, rng=rng) <= 10_000 + 0.25  # jitter capped
    for missing in ((10, None, 100), (None, 5, 100), (10, 5, 0), (10, 5, float("nan"))):
        assert throttle_deficit_wait(*missing) is None


# -- against the sandbox shop --------------------------------------------------------------------


def test_catalog_pages_grow_to_what_the_shop_charges_not_the_static_827():
    """Would have failed before: every page was priced 827 and stayed at 25 products (25 requests here)."""
    rows = catalog(600)
    with ShopifyAdminSandbox() as server:
        shop = server.add_shop("wide", rows, preset="standard")
        with ShopifyAdminClient(server.shop_url("wide"), shop.access_token) as client:
            currency, read = fetch_catalog(client)
            first_page = {"first": 25, "variantsFirst": 10}
            assert requested_query_cost(CATALOG, first_page) == 827  # the static estimate
            assert client.cost_model.learned(CATALOG, first_page, "CatalogProducts") == 57  # what the shop said
            assert client.estimate_cost("CatalogProducts", first_page) == 57
            assert client.cost_model.learned(CATALOG, {"first": 250, "variantsFirst": 10}, "CatalogProducts") == 178
    assert currency == "USD" and read == rows
    # ShopCurrency, 25 products (static price), then 250, 250, 75 (learned price)
    assert client.stats.requests == shop.stats.requests == 5
    assert client.stats.throttled == 0
    # Reserved more than charged only for the page priced statically and the first extrapolated one.
    assert client.stats.estimate_misses == 2


def test_waits_are_sized_by_the_learned_cost_not_the_static_one():
    rows = catalog(30)
    slow = BucketPreset("slow", 1000.0, 100.0)
    with ShopifyAdminSandbox() as server:
        shop = server.add_shop("slow", rows, preset=slow)
        sleep = RecordingSleep()
        with ShopifyAdminClient(server.shop_url("slow"), shop.access_token, sleep=lambda s: (sleep(s), time.sleep(s))) as client:
            variables = {"first": 25, "variantsFirst": 10}
            client.execute("CatalogProducts", variables)  # reserved 827, the shop charges 57
            shop.bucket.drain(to=0)  # another app spends everything
            client.execute("CatalogProducts", variables)
    # THROTTLED once; the wait is for the 57 points the shop asks (≈ 0.57 s at 100/s plus
    # jitter), not for 827 (8.3 s), and the retry then needs no further bucket wait.
    assert shop.stats.throttled == 1 and client.stats.throttled == 1
    assert len(sleep.waits) == 1 and 0.5 < sleep.waits[0] < 0.65


def test_a_write_throttled_by_another_app_waits_for_the_deficit_not_16_s():
    rows = catalog(3, per_product=2)
    slow = BucketPreset("slow", 1000.0, 50.0)
    with ShopifyAdminSandbox() as server:
        shop = server.add_shop("shared", rows, preset=slow)
        with ShopifyAdminClient(server.shop_url("shared"), shop.access_token) as client:
            client.execute("ShopCurrency")  # the client's mirror: a full bucket
            shop.bucket.drain(to=0)  # another app spends all of it
            product = shop.products[0]
            sleep = RecordingSleep()
            result = bulk_update_prices(
                client, product.gid, [VariantPriceUpdate(product.variants[0].gid, Decimal("11.11"))], sleep=sleep, rng=random.Random(5)
            )
    assert result.ok and result.throttled == 1 and result.attempts == 2
    # (10 requested − ~0 available) / 50 per s = 0.2 s, plus ≤ 40 ms jitter; the old code slept 16 s.
    assert len(sleep.waits) == 1 and 0.15 <= sleep.waits[0] <= 0.25
    assert client.stats.throttle_wait_seconds == pytest.approx(sleep.waits[0])
    assert shop.write_counts() == {product.variants[0].gid: 1}


def test_another_app_spending_half_the_bucket_costs_deficits_not_fixed_pauses():
    """Another app spends half of the restore rate from the shop's bucket while ours reads."""
    rows = catalog(120, per_product=2)
    shared = BucketPreset("shared", 200.0, 400.0)
    stop = threading.Event()
    spent = []
    with ShopifyAdminSandbox() as server:
        shop = server.add_shop("shared", rows, preset=shared)

        def other_app():
            # 5 points every 12.5 ms = 200/s, waiting its turn when the bucket is empty,
            # like many small requests of an app we do not control.
            next_at = time.monotonic()
            while not stop.is_set():
                if not shop.bucket.try_take(5):
                    stop.wait(0.005)
                    continue
                spent.append(5)
                next_at += 5 / 200
                stop.wait(max(0.0, next_at - time.monotonic()))

        thread = threading.Thread(target=other_app, daemon=True)
        thread.start()
        try:
            started = time.monotonic()
            with ShopifyAdminClient(server.shop_url("shared"), shop.access_token) as client:
                for _ in range(4):
                    _, read = fetch_catalog(client, products_page_size=25)
                    assert read == rows
            elapsed = time.monotonic() - started
        finally:
            stop.set()
            thread.join(timeout=10)
    assert client.stats.throttled > 0, "the other app never got in the way; the test proves nothing"
    # Each THROTTLED answer cost its deficit: ≤ 57 points / 400 per s + jitter (≤ 34 ms), never 16 s.
    assert client.stats.throttle_wait_seconds <= client.stats.throttled * (57 / 400 + 0.035)
    assert elapsed < 15


def test_the_bucket_mirror_learns_what_other_apps_spend():
    from calibr_pipeline.connectors.shopify_admin import CostBucket, ThrottleStatus

    now = [0.0]
    bucket = CostBucket(clock=lambda: now[0])
    shop = {"available": 0.0}  # the shop's real bucket: 100/s restore, another app takes 50/s
    bucket.observe(ThrottleStatus(2000.0, 0.0, 100.0, observed_at=0.0))
    waits = []
    for _ in range(60):
        reservation = bucket.acquire(10)
        waits.append(reservation.wait)
        elapsed = reservation.wait + 0.01
        now[0] += elapsed
        shop["available"] += elapsed * 50.0  # what is left to us of the refill
        shop["available"] -= 10  # our write, charged
        bucket.settle(reservation, ThrottleStatus(2000.0, float(int(shop["available"])), 100.0, observed_at=now[0]))
    assert 40 <= bucket.foreign_rate <= 60
    # Once learned, a 10-point write waits about 10 / 50 s, not 10 / 100 s.
    assert 0.17 <= waits[-1] <= 0.23


def test_a_lone_client_learns_no_foreign_spending():
    from calibr_pipeline.connectors.shopify_admin import CostBucket, ThrottleStatus

    now = [0.0]
    bucket = CostBucket(clock=lambda: now[0])
    available = 0.0
    bucket.observe(ThrottleStatus(2000.0, 0.0, 100.0, observed_at=0.0))
    for _ in range(60):
        reservation = bucket.acquire(10)
        now[0] += reservation.wait + 0.01
        available += (reservation.wait + 0.01) * 100.0 - 10
        bucket.settle(reservation, ThrottleStatus(2000.0, float(int(available)), 100.0, observed_at=now[0]))
    assert bucket.foreign_rate < 2.0
    # A THROTTLED answer (not charged) is not mistaken for foreign spending either.
    reservation = bucket.acquire(10)
    now[0] += reservation.wait + 0.06
    available += (reservation.wait + 0.06) * 100.0
    bucket.settle(reservation, ThrottleStatus(2000.0, float(int(available)), 100.0, observed_at=now[0]), charged=False)
    assert bucket.foreign_rate < 2.0

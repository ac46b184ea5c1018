"""Several product writes in flight from the ONE run writer (issue 12, Plus-plan budgets).

What must stay true when ``apply_run`` keeps several requests in flight:

* pacing: every request books its points in the client's shared bucket mirror, so no
  request goes out that the shop's bucket cannot pay (THROTTLED ≤ 1 % of requests, here 0);
* the write path's guarantees (issue 7): write-time checks per product on fresh shop data,
  exactly one audit row per write, a lost answer resolved by reading, never resent blindly;
* one writer: the lease is renewed before every product write, and a writer that loses it
  stops every thread (no new write starts).

The shop answers with real latency (``ShopifyAdminSandbox.latency``) so that requests do
overlap; the sandbox counts how many it handled at once.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import func, select, update

from calibr_pipeline.defs.resources import ShopifyAdminResource
from calibr_pipeline.sandbox.runner import SandboxWorld
from calibr_pipeline.sandbox.shopify_admin import BucketPreset
from calibr_pipeline.services.price_apply import LeaseLost, apply_run, concurrency_for_restore_rate
from calibr_pipeline.services.rule_runs import compute_targets, create_run, save_rule
from calibr_pipeline.warehouse.engine import session_scope
from calibr_pipeline.warehouse.models import PriceAudit, RuleRun, RuleTarget, Shop
from calibr_pipeline.warehouse.catalog_store import upsert_catalog
from calibr_pipeline_tests.benchmarks.bench_rate_floor import RULE, TENANT, build_catalog, seed_shop

pytestmark = pytest.mark.integration

# A small, fast-restoring bucket: the run is bucket-bound for part of its length, so pacing matters.
TIGHT = BucketPreset("tight", 300.0, 150.0)
FAST = {"retry_delay": lambda attempts: 0.0}


@pytest.fixture
def world():
    with SandboxWorld([], seed=12) as world:
        world.admin.latency = 0.03
        yield world


def _setup(url, world, products: int, per_product: int = 2, preset: BucketPreset = TIGHT):
    shop = world.admin.add_shop(TENANT, build_catalog(products, per_product), preset=preset, currency="USD", seed=12)
    shop_id = seed_shop(url, world, shop)
    with session_scope(url) as session:
        upsert_catalog(session, session.get(Shop, shop_id), shop.catalog())
    with session_scope(url) as session:
        save_rule(session, project_slug=TENANT, definition=RULE, actor="test")
        run_id = create_run(session, project_slug=TENANT, rule_name=RULE["name"], actor="test").id
    with session_scope(url) as session:
        compute_targets(session, run_id)
    return shop, run_id


def _targets(url, run_id):
    with session_scope(url) as session:
        return session.scalars(select(RuleTarget).where(RuleTarget.run_id == run_id, RuleTarget.action == "write").order_by(RuleTarget.id)).all()


def _audit_keys(url, run_id):
    with session_scope(url) as session:
        return session.scalars(select(PriceAudit.idempotency_key).where(PriceAudit.run_id == run_id)).all()


def test_concurrent_writes_are_paced_by_the_bucket_and_apply_every_target_once(world, warehouse_url):
    shop, run_id = _setup(warehouse_url, world, products=60)
    client = ShopifyAdminResource().client_for

    summary = apply_run(warehouse_url, run_id, client, actor="test", concurrency=6, **FAST)

    targets = _targets(warehouse_url, run_id)
    assert summary.state == "APPLIED" and summary.concurrency == 6
    assert all(t.state == "APPLIED" for t in targets) and len(targets) == 120
    assert all(shop.price_of(t.variant_external_id) == t.to_price for t in targets)
    assert set(shop.write_counts().values()) == {1}  # every variant written exactly once
    keys = _audit_keys(warehouse_url, run_id)
    assert sorted(keys) == sorted(f"{run_id}:{t.id}" for t in targets)  # one audit row per write
    assert shop.stats.max_in_flight >= 2, "the writes never overlapped: concurrency did nothing"
    # 600 points of writes on a 300-point bucket: the run had to wait for the bucket, and still
    # no request was sent that the bucket could not pay.
    assert shop.stats.points_spent > TIGHT.maximum_available
    assert shop.stats.throttled <= 0.01 * shop.stats.requests, (shop.stats.throttled, shop.stats.requests)
    assert summary.write_requests == 60


def test_write_time_checks_lost_answers_and_a_drained_bucket_under_concurrency(world, warehouse_url):
    shop, run_id = _setup(warehouse_url, world, products=30)
    targets = _targets(warehouse_url, run_id)
    edited = targets[7]  # the merchant sets one price by hand after the preview
    shop.set_price(edited.variant_external_id, Decimal("777.00"))
    shop.faults.lose_answer(next=2, mode="503")  # the first two writes land, their answers are lost
    shop.bucket.drain(to=0)  # another app just spent the whole bucket

    summary = apply_run(warehouse_url, run_id, ShopifyAdminResource(write_wait_scale=0.001).client_for, actor="test", concurrency=4, **FAST)

    after = {t.id: t for t in _targets(warehouse_url, run_id)}
    assert after[edited.id].state == "SKIPPED_STALE" and shop.price_of(edited.variant_external_id) == Decimal("777.00")
    assert edited.variant_external_id not in shop.write_counts()
    applied = [t for t in after.values() if t.state == "APPLIED"]
    assert len(applied) == len(targets) - 1 and summary.state == "APPLIED"
    # The lost answers were resolved by reading back: found at the target price, never resent.
    assert summary.recovered >= 2
    assert max(shop.write_counts().values()) == 1
    assert sorted(_audit_keys(warehouse_url, run_id)) == sorted(f"{run_id}:{t.id}" for t in applied)
    assert shop.stats.throttled <= 0.01 * shop.stats.requests + 1  # the first read may meet the drained bucket


def test_a_writer_that_loses_its_lease_stops_every_thread(world, warehouse_url):
    shop, run_id = _setup(warehouse_url, world, products=40)
    concurrency = 4

    at_steal: list[int] = []

    def steal_lease(n: int) -> None:
        if n == 5:  # another process took the run over (this writer paused past its lease)
            with session_scope(warehouse_url) as session:
                session.execute(update(RuleRun).where(RuleRun.id == run_id).values(lease_owner="someone-else"))
            at_steal.append(len(shop.write_counts()))

    with pytest.raises(LeaseLost):
        apply_run(warehouse_url, run_id, ShopifyAdminResource().client_for, actor="test", concurrency=concurrency, after_request=steal_lease, **FAST)

    written = len(shop.write_counts())
    # Writes already in flight when the lease went may finish (at most one per thread, 2 variants
    # each); nothing new starts.
    assert at_steal and written - at_steal[0] <= concurrency * 2, (at_steal, written)
    assert written < 40 * 2  # the run did not carry on
    with session_scope(warehouse_url) as session:
        applied = session.scalar(select(func.count()).select_from(RuleTarget).where(RuleTarget.run_id == run_id, RuleTarget.state == "APPLIED"))
    assert len(_audit_keys(warehouse_url, run_id)) == applied


def test_concurrency_follows_the_plan_restore_rate():
    assert concurrency_for_restore_rate(100) == 1  # Standard: one request at a time spends it
    assert concurrency_for_restore_rate(200) == 2  # Advanced
    assert concurrency_for_restore_rate(1000) == 8  # Plus
    assert concurrency_for_restore_rate(None) == 1


def test_apply_concurrency_setting_is_validated_and_shown_in_the_estimate():
    from calibr_pipeline import settings
    from calibr_pipeline.services.rule_runs import estimate_apply_seconds

    assert settings.apply_concurrency({}) is None
    assert settings.apply_concurrency({"CALIBR_APPLY_CONCURRENCY": "4"}) == 4
    for bad in ("0", "11", "two", "-1"):
        with pytest.raises(ValueError, match="CALIBR_APPLY_CONCURRENCY must be a whole number from 1 to 10"):
            settings.apply_concurrency({"CALIBR_APPLY_CONCURRENCY": bad})
    # 2,500 products on Plus (rate-limit floor 15 s): round trips of an assumed 0.15 s dominate,
    # 8 at a time (the plan's default) or one at a time.
    assert estimate_apply_seconds(2500, "plus") == 46.9
    assert estimate_apply_seconds(2500, "plus", concurrency=1) == 375.0
    assert estimate_apply_seconds(250, "standard") == 37.5  # Standard: 1 in flight; 2,500 points fit the bucket, round trips dominate

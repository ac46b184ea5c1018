"""Bulk-operation apply (issue 12): staged upload -> bulkOperationRunMutation -> poll -> result file.

Every failure mode of the protocol ends with the write path's guarantees intact: write-time
checks before the upload (only safe targets go into the JSONL), per-variant outcomes from the
result file, exactly one audit row per written variant, every variant written at most once,
and anything whose outcome is unknown read back (never resent blindly).
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select

from calibr_pipeline.connectors.shopify_admin import bulk as bulk_connector
from calibr_pipeline.defs.resources import ShopifyAdminResource
from calibr_pipeline.services.price_apply import apply_run
from calibr_pipeline.services.rule_runs import choose_apply_mode
from calibr_pipeline.warehouse.engine import session_scope
from calibr_pipeline.warehouse.models import DeadLetter, RuleRun
from calibr_pipeline_tests.integration.test_concurrent_apply import _audit_keys, _setup, _targets, world  # noqa: F401  (fixture)
from calibr_pipeline_tests.benchmarks.bench_rate_floor import TENANT

pytestmark = pytest.mark.integration

FAST = {"retry_delay": lambda attempts: 0.0, "bulk_poll_interval": 0.02}


@pytest.fixture(autouse=True)
def _quick_world(world):
    world.admin.latency = 0.0
    return world


def _apply(url, run_id, **kw):
    return apply_run(url, run_id, ShopifyAdminResource(write_wait_scale=0.001).client_for, actor="test", mode="bulk", **{**FAST, **kw})


def _check_once_and_audited(url, run_id, shop, *, expected_applied):
    targets = _targets(url, run_id)
    applied = [t for t in targets if t.state == "APPLIED"]
    assert len(applied) == expected_applied
    assert all(shop.price_of(t.variant_external_id) == t.to_price for t in applied)
    assert max(shop.write_counts().values()) == 1  # no variant written twice, whatever happened
    assert sorted(_audit_keys(url, run_id)) == sorted(f"{run_id}:{t.id}" for t in applied)
    return targets


def test_bulk_apply_checks_at_write_time_and_applies_from_the_result_file(world, warehouse_url):
    shop, run_id = _setup(warehouse_url, world, products=20)
    targets = _targets(warehouse_url, run_id)
    edited = targets[3]
    shop.set_price(edited.variant_external_id, Decimal("555.00"))  # the merchant, after the preview

    summary = _apply(warehouse_url, run_id)

    assert summary.state == "APPLIED" and summary.mode == "bulk" and summary.bulk_status == "COMPLETED"
    assert world.admin.bulk.started[TENANT] == 1 and summary.write_requests == 1  # one bulk mutation, no sync writes
    after = {t.id: t for t in _check_once_and_audited(warehouse_url, run_id, shop, expected_applied=len(targets) - 1)}
    assert after[edited.id].state == "SKIPPED_STALE" and shop.price_of(edited.variant_external_id) == Decimal("555.00")
    assert edited.variant_external_id not in shop.write_counts()  # never in the JSONL
    with session_scope(warehouse_url) as session:
        assert session.get(RuleRun, run_id).run_metadata["bulk_operation"] == summary.bulk_operation


@pytest.mark.parametrize("after_lines", [0, 7])
def test_a_failed_operation_applies_its_partial_results_and_reads_back_the_rest(world, warehouse_url, after_lines):
    shop, run_id = _setup(warehouse_url, world, products=20)
    world.admin.bulk.fail_next(TENANT, error_code="INTERNAL_SERVER_ERROR", after_lines=after_lines)

    summary = _apply(warehouse_url, run_id)

    assert summary.bulk_status == "FAILED" and summary.state == "APPLIED"
    _check_once_and_audited(warehouse_url, run_id, shop, expected_applied=40)
    # The lines the operation did process count once; the others were read back (at the
    # previewed price) and written synchronously.
    assert summary.write_requests == 1 + (20 - after_lines)


def test_an_expired_upload_starts_nothing_and_the_sync_loop_writes(world, warehouse_url):
    shop, run_id = _setup(warehouse_url, world, products=10)
    world.admin.bulk.expire_next_upload(TENANT)

    summary = _apply(warehouse_url, run_id)

    assert summary.bulk_status == "REFUSED" and world.admin.bulk.started.get(TENANT, 0) == 0
    assert summary.state == "APPLIED" and summary.write_requests == 1 + 10
    _check_once_and_audited(warehouse_url, run_id, shop, expected_applied=20)


def test_one_bulk_mutation_per_shop_a_second_is_refused_and_the_run_writes_synchronously(world, warehouse_url):
    shop, run_id = _setup(warehouse_url, world, products=10)
    world.admin.bulk.line_seconds = 0.05
    client = ShopifyAdminResource().client_for
    other = bulk_connector.start_bulk_price_update(client(_shop_row(warehouse_url)), [bulk_connector.BulkLine(
        "gid://shopify/Product/1", [("gid://shopify/ProductVariant/1", Decimal("1.00"))])] * 40)
    assert isinstance(other, str)  # another app's bulk mutation is running on this shop

    summary = _apply(warehouse_url, run_id)

    assert summary.bulk_status == "REFUSED" and "already in progress" in summary.bulk_message
    _check_once_and_audited(warehouse_url, run_id, shop, expected_applied=20)


def test_user_errors_in_result_lines_fail_their_variants_only(world, warehouse_url):
    shop, run_id = _setup(warehouse_url, world, products=10)
    refused = _targets(warehouse_url, run_id)[5]
    shop.faults.fail_variants([refused.variant_external_id], code="INVALID_INPUT", message="Price is invalid.")

    summary = _apply(warehouse_url, run_id)

    after = {t.id: t for t in _check_once_and_audited(warehouse_url, run_id, shop, expected_applied=19)}
    assert after[refused.id].state == "FAILED" and after[refused.id].error_code == "INVALID_INPUT"
    assert summary.state == "PARTIAL" and summary.write_requests == 1
    with session_scope(warehouse_url) as session:
        assert session.scalars(select(DeadLetter.target_id).where(DeadLetter.run_id == run_id)).all() == [refused.id]


def test_a_lost_poll_is_asked_again_never_the_mutation(world, warehouse_url, monkeypatch):
    shop, run_id = _setup(warehouse_url, world, products=10)
    real = bulk_connector.read_results
    lost = []

    def lose_first_download(*args, **kw):
        if not lost:
            lost.append(1)
            raise bulk_connector.ShopifyAdminError("connection reset while downloading", error_class=bulk_connector.ErrorClass.CONNECTION)
        return real(*args, **kw)

    monkeypatch.setattr(bulk_connector, "read_results", lose_first_download)
    summary = _apply(warehouse_url, run_id)

    assert lost and summary.bulk_status == "COMPLETED" and world.admin.bulk.started[TENANT] == 1 and summary.write_requests == 1
    _check_once_and_audited(warehouse_url, run_id, shop, expected_applied=20)


def test_the_preview_chooses_bulk_for_long_runs():
    assert choose_apply_mode(60.0) == "sync"
    assert choose_apply_mode(2480.0) == "bulk"  # 100,000 variants on Standard


def _shop_row(url):
    from calibr_pipeline.warehouse.models import Shop

    with session_scope(url) as session:
        shop = session.scalars(select(Shop)).first()
        session.expunge(shop)
        return shop

"""Rule runs end to end against the sandbox shop, on SQLite and Postgres."""

from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal

import dagster as dg
import pytest
from sqlalchemy import func, select

from calibr_pipeline.definitions import build_definitions
from calibr_pipeline.defs.pricing.assets import RULE_RUN_PARTITIONS
from calibr_pipeline.defs.pricing.sensors import rules_apply_sensor
from calibr_pipeline.defs.resources import ScraperResource, ShopifyAdminResource, WarehouseResource
from calibr_pipeline.demo import run_job_for_day, seed_fx_rates, seed_tenant_shops
from calibr_pipeline.sandbox.runner import SandboxWorld, TenantSpec
from calibr_pipeline.services.rule_runs import create_run, request_apply_of, save_rule
from calibr_pipeline.warehouse.types import utcnow
from calibr_pipeline.warehouse.engine import session_scope
from calibr_pipeline.warehouse.models import (
    DeadLetter,
    EventLog,
    OutboxDeadLetter,
    OutboxEvent,
    PriceAudit,
    ReconciliationMismatch,
    RuleRun,
    RuleRunMetrics,
    RuleTarget,
)

pytestmark = pytest.mark.integration
TENANT = "pricing-shop"
RAISE_ALL = {"name": "Raise 10%", "transform": {"kind": "percent_change", "value": "10"}, "scope": {"kind": "project"}}


@pytest.fixture
def world():
    with SandboxWorld([TenantSpec(TENANT, "USD", 100, n_competitors=3)], seed=21) as world:
        yield world



@pytest.fixture
def defs(world, warehouse_url, instance):
    defs = build_definitions(
        warehouse=WarehouseResource(url=warehouse_url),
        scraper=ScraperResource(allowed_hosts=list(world.allowed_hosts), backoff_base_s=0.01),
        # Retry waits (2/4/8 s, 16/32/64 s, Retry-After) compressed 1000x.
        shopify_admin=ShopifyAdminResource(write_wait_scale=0.001),
    )
    seed_fx_rates(warehouse_url, world.today() - timedelta(days=1))
    seed_tenant_shops(warehouse_url, world)
    assert run_job_for_day(defs, instance, "catalog_sync", [TENANT], world.today()) == {TENANT: True}
    return defs


def _new_run(url, rule=RAISE_ALL, *, apply_event=False):
    with session_scope(url) as session:
        save_rule(session, project_slug=TENANT, definition=rule, actor="test")
        run = create_run(session, project_slug=TENANT, rule_name=rule["name"], actor="test")
        event_id = request_apply_of(session, run, actor="test") if apply_event else None
        return run.id, event_id


def _execute(defs, instance, job, run_id, **kwargs):
    if not instance.has_dynamic_partition(RULE_RUN_PARTITIONS.name, run_id):
        instance.add_dynamic_partitions(RULE_RUN_PARTITIONS.name, [run_id])
    return defs.resolve_job_def(job).execute_in_process(instance=instance, partition_key=run_id, raise_on_error=False, **kwargs)


def _targets(url, run_id):
    with session_scope(url) as session:
        return session.scalars(select(RuleTarget).where(RuleTarget.run_id == run_id).order_by(RuleTarget.id)).all()


def _run(url, run_id):
    with session_scope(url) as session:
        return session.get(RuleRun, run_id)


def test_preview_writes_nothing_and_explains_every_price(defs, world, warehouse_url, instance):
    shop = world.tenant(TENANT).admin_shop
    run_id, _ = _new_run(warehouse_url)
    result = _execute(defs, instance, "preview_rule", run_id)
    assert result.success
    targets = _targets(warehouse_url, run_id)
    assert len(targets) >= 100 and all(t.action == "write" and t.state == "PENDING" for t in targets)
    for t in targets:
        assert t.to_price == (t.from_price * Decimal("1.1")).quantize(Decimal("0.01"), ROUND_HALF_UP)
        assert Decimal(t.explain["final_price"]) == t.to_price
    assert sum(shop.write_counts().values()) == 0
    metadata = result.asset_materializations_for_node("rule_targets")[0].metadata
    assert metadata["to_write"].value == len(targets) and metadata["estimated_apply_seconds"].value > 0
    assert _run(warehouse_url, run_id).state == "QUEUED"


def test_outbox_event_applies_every_target_once_and_audits_it(defs, world, warehouse_url, instance):
    shop = world.tenant(TENANT).admin_shop
    run_id, event_id = _new_run(warehouse_url, apply_event=True)
    context = dg.build_sensor_context(instance=instance, resources={"warehouse": WarehouseResource(url=warehouse_url)})
    tick = rules_apply_sensor(context)
    (request,) = tick.run_requests
    assert (request.run_key, request.partition_key, request.job_name) == (event_id, run_id, "apply_run")
    assert [list(r.partition_keys) for r in tick.dynamic_partitions_requests] == [[run_id]]

    result = _execute(defs, instance, "apply_run", run_id, tags=request.tags | {"dagster/run_key": event_id})
    assert result.success
    run = _run(warehouse_url, run_id)
    assert run.state == "APPLIED" and run.started_at and run.completed_at
    # The preview's partition keeps the state it was computed in, and an observation after the
    # apply says where the run ended: the UI never shows QUEUED as the latest word on an applied run.
    preview = instance.get_latest_materialization_event(dg.AssetKey("rule_targets")).asset_materialization
    assert preview.partition == run_id and preview.metadata["run_state_at_preview"].value == "QUEUED"
    (observation,) = [r.asset_observation for r in instance.fetch_observations(dg.AssetKey("rule_targets"), limit=10).records]
    assert observation.partition == run_id and observation.metadata["run_state"].value == "APPLIED"
    targets = _targets(warehouse_url, run_id)
    assert len(targets) >= 100 and {t.state for t in targets} == {"APPLIED"}
    live = shop.catalog()
    prices = {v.variant_external_id: v.price for v in live}
    assert all(prices[t.variant_external_id] == t.to_price for t in targets)
    assert set(shop.write_counts().values()) == {1}  # every variant written exactly once
    with session_scope(warehouse_url) as session:
        audits = session.scalars(select(PriceAudit).where(PriceAudit.run_id == run_id)).all()
        assert len(audits) == len(targets) and {a.idempotency_key for a in audits} == {t.idempotency_key for t in targets}
        assert all(a.correlation_id == run.correlation_id and a.actor.startswith("sensor:") for a in audits)
        metrics = session.get(RuleRunMetrics, run_id)
        assert (metrics.targets_applied, metrics.targets_failed, metrics.success_rate) == (len(targets), 0, Decimal("1"))

    # The same event again: the run exists, so the sensor marks it dispatched and launches nothing.
    assert not rules_apply_sensor(context).run_requests
    with session_scope(warehouse_url) as session:
        assert session.get(OutboxEvent, event_id).dispatched_run_key == event_id


def test_transient_failures_are_retried_user_errors_dead_lettered_then_retry_failed(defs, world, warehouse_url, instance):
    shop = world.tenant(TENANT).admin_shop
    run_id, _ = _new_run(warehouse_url)
    assert _execute(defs, instance, "preview_rule", run_id).success
    targets = _targets(warehouse_url, run_id)
    bad = {targets[0].variant_external_id, targets[5].variant_external_id}
    shop.faults.fail_variants(bad, code="INVALID_INPUT", message="Price is invalid")
    shop.faults.http_5xx(next=2)  # the first two requests fail, the connector retries them
    shop.faults.throttle(next=1, retry_after="1.5")
    shop.faults.http_429(next=1, retry_after="0.5")

    result = _execute(defs, instance, "apply_run", run_id)
    assert result.success
    run = _run(warehouse_url, run_id)
    assert run.state == "PARTIAL"
    states = {t.variant_external_id: t.state for t in _targets(warehouse_url, run_id)}
    assert {gid for gid, s in states.items() if s == "FAILED"} == bad
    with session_scope(warehouse_url) as session:
        dlq = session.scalars(select(DeadLetter).where(DeadLetter.run_id == run_id)).all()
        assert {d.error_type for d in dlq} == {"INVALID_INPUT"} and len(dlq) == 2
        metrics = session.get(RuleRunMetrics, run_id)
        assert metrics.retry_count >= 2 and metrics.throttled_count >= 1 and metrics.dlq_size == 2
        report = session.scalars(select(EventLog).where(EventLog.event_type == "automation.dlq.report", EventLog.run_id == run_id)).one()
        assert report.payload["groups"][0]["error_type"] == "INVALID_INPUT" and report.payload["groups"][0]["count"] == 2

    shop.faults.clear()
    retried = _execute(defs, instance, "retry_failed", run_id)
    assert retried.success
    assert _run(warehouse_url, run_id).state == "APPLIED"
    assert set(shop.write_counts().values()) == {1}
    with session_scope(warehouse_url) as session:
        assert session.scalar(select(func.count()).select_from(DeadLetter).where(DeadLetter.resolved_at.is_(None))) == 0
        assert session.scalar(select(func.count()).select_from(PriceAudit).where(PriceAudit.run_id == run_id)) == len(states)


def test_reconciliation_finds_a_lost_write_and_schedules_a_retry(defs, world, warehouse_url, instance):
    # The shop shows the price we replaced: our write did not stick, so a retry may re-apply it.
    # (A price someone else set since is drift: reported, never overwritten - see
    # test_write_path_safety.test_reconcile_retry_reapplies_lost_writes_and_leaves_a_merchants_edit_alone.)
    shop = world.tenant(TENANT).admin_shop
    run_id, _ = _new_run(warehouse_url)
    assert _execute(defs, instance, "apply_run", run_id).success
    edited = _targets(warehouse_url, run_id)[3]
    shop.set_price(edited.variant_external_id, edited.from_price)

    result = _execute(defs, instance, "reconcile_run", run_id, run_config={"ops": {"reconciliation_report": {"config": {"schedule_retry": True}}}})
    assert result.success
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert not checks["shop_matches_applied_prices"].passed
    with session_scope(warehouse_url) as session:
        (mismatch,) = session.scalars(select(ReconciliationMismatch).where(ReconciliationMismatch.run_id == run_id)).all()
        assert (mismatch.sku, mismatch.expected_price, mismatch.actual_price, mismatch.kind) == (edited.sku, edited.to_price, edited.from_price, "lost_write")
        assert mismatch.difference == edited.from_price - edited.to_price
        event = session.scalars(select(EventLog).where(EventLog.event_type == "automation.reconciliation.mismatch")).one()
        assert event.payload["expected"] == str(edited.to_price) and event.payload["actual"] == str(edited.from_price)
        assert event.payload["kind"] == "lost_write"
        retry = session.get(RuleRun, mismatch.retry_run_id)
        assert retry.kind == "reconcile_retry" and retry.state == "QUEUED"
        assert session.scalars(select(OutboxEvent).where(OutboxEvent.event_type == "job.rules.apply", OutboxEvent.dispatched_at.is_(None))).one().payload["run_id"] == retry.id

    assert _execute(defs, instance, "apply_run", retry.id).success
    assert {v.variant_external_id: v.price for v in shop.catalog()}[edited.variant_external_id] == edited.to_price


def test_revert_restores_prices_and_skips_stale_variants(defs, world, warehouse_url, instance):
    shop = world.tenant(TENANT).admin_shop
    run_id, _ = _new_run(warehouse_url)
    assert _execute(defs, instance, "apply_run", run_id).success
    applied = _targets(warehouse_url, run_id)
    stale = applied[0]
    shop.set_price(stale.variant_external_id, Decimal("9.99"))  # merchant changed it since

    with session_scope(warehouse_url) as session:
        revert = create_run(session, project_slug=TENANT, actor="test", kind="revert", source_run_id=run_id)
        revert_id = revert.id
    assert _execute(defs, instance, "revert_run", revert_id).success
    prices = {v.variant_external_id: v.price for v in shop.catalog()}
    assert prices[stale.variant_external_id] == Decimal("9.99")
    assert all(prices[t.variant_external_id] == t.from_price for t in applied[1:])
    targets = {t.variant_external_id: t for t in _targets(warehouse_url, revert_id)}
    assert targets[stale.variant_external_id].proposal_status == "stale" and targets[stale.variant_external_id].state is None
    with session_scope(warehouse_url) as session:
        kinds = dict(session.execute(select(PriceAudit.event_type, func.count()).where(PriceAudit.run_id == revert_id).group_by(PriceAudit.event_type)).all())
        assert kinds == {"price.reverted": len(applied) - 1}


def test_malformed_apply_events_are_dead_lettered(defs, world, warehouse_url, instance):
    with session_scope(warehouse_url) as session:
        session.add(OutboxEvent(id="bad-1", tenant_id=None, event_type="job.rules.apply", payload={"run_id": 42, "kind": "apply"}))
        session.add(OutboxEvent(id="bad-2", tenant_id=None, event_type="job.rules.apply", payload={"run_id": "no-such-run", "kind": "apply"}))
    context = dg.build_sensor_context(instance=instance, resources={"warehouse": WarehouseResource(url=warehouse_url)})
    assert not rules_apply_sensor(context).run_requests
    with session_scope(warehouse_url) as session:
        reasons = dict(session.execute(select(OutboxDeadLetter.outbox_id, OutboxDeadLetter.reason)).all())
    assert reasons == {
        "bad-1": "job.rules.apply v1 payload invalid at $.run_id: 42 is not of type 'string' [schema path: #/properties/run_id/type]",
        "bad-2": "rule run no-such-run does not exist",
    }


APPLY_IN_CHILD = """
import sys
from calibr_pipeline.defs.resources import ShopifyAdminResource
from calibr_pipeline.services.price_apply import apply_run
apply_run(sys.argv[1], sys.argv[2], ShopifyAdminResource().client_for, actor="killed-process")
"""


def test_apply_killed_mid_run_resumes_without_writing_twice(defs, world, warehouse_url, instance):
    import os
    import signal
    import subprocess
    import sys
    import time

    shop = world.tenant(TENANT).admin_shop
    run_id, _ = _new_run(warehouse_url)
    assert _execute(defs, instance, "preview_rule", run_id).success
    targets = _targets(warehouse_url, run_id)
    shop.faults.slow(rate=1.0, delay=0.15)  # slow enough to kill it half-way, not a timeout

    lease_seconds = 3.0
    child = subprocess.Popen(
        [sys.executable, "-c", APPLY_IN_CHILD, warehouse_url, run_id], start_new_session=True,
        env={**os.environ, "CALIBR_APPLY_LEASE_SECONDS": str(lease_seconds)},
    )
    try:
        deadline = time.monotonic() + 60
        while sum(shop.write_counts().values()) < 10:
            assert child.poll() is None, "the apply finished before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
    time.sleep(0.5)  # let a request in flight at the kill finish on the server side
    written_before = sum(shop.write_counts().values())
    assert 10 <= written_before < len(targets)
    assert _run(warehouse_url, run_id).state == "APPLYING"

    shop.faults.clear()
    # While the dead writer's lease runs, the run is taken: a second writer does nothing.
    early = _execute(defs, instance, "apply_run", run_id)
    assert early.success and "already being applied" in early.asset_materializations_for_node("applied_prices")[0].metadata["taken_by_another_writer"].value
    assert sum(shop.write_counts().values()) == written_before
    lease_end = _run(warehouse_url, run_id).lease_expires_at
    time.sleep(max(0.0, (lease_end - utcnow()).total_seconds()) + 0.2)
    result = _execute(defs, instance, "apply_run", run_id)
    assert result.success and _run(warehouse_url, run_id).state == "APPLIED"
    counts = shop.write_counts()
    assert set(counts.values()) == {1} and len(counts) == len(targets)  # no variant written twice
    prices = {v.variant_external_id: v.price for v in shop.catalog()}
    assert all(prices[t.variant_external_id] == t.to_price for t in targets)
    with session_scope(warehouse_url) as session:
        audits = session.scalars(select(PriceAudit).where(PriceAudit.run_id == run_id)).all()
    assert len(audits) == len(targets) == len({a.idempotency_key for a in audits})
    metadata = result.asset_materializations_for_node("applied_prices")[0].metadata
    assert metadata["write_requests"].value < len({t.product_external_id for t in targets})  # only what was left


def test_hourly_dlq_drain_retries_only_transient_dead_letters(defs, world, warehouse_url, instance):
    from calibr_pipeline.defs.pricing.schedules import hourly_dlq_drain

    shop = world.tenant(TENANT).admin_shop
    run_id, _ = _new_run(warehouse_url)
    assert _execute(defs, instance, "preview_rule", run_id).success
    targets = _targets(warehouse_url, run_id)
    shop.faults.fail_variants([targets[0].variant_external_id], code="INVALID_INPUT")
    failing = min(t.product_external_id for t in targets if t.product_external_id != targets[0].product_external_id)
    # That product's write fails all its attempts (reads pass).
    shop.faults.fail_mutations(variants=[t.variant_external_id for t in targets if t.product_external_id == failing])
    assert _execute(defs, instance, "apply_run", run_id).success
    with session_scope(warehouse_url) as session:
        dead = dict(session.execute(select(DeadLetter.target_id, DeadLetter.error_type).where(DeadLetter.run_id == run_id)).all())
    transient = sorted(t for t, kind in dead.items() if kind == "http_5xx")
    assert transient and "INVALID_INPUT" in dead.values()

    from datetime import datetime, timezone

    context = dg.build_schedule_context(
        instance=instance, resources={"warehouse": WarehouseResource(url=warehouse_url)}, scheduled_execution_time=datetime.now(timezone.utc)
    )
    (request,) = hourly_dlq_drain(context)
    assert request.partition_key == run_id
    assert request.run_config["ops"]["applied_prices"]["config"]["target_ids"] == transient

    shop.faults.clear()
    shop.faults.fail_variants([targets[0].variant_external_id], code="INVALID_INPUT")
    assert _execute(defs, instance, "retry_failed", run_id, run_config=request.run_config).success
    with session_scope(warehouse_url) as session:
        left = dict(session.execute(select(DeadLetter.target_id, DeadLetter.error_type).where(DeadLetter.run_id == run_id, DeadLetter.resolved_at.is_(None))).all())
    assert list(left.values()) == ["INVALID_INPUT"]


def test_audit_views_and_paginated_audit_query(defs, world, warehouse_url, instance):
    from sqlalchemy import text

    from calibr_pipeline.services.audit import AuditFilters, query_audit
    from calibr_pipeline.warehouse.engine import get_engine

    run_id, _ = _new_run(warehouse_url)
    assert _execute(defs, instance, "apply_run", run_id).success
    targets = _targets(warehouse_url, run_id)
    with get_engine(warehouse_url).connect() as connection:
        audited = connection.execute(text("SELECT sku, to_price, explain FROM v_price_audit WHERE run_id = :r ORDER BY sku"), {"r": run_id}).all()
        run_row = connection.execute(text("SELECT state, targets_applied FROM v_rule_runs WHERE run_id = :r"), {"r": run_id}).one()
        kinds = {row[0] for row in connection.execute(text("SELECT event_type FROM v_audit WHERE run_id = :r"), {"r": run_id})}
    assert len(audited) == len(targets) and tuple(run_row) == ("APPLIED", len(targets))
    assert {"automation.run.queued", "automation.run.applying", "price.applied", "automation.run.completed"} <= kinds

    seen, cursor = [], None
    with session_scope(warehouse_url) as session:
        while True:
            page, cursor = query_audit(session, AuditFilters(project=TENANT, run_id=run_id, event_types=("price.applied",)), limit=7, cursor=cursor)
            seen += [row["payload"]["sku"] for row in page]
            if cursor is None:
                break
    assert sorted(seen) == sorted(t.sku for t in targets) and len(seen) == len(set(seen))

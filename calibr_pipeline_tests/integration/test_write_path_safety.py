"""The write path's promise, scenario by scenario (issue: write-path safety).

A price reaches the shop only if it is safe at the moment it is written: whatever happened
since the preview (cost, MAP, a hand-set price, age), whatever else runs at the same time
(a second writer, the DLQ drain after a revert), and whatever the network did to the answer.
Each test below is one scenario that the runner got wrong before; all run on SQLite and
PostgreSQL against the sandbox shop.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from decimal import Decimal

import dagster as dg
import pytest
from sqlalchemy import func, select

from calibr_pipeline.connectors.shopify_admin.writes import read_variant_prices
from calibr_pipeline.defs.pricing.sensors import rules_apply_sensor, stuck_runs_sensor
from calibr_pipeline.defs.resources import AlertsResource, ShopifyAdminResource, WarehouseResource
from calibr_pipeline.services import price_apply, reconciliation
from calibr_pipeline.services.price_apply import PreviewExpired, RunTaken, apply_run
from calibr_pipeline.services.rule_runs import compute_targets, create_run, request_apply_of, save_rule
from calibr_pipeline.warehouse.engine import session_scope
from calibr_pipeline.warehouse.models import DeadLetter, EventLog, OutboxEvent, PriceAudit, Project, RuleRun, RuleTarget, Variant
from calibr_pipeline.warehouse.tenancy import InvalidInputError, project_by_slug, upsert_shop
from calibr_pipeline.warehouse.types import utcnow
from calibr_pipeline_tests.integration.test_pricing import (  # noqa: F401  (fixtures)
    TENANT,
    _execute,
    _new_run,
    _run,
    _targets,
    defs,
    world,
)

pytestmark = pytest.mark.integration

GUARDED = {
    "name": "Down 5% with guardrails",
    "transform": {"kind": "percent_change", "value": "-5"},
    "scope": {"kind": "project"},
    "guardrails": {"min_margin_pct": "20", "max_change_pct": "10"},
}
FAST = {"sleep": lambda seconds: None, "retry_delay": lambda attempts: 0.0}


def _client_for(**kw):
    return ShopifyAdminResource(write_wait_scale=0.001, **kw).client_for


def _preview(url, rule=GUARDED) -> str:
    run_id, _ = _new_run(url, rule)
    with session_scope(url) as session:
        compute_targets(session, run_id)
    return run_id


def _apply(url, run_id, **kw):
    client_for = kw.pop("client_for", None) or _client_for()
    return apply_run(url, run_id, client_for, actor="test", **{**FAST, **kw})


def _audits(url, run_id):
    with session_scope(url) as session:
        return session.scalars(select(PriceAudit).where(PriceAudit.run_id == run_id)).all()


def _by_product(targets):
    products: dict[str, list] = {}
    for t in targets:
        products.setdefault(t.product_external_id, []).append(t)
    return products


# -- 1. stale preview --------------------------------------------------------------------------------


def test_write_time_guardrails_use_the_cost_and_price_of_now_not_of_the_preview(defs, world, warehouse_url):
    shop = world.tenant(TENANT).admin_shop
    run_id = _preview(warehouse_url)
    targets = [t for t in _targets(warehouse_url, run_id) if t.action == "write"]
    costly, hand_set, *_ = targets
    # After the preview: the supplier cost of one SKU rises (its margin floor is now above the
    # target), and the merchant sets another SKU's price by hand.
    with shop.lock:
        shop.find_variant(costly.variant_external_id).cost = costly.from_price
    shop.set_price(hand_set.variant_external_id, Decimal("999.00"))

    summary = _apply(warehouse_url, run_id)

    after = {t.id: t for t in _targets(warehouse_url, run_id)}
    assert after[costly.id].state == "SKIPPED_GUARDRAIL"
    check = after[costly.id].explain["write_time_check"]
    assert check["bound"]["name"] == "margin_floor" and Decimal(check["bound"]["limit"]) == costly.from_price * Decimal("1.2")
    assert after[hand_set.id].state == "SKIPPED_STALE" and "999.00" in after[hand_set.id].error
    assert shop.price_of(hand_set.variant_external_id) == Decimal("999.00")  # never overwritten
    assert shop.price_of(costly.variant_external_id) == costly.from_price
    assert costly.variant_external_id not in shop.write_counts() and hand_set.variant_external_id not in shop.write_counts()
    others = [t for t in targets if t.id not in (costly.id, hand_set.id)]
    assert all(after[t.id].state == "APPLIED" for t in others)
    assert summary.state == "APPLIED" and summary.skipped == {"SKIPPED_GUARDRAIL": 1, "SKIPPED_STALE": 1}
    with session_scope(warehouse_url) as session:
        skipped = session.scalars(select(EventLog).where(EventLog.run_id == run_id, EventLog.event_type == "price.skipped")).all()
    assert sorted(e.payload["target_id"] for e in skipped) == sorted([costly.id, hand_set.id])
    assert len(_audits(warehouse_url, run_id)) == len(others)  # audits: exactly the writes


def test_max_change_is_measured_from_the_price_at_write_time(defs, world, warehouse_url):
    shop = world.tenant(TENANT).admin_shop
    run_id = _preview(warehouse_url)
    target = next(t for t in _targets(warehouse_url, run_id) if t.action == "write")
    # The preview's from_price is still the shop price, but the write-time band is checked too:
    # a rule whose band was computed from a price long gone cannot sneak through.
    with session_scope(warehouse_url) as session:
        row = session.get(RuleTarget, target.id)
        row.to_price = (target.from_price * Decimal("0.5")).quantize(Decimal("0.01"))  # a 50 % cut: outside max_change 10 %
    _apply(warehouse_url, run_id)
    after = next(t for t in _targets(warehouse_url, run_id) if t.id == target.id)
    assert after.state == "SKIPPED_GUARDRAIL" and after.explain["write_time_check"]["bound"]["name"] in ("max_change_low", "margin_floor")
    assert shop.price_of(target.variant_external_id) == target.from_price


def test_an_expired_preview_is_refused_until_it_is_previewed_again(defs, world, warehouse_url):
    shop = world.tenant(TENANT).admin_shop
    run_id = _preview(warehouse_url)
    with session_scope(warehouse_url) as session:
        session.get(RuleRun, run_id).previewed_at = utcnow() - timedelta(hours=25)
    with pytest.raises(PreviewExpired, match="previews expire after 24 h"):
        _apply(warehouse_url, run_id)
    with session_scope(warehouse_url) as session, pytest.raises(PreviewExpired):
        request_apply_of(session, session.get(RuleRun, run_id), actor="test")
    assert sum(shop.write_counts().values()) == 0 and _run(warehouse_url, run_id).state == "QUEUED"
    with session_scope(warehouse_url) as session:
        compute_targets(session, run_id, refresh=True)
    assert _apply(warehouse_url, run_id).state == "APPLIED"


# -- 2. revert and the DLQ drain -----------------------------------------------------------------------


def _partial_run(world, url):
    """A run whose first product failed every attempt (the shop refused the writes, reads worked)."""
    shop = world.tenant(TENANT).admin_shop
    run_id = _preview(url)
    targets = [t for t in _targets(url, run_id) if t.action == "write"]
    failing = sorted(_by_product(targets))[0]
    failing_gids = [t.variant_external_id for t in targets if t.product_external_id == failing]
    shop.faults.fail_mutations(variants=failing_gids)
    summary = _apply(url, run_id)
    shop.faults.clear()
    assert summary.state == "PARTIAL"
    return run_id, failing_gids


def test_the_dlq_drain_never_undoes_a_revert(defs, world, warehouse_url):
    shop = world.tenant(TENANT).admin_shop
    run_id, failing_gids = _partial_run(world, warehouse_url)
    with session_scope(warehouse_url) as session:
        letters = session.scalars(select(DeadLetter).where(DeadLetter.run_id == run_id)).all()
        assert letters and {d.error_type for d in letters} == {"http_5xx"} and {d.attempts for d in letters} == {3}
        project = session.get(Project, session.get(RuleRun, run_id).project_id).slug
        revert = create_run(session, project_slug=project, actor="test", kind="revert", source_run_id=run_id)
        revert_id = revert.id
    _preview_replay(warehouse_url, revert_id, run_id)
    assert _apply(warehouse_url, revert_id).state == "APPLIED"
    before = dict(shop.write_counts())

    result = reconciliation.drain_dead_letters(warehouse_url, _client_for(), actor="dlq-drain")

    assert result["retry"] == {} and {c["resolution"] for c in result["close"]} == {"reverted"}
    assert dict(shop.write_counts()) == before  # nothing re-applied
    assert _run(warehouse_url, run_id).state == "PARTIAL"  # the source run is not flipped to APPLIED
    with session_scope(warehouse_url) as session:
        open_letters = session.scalar(select(func.count()).select_from(DeadLetter).where(DeadLetter.run_id == run_id, DeadLetter.resolved_at.is_(None)))
    assert open_letters == 0
    with pytest.raises(Exception, match="was reverted"):
        with session_scope(warehouse_url) as session:
            price_apply.retry_failed(session, run_id, actor="test")


def _preview_replay(url, run_id, source_run_id):
    """The preview of a revert / re-apply run: it starts from what the shop shows now."""
    client = _client_for()(_shop_row(url))
    try:
        prices = read_variant_prices(client, [t.variant_external_id for t in _targets(url, source_run_id)])
    finally:
        client.close()
    with session_scope(url) as session:
        compute_targets(session, run_id, shop_prices=prices)


def _shop_row(url):
    from calibr_pipeline.warehouse.models import Shop

    with session_scope(url) as session:
        shop = session.scalar(select(Shop).where(Shop.platform == "shopify"))
        session.expunge(shop)
        return shop


def test_the_dlq_drain_gives_up_on_old_and_often_retried_letters(defs, world, warehouse_url):
    shop = world.tenant(TENANT).admin_shop
    run_id, failing_gids = _partial_run(world, warehouse_url)
    shop.faults.fail_mutations(variants=failing_gids)  # the shop still refuses them
    dry = reconciliation.drain_dead_letters(warehouse_url, _client_for(), actor="dlq-drain", dry_run=True)
    assert dry["retry"] == {run_id: sorted(dry["retry"][run_id])} and dry["close"] == []
    for attempt in range(1, 4):
        result = reconciliation.drain_dead_letters(warehouse_url, _client_for(), actor="dlq-drain", sleep=lambda s: None)
        assert result["runs"] == {run_id: "PARTIAL"}, attempt
    with session_scope(warehouse_url) as session:
        assert {d.retry_count for d in session.scalars(select(DeadLetter).where(DeadLetter.run_id == run_id))} == {3}
    final = reconciliation.drain_dead_letters(warehouse_url, _client_for(), actor="dlq-drain")
    assert final["retry"] == {} and {c["resolution"] for c in final["close"]} == {"exhausted"}  # not forever
    # An old letter is closed as expired rather than retried with a days-old price.
    run2, _ = _partial_run(world, warehouse_url)
    with session_scope(warehouse_url) as session:
        for letter in session.scalars(select(DeadLetter).where(DeadLetter.run_id == run2)):
            letter.created_at = utcnow() - timedelta(days=4)
        plan = reconciliation.plan_dlq_drain(session)
    assert run2 not in plan.retry and {r for _, r, _ in plan.close} >= {"expired"}


def test_a_newer_run_supersedes_an_older_runs_dead_letters(defs, world, warehouse_url):
    shop = world.tenant(TENANT).admin_shop
    run_id, failing_gids = _partial_run(world, warehouse_url)
    newer = _preview(warehouse_url, {**GUARDED, "name": "Newer", "transform": {"kind": "percent_change", "value": "-3"}})
    assert _apply(warehouse_url, newer).state == "APPLIED"
    prices = {gid: shop.price_of(gid) for gid in failing_gids}
    result = reconciliation.drain_dead_letters(warehouse_url, _client_for(), actor="dlq-drain")
    assert result["retry"] == {} and {c["resolution"] for c in result["close"]} == {"superseded"}
    assert {gid: shop.price_of(gid) for gid in failing_gids} == prices


# -- 3. one writer -----------------------------------------------------------------------------------


def test_two_writers_on_one_run_write_nothing_twice(defs, world, warehouse_url):
    shop = world.tenant(TENANT).admin_shop
    run_id = _preview(warehouse_url)
    writes = [t for t in _targets(warehouse_url, run_id) if t.action == "write"]
    shop.faults.slow(rate=1.0, delay=0.02)  # keep the first writer busy
    outcomes: dict[str, object] = {}

    def writer(name):
        try:
            outcomes[name] = _apply(warehouse_url, run_id).state
        except RunTaken as exc:
            outcomes[name] = exc

    first = threading.Thread(target=writer, args=("first",))
    first.start()
    deadline = time.monotonic() + 30
    while not shop.write_counts() and time.monotonic() < deadline:
        time.sleep(0.01)
    writer("second")
    first.join(timeout=120)
    shop.faults.clear()
    assert outcomes["first"] == "APPLIED"
    assert isinstance(outcomes["second"], RunTaken) and "already being applied" in str(outcomes["second"])
    counts = shop.write_counts()
    assert set(counts.values()) == {1} and len(counts) == len(writes)
    assert len(_audits(warehouse_url, run_id)) == len(writes)


CHILD_WRITER = """
import sys
from calibr_pipeline.defs.resources import ShopifyAdminResource
from calibr_pipeline.services.price_apply import RunTaken, apply_run
try:
    print(apply_run(sys.argv[1], sys.argv[2], ShopifyAdminResource().client_for, actor=sys.argv[3]).state, flush=True)
except RunTaken as exc:
    print(f"TAKEN {exc}", flush=True)
    sys.exit(3)
"""


def test_two_os_processes_applying_one_run_write_nothing_twice(defs, world, warehouse_url):
    shop = world.tenant(TENANT).admin_shop
    run_id = _preview(warehouse_url)
    writes = [t for t in _targets(warehouse_url, run_id) if t.action == "write"]
    shop.faults.slow(rate=1.0, delay=0.02)
    children = [
        subprocess.Popen([sys.executable, "-c", CHILD_WRITER, warehouse_url, run_id, f"proc-{n}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for n in (1, 2)
    ]
    results = [(c.wait(timeout=180), c.stdout.read().strip(), c.stderr.read()) for c in children]
    shop.faults.clear()
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 3], results
    assert any(out == "APPLIED" for _, out, _ in results)
    assert any(out.startswith("TAKEN") and "already being applied" in out for _, out, _ in results)
    counts = shop.write_counts()
    assert set(counts.values()) == {1} and len(counts) == len(writes)  # zero double writes
    assert len(_audits(warehouse_url, run_id)) == len(writes)


def test_the_apply_sensor_collapses_events_and_skips_runs_being_applied(defs, world, warehouse_url, instance):
    run_id, first_event = _new_run(warehouse_url, apply_event=True)
    with session_scope(warehouse_url) as session:
        run = session.get(RuleRun, run_id)
        request_apply_of(session, run, actor="test")
        request_apply_of(session, run, actor="test")
    context = dg.build_sensor_context(instance=instance, resources={"warehouse": WarehouseResource(url=warehouse_url)})
    tick = rules_apply_sensor(context)
    (request,) = tick.run_requests  # three events, one run
    assert request.run_key == first_event and request.tags["calibr/shop"].startswith("shop-")
    with session_scope(warehouse_url) as session:
        pending = session.scalar(select(func.count()).select_from(OutboxEvent).where(OutboxEvent.dispatched_at.is_(None), OutboxEvent.event_type == "job.rules.apply"))
    assert pending == 1  # only the event whose run is requested waits for its run to exist

    # A run being applied (live lease) gets no second run from a new event.
    run2, _ = _new_run(warehouse_url, {**GUARDED, "name": "Other"}, apply_event=True)
    with session_scope(warehouse_url) as session:
        row = session.get(RuleRun, run2)
        row.state, row.lease_owner, row.lease_expires_at = "APPLYING", "someone", utcnow() + timedelta(minutes=5)
    tick = rules_apply_sensor(dg.build_sensor_context(instance=instance, resources={"warehouse": WarehouseResource(url=warehouse_url)}))
    assert all(r.partition_key != run2 for r in tick.run_requests)


def test_a_project_refuses_a_second_shopify_shop(defs, warehouse_url):
    with session_scope(warehouse_url) as session, pytest.raises(InvalidInputError, match="already has the Shopify shop"):
        upsert_shop(session, project_by_slug(session, TENANT), "second", platform="shopify", admin_endpoint="https://x.example", currency="USD")


# -- 4. ambiguous outcomes ------------------------------------------------------------------------------


def test_a_write_whose_answer_was_lost_is_read_back_and_audited_once(defs, world, warehouse_url):
    # Each way of losing the answer after the shop applied the write, one run each (the
    # rule alternates direction so that every run changes every price).
    shop = world.tenant(TENANT).admin_shop
    for n, mode in enumerate(["503", "slow", "reset", "cut", "data_and_errors"]):
        writes_before = dict(shop.write_counts())
        run_id = _preview(warehouse_url, {**GUARDED, "name": f"Lost {mode}", "transform": {"kind": "percent_change", "value": "-4" if n % 2 == 0 else "4"}})
        writes = [t for t in _targets(warehouse_url, run_id) if t.action == "write"]
        shop.faults.lose_answer(next=2, mode=mode, delay=0.8)

        summary = _apply(warehouse_url, run_id, client_for=_client_for(timeout_s=0.4))

        assert summary.state == "APPLIED" and summary.recovered >= 1, (mode, summary)
        counts = shop.write_counts()
        new = {gid: counts[gid] - writes_before.get(gid, 0) for gid in counts if counts[gid] != writes_before.get(gid, 0)}
        assert set(new.values()) == {1} and len(new) == len(writes), mode  # the lost writes were not resent
        audits = _audits(warehouse_url, run_id)
        assert len(audits) == len(writes) == len({a.idempotency_key for a in audits}), mode
        assert sum(1 for a in audits if a.note and "read back" in a.note) >= 1, mode
        with session_scope(warehouse_url) as session:
            mirrored = dict(session.execute(select(Variant.external_id, Variant.price)).all())
        assert all(mirrored[t.variant_external_id] == t.to_price == shop.price_of(t.variant_external_id) for t in writes), mode
        report = reconciliation.reconcile_run(warehouse_url, run_id, _client_for(), actor="test")
        assert report.mismatches == [], mode


def test_a_failed_target_whose_write_landed_is_confirmed_by_reconciliation_and_reverted(defs, world, warehouse_url):
    shop = world.tenant(TENANT).admin_shop
    run_id = _preview(warehouse_url)
    writes = [t for t in _targets(warehouse_url, run_id) if t.action == "write"]
    victim = writes[0]
    # Simulate the worst case: the write landed, every read-back failed and the target was
    # given up as FAILED after a lost answer (the shop shows the new price, we have no audit).
    assert _apply(warehouse_url, run_id).state == "APPLIED"
    with session_scope(warehouse_url) as session:
        row = session.get(RuleTarget, victim.id)
        row.state, row.error_code = "FAILED", "timeout"
        session.query(PriceAudit).filter(PriceAudit.target_id == victim.id).delete()
        session.get(RuleRun, run_id).state = "PARTIAL"
    report = reconciliation.reconcile_run(warehouse_url, run_id, _client_for(), actor="test")
    assert report.confirmed == 1 and report.mismatches == []
    after = next(t for t in _targets(warehouse_url, run_id) if t.id == victim.id)
    assert after.state == "APPLIED" and len([a for a in _audits(warehouse_url, run_id) if a.target_id == victim.id]) == 1


# -- 5. honest accounting, reconcile-retry, stuck runs ------------------------------------------------------


def test_a_rate_limit_storm_puts_the_target_back_to_pending_then_it_applies(defs, world, warehouse_url):
    shop = world.tenant(TENANT).admin_shop
    run_id = _preview(warehouse_url)
    writes = [t for t in _targets(warehouse_url, run_id) if t.action == "write"]
    first = min(_by_product(writes))
    shop.faults.fail_mutations(next=4, status=429)  # the first write call's whole 429 budget
    summary = _apply(warehouse_url, run_id)
    assert summary.state == "APPLIED"
    attempts = {t.attempts for t in _targets(warehouse_url, run_id) if t.product_external_id == first}
    assert attempts == {2}  # one attempt that gave up on 429s (back to PENDING), one that landed
    assert set(shop.write_counts().values()) == {1} and len(shop.write_counts()) == len(writes)


def test_attempts_are_counted_one_per_real_attempt_and_failed_only_after_the_last(defs, world, warehouse_url):
    shop = world.tenant(TENANT).admin_shop
    run_id = _preview(warehouse_url)
    writes = [t for t in _targets(warehouse_url, run_id) if t.action == "write"]
    first = min(_by_product(writes))
    shop.faults.fail_mutations(variants=[t.variant_external_id for t in writes if t.product_external_id == first], status=429)
    assert _apply(warehouse_url, run_id).state == "PARTIAL"
    failed = [t for t in _targets(warehouse_url, run_id) if t.product_external_id == first]
    assert {(t.state, t.attempts, t.error_code) for t in failed} == {("FAILED", 3, "rate_limited")}
    with session_scope(warehouse_url) as session:
        letters = session.scalars(select(DeadLetter).where(DeadLetter.run_id == run_id)).all()
    assert {(d.attempts, d.error_type) for d in letters} == {(3, "rate_limited")} and len(letters) == len(failed)


def test_reconcile_retry_reapplies_lost_writes_and_leaves_a_merchants_edit_alone(defs, world, warehouse_url):
    shop = world.tenant(TENANT).admin_shop
    run_id = _preview(warehouse_url)
    assert _apply(warehouse_url, run_id).state == "APPLIED"
    lost, edited, *_ = [t for t in _targets(warehouse_url, run_id) if t.action == "write"]
    shop.set_price(lost.variant_external_id, lost.from_price)  # our write "did not stick"
    shop.set_price(edited.variant_external_id, Decimal("55.37"))  # the merchant's later edit
    report = reconciliation.reconcile_run(warehouse_url, run_id, _client_for(), actor="test", schedule_retry=True)
    kinds = {m.target_id: m.kind for m in report.mismatches}
    assert kinds == {lost.id: "lost_write", edited.id: "drift"}
    _preview_replay(warehouse_url, report.retry_run_id, run_id)
    retry_targets = [t for t in _targets(warehouse_url, report.retry_run_id) if t.action == "write"]
    assert [t.variant_external_id for t in retry_targets] == [lost.variant_external_id]
    assert _apply(warehouse_url, report.retry_run_id).state == "APPLIED"
    assert shop.price_of(lost.variant_external_id) == lost.to_price
    assert shop.price_of(edited.variant_external_id) == Decimal("55.37")  # drift is reported, never overwritten


def test_stuck_runs_are_resumed_once_then_alerted(defs, world, warehouse_url, instance):
    run_id = _preview(warehouse_url)
    with session_scope(warehouse_url) as session:
        row = session.get(RuleRun, run_id)
        row.state, row.lease_owner, row.lease_expires_at = "APPLYING", "dead-writer", utcnow() - timedelta(minutes=1)
    sent = []

    class RecordingAlerts(AlertsResource):
        def send(self, alert, warehouse, tenant_id=None):
            sent.append(alert)
            return []

    resources = {"warehouse": WarehouseResource(url=warehouse_url), "alerts": RecordingAlerts()}
    first = stuck_runs_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    (request,) = first
    assert request.partition_key == run_id and request.run_key == f"resume:{run_id}:1" and sent == []
    second = stuck_runs_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    assert isinstance(second, dg.SkipReason) and len(sent) == 1 and run_id in sent[0].title
    third = stuck_runs_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    assert isinstance(third, dg.SkipReason) and len(sent) == 1  # alerted once
    # The obvious command resumes it.
    assert _apply(warehouse_url, run_id).state == "APPLIED"


# -- 6. at scale: constant SQL per product write ----------------------------------------------------


def test_sql_statements_per_product_write_do_not_grow_with_its_variants(tmp_path):
    from sqlalchemy import event

    from calibr_pipeline.warehouse.engine import upgrade_to_head

    from calibr_pipeline.sandbox.runner import SandboxWorld
    from calibr_pipeline.warehouse.catalog_store import upsert_catalog
    from calibr_pipeline.warehouse.engine import get_engine
    from calibr_pipeline.warehouse.models import Shop
    from calibr_pipeline_tests.benchmarks.bench_apply_memory import UNLIMITED
    from calibr_pipeline_tests.benchmarks.bench_rate_floor import RULE, TENANT as BENCH_TENANT, build_catalog, seed_shop

    per_product: dict[int, float] = {}
    for variants in (1, 8):
        warehouse_url = f"sqlite:///{tmp_path / f'w{variants}.db'}"
        upgrade_to_head(warehouse_url)
        with SandboxWorld([], seed=3) as world:
            shop = world.admin.add_shop(BENCH_TENANT, build_catalog(30, variants), preset=UNLIMITED, currency="USD")
            shop_id = seed_shop(warehouse_url, world, shop)
            with session_scope(warehouse_url) as session:
                upsert_catalog(session, session.get(Shop, shop_id), shop.catalog())
                save_rule(session, project_slug=BENCH_TENANT, definition=RULE, actor="test")
                run_id = create_run(session, project_slug=BENCH_TENANT, rule_name=RULE["name"], actor="test").id
            with session_scope(warehouse_url) as session:
                compute_targets(session, run_id)
            statements = [0]

            def count(*_args, **_kwargs):
                statements[0] += 1

            event.listen(get_engine(warehouse_url), "before_cursor_execute", count)
            try:
                summary = _apply(warehouse_url, run_id)
            finally:
                event.remove(get_engine(warehouse_url), "before_cursor_execute", count)
            assert summary.state == "APPLIED" and summary.applied == 30 * variants
            per_product[variants] = statements[0] / summary.write_requests
    # 8 variants per product cost the same statements per write as 1 (within a statement or two
    # of page bookkeeping): O(1) per product, not per target.
    assert per_product[8] <= per_product[1] + 2, per_product
    assert per_product[1] < 15, per_product


def test_a_disabled_rules_preview_is_never_applied(defs, world, warehouse_url):
    shop = world.tenant(TENANT).admin_shop
    run_id = _preview(warehouse_url)
    from calibr_pipeline.warehouse.models import PricingRule

    with session_scope(warehouse_url) as session:
        session.get(PricingRule, session.get(RuleRun, run_id).rule_id).active = False
    with pytest.raises(Exception, match="is disabled"):
        _apply(warehouse_url, run_id)
    with session_scope(warehouse_url) as session, pytest.raises(Exception, match="is disabled"):
        request_apply_of(session, session.get(RuleRun, run_id), actor="test")
    assert sum(shop.write_counts().values()) == 0


def test_cli_apply_wait_exits_non_zero_for_a_partial_run_and_two_for_a_run_being_applied(defs, world, warehouse_url, tmp_path, monkeypatch, capsys):
    import shutil
    from pathlib import Path

    from calibr_pipeline import cli

    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(Path(cli.__file__).resolve().parents[1] / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    shop = world.tenant(TENANT).admin_shop
    run_id = _preview(warehouse_url)
    refused = next(t for t in _targets(warehouse_url, run_id) if t.action == "write")
    shop.faults.fail_variants([refused.variant_external_id], code="INVALID_INPUT")

    code = cli.main(["--warehouse-url", warehouse_url, "runs", "apply", run_id, "--wait"])
    err = capsys.readouterr().err
    assert code == 1 and f"run {run_id} ended PARTIAL: 1 target(s) failed" in err

    other = _preview(warehouse_url, {**GUARDED, "name": "Busy"})
    with session_scope(warehouse_url) as session:
        row = session.get(RuleRun, other)
        row.state, row.lease_owner, row.lease_expires_at = "APPLYING", "someone-else", utcnow() + timedelta(minutes=5)
    code = cli.main(["--warehouse-url", warehouse_url, "runs", "apply", other, "--wait"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "is being applied right now by someone-else" in err[0]

"""A stateful property test of the write path against the sandbox shop.

Hypothesis interleaves previews, applies that crash at any point (before a request, after
the shop applied it but before we heard back), resumes, manual retries, reverts, DLQ
drains, reconciliations, merchant edits, supplier cost changes and lost answers, and after
every step checks the promise:

* every shop write has exactly one audit row (and so no target is written twice): audit
  rows <= API writes <= audit rows + targets still APPLYING (whose outcome is being read);
* no write is outside the guardrails computed from the catalog at write time (margin floor
  from the cost the shop had then, max change from the price the shop had then), and no
  write replaced a price other than the one previewed;
* nothing is written for a run after it was reverted;
* after a reconciliation, the warehouse's prices equal the shop's for that run's variants.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, precondition, rule, run_state_machine_as_test
from sqlalchemy import select

from calibr_pipeline.services import price_apply, reconciliation
from calibr_pipeline.domain.errors import CalibrError
from calibr_pipeline.services.price_apply import apply_run
from calibr_pipeline.services.rule_runs import compute_targets, create_run, save_rule
from calibr_pipeline.warehouse.engine import session_scope
from calibr_pipeline.warehouse.models import PriceAudit, RuleRun, RuleTarget, Variant
from calibr_pipeline.warehouse.types import utcnow
from calibr_pipeline_tests.integration.test_pricing import TENANT, defs, world  # noqa: F401  (fixtures)
from calibr_pipeline_tests.integration.test_write_path_safety import _client_for, _preview_replay, _shop_row

pytestmark = pytest.mark.integration

MARGIN = Decimal("0.20")
MAX_CHANGE = Decimal("0.10")
LOST_MODES = ("503", "reset", "cut", "data_and_errors")


class Crash(BaseException):
    """The process dies (BaseException: nothing in the runner catches it as an error)."""


class CrashingClient:
    """A client that dies right before or right after its n-th write request reaches the shop."""

    def __init__(self, client, crash_at: int, after_send: bool):
        self._client, self._left, self._after_send = client, crash_at, after_send

    def __getattr__(self, name):
        return getattr(self._client, name)

    def execute_once(self, *args, **kwargs):
        self._left -= 1
        if self._left == 0 and not self._after_send:
            raise Crash("killed before sending")
        answer = self._client.execute_once(*args, **kwargs)
        if self._left == 0:
            raise Crash("killed after the shop applied the write, before the answer was recorded")
        return answer


def test_the_write_path_keeps_its_promise_under_any_interleaving(defs, world, warehouse_url):
    shop = world.tenant(TENANT).admin_shop
    with session_scope(warehouse_url) as session:
        skus = sorted(session.scalars(select(Variant.sku)).all())[:12]
    definition = {
        "name": "Stateful",
        "transform": {"kind": "percent_change", "value": "-6"},
        "scope": {"kind": "skus", "values": skus},
        "guardrails": {"min_margin_pct": "20", "max_change_pct": "10"},
    }
    with session_scope(warehouse_url) as session:
        save_rule(session, project_slug=TENANT, definition=definition, actor="test")
        gids = {v.external_id for v in session.scalars(select(Variant).where(Variant.sku.in_(skus)))}
    with shop.lock:
        initial = {gid: (shop.find_variant(gid).price, shop.find_variant(gid).cost) for gid in gids}

    class WritePath(RuleBasedStateMachine):
        runs = Bundle("runs")

        @initialize()
        def start(self):
            # Every example starts from the same shop and catalog (runs of earlier examples
            # stay in the warehouse; they are older, so they never supersede new ones).
            shop.faults.clear()
            with shop.lock:
                for gid, (price, cost) in initial.items():
                    shop.find_variant(gid).price, shop.find_variant(gid).cost = price, cost
            with session_scope(warehouse_url) as session:
                for variant in session.scalars(select(Variant).where(Variant.external_id.in_(gids))):
                    variant.price = initial[variant.external_id][0]
            self.seen_writes = len(shop.writes())
            self.reverted: set[str] = set()

        # -- the merchant and the world --------------------------------------------------------

        @rule(index=st.integers(0, 11), cents=st.integers(1, 9_000))
        def merchant_edits_a_price(self, index, cents):
            gid = sorted(gids)[index]
            shop.set_price(gid, Decimal(cents) / 100 + Decimal("0.37") if cents % 7 else Decimal("999.00"))

        @rule(index=st.integers(0, 11), ratio=st.sampled_from(["0.3", "0.8", "0.95", "1.2"]))
        def supplier_cost_changes(self, index, ratio):
            gid = sorted(gids)[index]
            with shop.lock:
                variant = shop.find_variant(gid)
                variant.cost = (variant.price * Decimal(ratio)).quantize(Decimal("0.01"))

        @rule(mode=st.sampled_from(LOST_MODES))
        def the_next_answer_is_lost(self, mode):
            shop.faults.lose_answer(next=1, mode=mode)

        # -- the operator ------------------------------------------------------------------------

        @rule(target=runs)
        def preview(self):
            with session_scope(warehouse_url) as session:
                run = create_run(session, project_slug=TENANT, rule_name="Stateful", actor="test")
                run_id = run.id
            with session_scope(warehouse_url) as session:
                compute_targets(session, run_id)
            return run_id

        @rule(run_id=runs, crash_at=st.none() | st.integers(1, 4), after_send=st.booleans())
        def apply(self, run_id, crash_at, after_send):
            client_for = _client_for()
            if crash_at is not None:
                client_for = (lambda base: lambda s: CrashingClient(base(s), crash_at, after_send))(client_for)
            try:
                apply_run(warehouse_url, run_id, client_for, actor="test", sleep=lambda s: None, retry_delay=lambda a: 0.0, lease_seconds=60)
            except Crash:
                pass  # the lease was released on the way down: resumable at once
            except CalibrError:
                pass  # refusals (expired preview, reverted run, taken) are answers; anything else fails the test

        @rule(run_id=runs)
        def retry_failed(self, run_id):
            with session_scope(warehouse_url) as session:
                state = session.get(RuleRun, run_id).state
            if state in ("PARTIAL", "FAILED") and run_id not in self.reverted:
                with session_scope(warehouse_url) as session:
                    price_apply.retry_failed(session, run_id, actor="test")
                self.apply(run_id, None, False)

        @rule(run_id=runs)
        def revert(self, run_id):
            with session_scope(warehouse_url) as session:
                source = session.get(RuleRun, run_id)
                if source.state not in ("APPLIED", "PARTIAL") or run_id in self.reverted or source.kind != "apply":
                    return
                revert = create_run(session, project_slug=TENANT, actor="test", kind="revert", source_run_id=run_id)
                revert_id = revert.id
            self.reverted.add(run_id)
            _preview_replay(warehouse_url, revert_id, run_id)
            self.apply(revert_id, None, False)

        @rule()
        def dlq_drain(self):
            reconciliation.drain_dead_letters(warehouse_url, _client_for(), actor="dlq-drain", sleep=lambda s: None)

        @rule(run_id=runs)
        def reconcile(self, run_id):
            with session_scope(warehouse_url) as session:
                run = session.get(RuleRun, run_id)
                if run.state == "APPLYING":
                    return
            reconciliation.reconcile_run(warehouse_url, run_id, _client_for(), actor="test")
            with session_scope(warehouse_url) as session:
                for target in session.scalars(select(RuleTarget).where(RuleTarget.run_id == run_id, RuleTarget.action == "write")):
                    variant = session.get(Variant, target.variant_id)
                    assert variant.price == shop.price_of(target.variant_external_id), "warehouse differs from the shop after reconciliation"

        @rule(run_id=runs)
        def preview_ages(self, run_id):
            with session_scope(warehouse_url) as session:
                run = session.get(RuleRun, run_id)
                if run.state == "QUEUED":
                    run.previewed_at = utcnow() - timedelta(hours=30)

        # -- the promise ----------------------------------------------------------------------------

        @invariant()
        def every_write_is_audited_once_and_safe_at_write_time(self):
            writes = shop.writes()
            new, self.seen_writes = writes[self.seen_writes:], len(writes)
            with session_scope(warehouse_url) as session:
                audits = session.scalars(select(PriceAudit).where(PriceAudit.variant_id.in_(select(Variant.id).where(Variant.external_id.in_(gids))))).all()
                applying = session.scalars(select(RuleTarget).where(RuleTarget.state == "APPLYING")).all()
                all_writes = [w for w in writes if w.variant_gid in gids]
                assert len(audits) <= len(all_writes) <= len(audits) + len(applying), (len(audits), len(all_writes), len(applying))
                for write in new:
                    # Compared in Python: money is exact text on SQLite, where '105' != '105.00'.
                    candidates = next((
                        (t, r) for t, r in session.execute(
                            select(RuleTarget, RuleRun).join(RuleRun, RuleRun.id == RuleTarget.run_id)
                            .where(RuleTarget.variant_external_id == write.variant_gid)
                            .order_by(RuleTarget.applied_at.desc().nulls_last(), RuleTarget.id.desc())
                        ).all()
                        if t.to_price == write.new_price
                    ), None)
                    assert candidates is not None, f"a write nobody asked for: {write}"
                    target, run = candidates
                    assert write.old_price == target.from_price, f"overwrote {write.old_price}, previewed {target.from_price}"
                    source_id = run.source_run_id if run.kind == "revert" else run.id
                    assert source_id not in self.reverted or run.kind == "revert", f"wrote for reverted run {run.id}"
                    # Costs change only in their own step, so the shop's cost now is the
                    # cost at the time of every write made since the last check.
                    with shop.lock:
                        cost = shop.find_variant(write.variant_gid).cost
                    if cost is not None:
                        assert write.new_price >= cost * (1 + MARGIN), f"below the margin floor at write time: {write}"
                    if run.kind == "apply":
                        assert abs(write.new_price - write.old_price) <= write.old_price * MAX_CHANGE, f"outside max change: {write}"

        def teardown(self):
            shop.faults.clear()

    run_state_machine_as_test(
        WritePath,
        settings=settings(max_examples=30, stateful_step_count=15, deadline=None, suppress_health_check=list(HealthCheck)),
    )

"""Applying a rule run's targets to the shop: idempotent, crash-safe, audited.

The loop, per run:

1. The run goes QUEUED/PARTIAL/FAILED -> APPLYING (already APPLYING: a resumed run).
2. **Recovery before any write.** Targets left APPLYING (a process killed mid-apply, or a
   manual retry) are read back from the shop first: a variant already at its target price
   was written — it becomes APPLIED and gets its audit row if it has none — and is never
   written again. Only the rest are written.
3. Targets are written product by product (one ``productVariantsBulkUpdate`` each, partial
   updates allowed): PENDING -> APPLYING is committed *before* the request, APPLIED (with
   the audit row, unique per idempotency key) or FAILED/PENDING after it.
4. When nothing is PENDING, the run takes its outcome: APPLIED, PARTIAL or FAILED.

Every failure ends in a DLQ row once the target's attempts are spent; nothing is dropped.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Callable, Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from calibr_pipeline.connectors.shopify_admin import ShopifyAdminClient, ShopifyAdminError
from calibr_pipeline.connectors.shopify_admin.writes import (
    VariantPriceUpdate,
    bulk_update_prices,
    read_variant_prices,
)
from calibr_pipeline.domain.errors import CalibrError
from calibr_pipeline.domain.state_machine import (
    RunState,
    TargetState,
    after_failed_attempt,
    check_run_transition,
    check_target_transition,
    run_outcome,
)
from calibr_pipeline.services.catalog_sync import ClientFactory
from calibr_pipeline.services.rule_runs import get_run
from calibr_pipeline.warehouse.engine import session_scope
from calibr_pipeline.warehouse.models import (
    DeadLetter,
    PriceAudit,
    RuleRun,
    RuleRunMetrics,
    RuleTarget,
    Shop,
    Variant,
)
from calibr_pipeline.warehouse.outbox import record_event
from calibr_pipeline.warehouse.types import utcnow



@dataclass
class ApplySummary:
    run_id: str
    state: str
    applied: int = 0
    failed: int = 0
    recovered: int = 0
    write_requests: int = 0
    throttled: int = 0
    retries: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    duration_seconds: float = 0.0


def shop_for_run(session: Session, run: RuleRun) -> Shop:
    shop = session.scalar(select(Shop).where(Shop.project_id == run.project_id, Shop.platform == "shopify").order_by(Shop.id))
    if shop is None:
        raise CalibrError(f"project of run {run.id} has no Shopify shop to write to")
    session.expunge(shop)
    return shop


def _audit(session: Session, run: RuleRun, target: RuleTarget, *, actor: str, note: str | None = None) -> None:
    """Exactly one audit row per effective write: the idempotency key is unique."""
    if session.scalar(select(PriceAudit.id).where(PriceAudit.idempotency_key == target.idempotency_key)) is not None:
        return
    session.add(
        PriceAudit(
            tenant_id=run.tenant_id,
            project_id=run.project_id,
            run_id=run.id,
            target_id=target.id,
            variant_id=target.variant_id,
            sku=target.sku,
            event_type="price.reverted" if run.kind == "revert" else "price.applied",
            actor=actor,
            from_price=target.from_price,
            to_price=target.to_price,
            currency=target.currency,
            correlation_id=run.correlation_id,
            idempotency_key=target.idempotency_key,
            note=note,
        )
    )
    record_event(
        session,
        "price.reverted" if run.kind == "revert" else "price.applied",
        {"run_id": run.id, "target_id": target.id, "sku": target.sku, "from": str(target.from_price), "to": str(target.to_price),
         "currency": target.currency, "idempotency_key": target.idempotency_key, "note": note},
        tenant_id=run.tenant_id, actor=actor, correlation_id=run.correlation_id, project_id=run.project_id, run_id=run.id,
    )


def _mark_applied(session: Session, run: RuleRun, target: RuleTarget, *, actor: str, note: str | None = None) -> None:
    check_target_transition(target.state, TargetState.APPLIED)
    target.state = TargetState.APPLIED.value
    target.applied_at = utcnow()
    target.error = target.error_code = None
    variant = session.get(Variant, target.variant_id)
    variant.price = target.to_price  # our catalog mirrors what we wrote until the next sync
    _audit(session, run, target, actor=actor, note=note)


def _fail_attempt(session: Session, target: RuleTarget, *, error_type: str, message: str, retryable: bool, attempts_made: int = 1) -> bool:
    """Record failed write attempts; returns True if the target is now FAILED (and dead-lettered).

    The connector already retries transient failures itself (write_policy), so one call
    may have made several attempts: they all count against the target's budget.
    """
    target.error, target.error_code = message[:2000], error_type
    if retryable:
        state, attempts = after_failed_attempt(target.attempts + attempts_made - 1, target.max_attempts)
    else:
        state, attempts = TargetState.FAILED, target.attempts + attempts_made
    check_target_transition(target.state, state, attempts=attempts, max_attempts=target.max_attempts)
    target.state, target.attempts = state.value, attempts
    if state is TargetState.FAILED:
        existing = session.scalar(select(DeadLetter).where(DeadLetter.target_id == target.id))
        if existing is None:
            session.add(DeadLetter(tenant_id=target.tenant_id, run_id=target.run_id, target_id=target.id, error_type=error_type, error_message=message[:2000], attempts=attempts))
        else:
            existing.error_type, existing.error_message, existing.attempts = error_type, message[:2000], attempts
            existing.resolved_at = existing.resolution = None
        return True
    return False


def start_run(session: Session, run: RuleRun, *, actor: str) -> None:
    if run.state == RunState.APPLYING:
        return  # resuming an interrupted apply
    check_run_transition(run.state, RunState.APPLYING)
    run.state = RunState.APPLYING.value
    run.started_at = run.started_at or utcnow()
    run.completed_at = run.failed_at = None
    record_event(session, "automation.run.applying", {"run_id": run.id}, tenant_id=run.tenant_id, actor=actor, correlation_id=run.correlation_id, project_id=run.project_id, run_id=run.id)


def retry_failed(session: Session, run_id: str, *, target_ids: Sequence[int] | None = None, actor: str) -> int:
    """Manual retry: FAILED targets (all, or the given ids) go FAILED -> APPLYING with attempts reset.

    They are then verified against the shop before any write, like interrupted targets.
    """
    run = get_run(session, run_id)
    query = select(RuleTarget).where(RuleTarget.run_id == run_id, RuleTarget.state == TargetState.FAILED.value)
    if target_ids:
        query = query.where(RuleTarget.id.in_(list(target_ids)))
        found = set(session.scalars(select(RuleTarget.id).where(RuleTarget.run_id == run_id, RuleTarget.id.in_(list(target_ids)))).all())
        unknown = sorted(set(target_ids) - found)
        if unknown:
            raise CalibrError(f"target id(s) {unknown} do not belong to run {run_id}")
    targets = session.scalars(query).all()
    if not targets:
        return 0
    start_run(session, run, actor=actor)
    for target in targets:
        check_target_transition(target.state, TargetState.APPLYING)
        target.state, target.attempts, target.last_attempt_at = TargetState.APPLYING.value, 0, utcnow()
        dead = session.scalar(select(DeadLetter).where(DeadLetter.target_id == target.id))
        if dead is not None and dead.resolved_at is None:
            dead.resolved_at, dead.resolution = utcnow(), "retried"
    record_event(session, "automation.run.retry", {"run_id": run_id, "targets": [t.id for t in targets]}, tenant_id=run.tenant_id, actor=actor, correlation_id=run.correlation_id, project_id=run.project_id, run_id=run.id)
    return len(targets)


def apply_run(
    warehouse_url: str,
    run_id: str,
    client_factory: ClientFactory,
    *,
    actor: str,
    sleep: Callable[[float], None] = time.sleep,
    after_request: Callable[[int], None] | None = None,
) -> ApplySummary:
    """Apply every PENDING (and verify every APPLYING) target of the run. See module docstring."""
    started = time.monotonic()
    with session_scope(warehouse_url) as session:
        run = get_run(session, run_id)
        if run.state == RunState.APPLIED:
            return ApplySummary(run_id, run.state)
        if run.state in (RunState.PARTIAL, RunState.FAILED):
            # Applying a PARTIAL/FAILED run again is the state machine's "retry failed/all".
            retry_failed(session, run_id, actor=actor)
        start_run(session, run, actor=actor)
        shop = shop_for_run(session, run)
    client = client_factory(shop)
    try:
        summary = ApplySummary(run_id, RunState.APPLYING.value)

        _recover_applying(warehouse_url, run_id, client, summary, actor=actor)

        requests_made = 0
        while True:
            with session_scope(warehouse_url) as session:
                pending = session.scalars(
                    select(RuleTarget).where(RuleTarget.run_id == run_id, RuleTarget.state.in_([TargetState.PENDING.value, TargetState.APPLYING.value]))
                    .order_by(RuleTarget.product_external_id, RuleTarget.id)
                ).all()
                if not pending:
                    break
                by_product: dict[str, list[int]] = defaultdict(list)
                for target in pending:
                    if target.state == TargetState.PENDING:
                        check_target_transition(target.state, TargetState.APPLYING)
                        target.state = TargetState.APPLYING.value
                    target.last_attempt_at = utcnow()
                    by_product[target.product_external_id].append(target.id)
            # APPLYING is committed before the first request: a crash from here on is recovered
            # by reading the shop, never by writing blindly.
            for product_gid, target_ids in by_product.items():
                _write_product(warehouse_url, run_id, client, product_gid, target_ids, summary, actor=actor, sleep=sleep)
                requests_made += 1
                if after_request is not None:
                    after_request(requests_made)

        stats = getattr(client, "stats", None)
        summary.throttled = getattr(stats, "throttled", 0)
        summary.retries = getattr(stats, "retries", 0)
        summary.duration_seconds = round(time.monotonic() - started, 3)
        with session_scope(warehouse_url) as session:
            run = get_run(session, run_id)
            states = session.scalars(select(RuleTarget.state).where(RuleTarget.run_id == run_id, RuleTarget.action == "write")).all()
            outcome = run_outcome(TargetState(s) for s in states)
            check_run_transition(run.state, outcome)
            run.state = outcome.value
            now = utcnow()
            if outcome is RunState.FAILED:
                run.failed_at, run.error = now, _first_error(session, run_id)
            else:
                run.completed_at = now
            run.run_metadata = {**(run.run_metadata or {}), "last_apply": {"write_requests": summary.write_requests, "throttled": summary.throttled, "retries": summary.retries, "seconds": summary.duration_seconds}}
            record_event(session, "automation.run.completed", {"run_id": run_id, "outcome": outcome.value, "counts": {"applied": summary.applied, "failed": summary.failed, "total": summary.applied + summary.failed}, "write_requests": summary.write_requests}, tenant_id=run.tenant_id, actor=actor, correlation_id=run.correlation_id, project_id=run.project_id, run_id=run.id)
            write_run_metrics(session, run_id, throttled=summary.throttled, retries=summary.retries, write_requests=summary.write_requests)
            summary.state = outcome.value
        return summary
    finally:
        client.close()


def _first_error(session: Session, run_id: str) -> str | None:
    return session.scalar(select(RuleTarget.error).where(RuleTarget.run_id == run_id, RuleTarget.state == TargetState.FAILED.value).limit(1))


def _recover_applying(warehouse_url: str, run_id: str, client: ShopifyAdminClient, summary: ApplySummary, *, actor: str) -> None:
    with session_scope(warehouse_url) as session:
        applying = session.scalars(select(RuleTarget).where(RuleTarget.run_id == run_id, RuleTarget.state == TargetState.APPLYING.value)).all()
        if not applying:
            return
        gids = [t.variant_external_id for t in applying]
    shop_prices = read_variant_prices(client, gids)
    with session_scope(warehouse_url) as session:
        run = get_run(session, run_id)
        for target in session.scalars(select(RuleTarget).where(RuleTarget.run_id == run_id, RuleTarget.state == TargetState.APPLYING.value)):
            if shop_prices.get(target.variant_external_id) == target.to_price:
                _mark_applied(session, run, target, actor=actor, note="found at target price before writing (interrupted or retried apply)")
                summary.recovered += 1
                summary.applied += 1


def _write_product(warehouse_url: str, run_id: str, client: ShopifyAdminClient, product_gid: str, target_ids: list[int], summary: ApplySummary, *, actor: str, sleep) -> None:
    with session_scope(warehouse_url) as session:
        targets = session.scalars(select(RuleTarget).where(RuleTarget.id.in_(target_ids))).all()
        updates = [VariantPriceUpdate(variant_gid=t.variant_external_id, price=t.to_price) for t in targets]
    summary.write_requests += 1
    try:
        result = bulk_update_prices(client, product_gid, updates, allow_partial=True, sleep=sleep)
        outcome = {r.variant_gid: r for r in result.results}
        failure = None
    except ShopifyAdminError as exc:
        outcome, failure = {}, exc
    with session_scope(warehouse_url) as session:
        run = get_run(session, run_id)
        for target in session.scalars(select(RuleTarget).where(RuleTarget.id.in_(target_ids))):
            if failure is not None:
                error_type = getattr(failure.error_class, "value", str(failure.error_class))
                attempts_made = getattr(failure, "attempts", None) or target.max_attempts
                if _fail_attempt(session, target, error_type=error_type, message=str(failure), retryable=True, attempts_made=attempts_made):
                    summary.failed += 1
                summary.errors[error_type] = summary.errors.get(error_type, 0) + 1
                continue
            written = outcome.get(target.variant_external_id)
            if written is not None and written.ok:
                _mark_applied(session, run, target, actor=actor)
                summary.applied += 1
            else:
                code = (written.error_code if written else None) or "MISSING_RESULT"
                message = (written.error_message if written else None) or "the shop returned no result for this variant"
                _fail_attempt(session, target, error_type=code, message=message, retryable=False)
                summary.failed += 1
                summary.errors[code] = summary.errors.get(code, 0) + 1


def write_run_metrics(session: Session, run_id: str, *, throttled: int = 0, retries: int = 0, write_requests: int = 0) -> RuleRunMetrics:
    run = get_run(session, run_id)
    counts = dict(
        session.execute(
            select(RuleTarget.state, func.count()).where(RuleTarget.run_id == run_id, RuleTarget.action == "write").group_by(RuleTarget.state)
        ).all()
    )
    total = session.scalar(select(func.count()).select_from(RuleTarget).where(RuleTarget.run_id == run_id)) or 0
    writes = sum(counts.values())
    applied = counts.get(TargetState.APPLIED.value, 0)
    dlq = session.scalar(select(func.count()).select_from(DeadLetter).where(DeadLetter.run_id == run_id, DeadLetter.resolved_at.is_(None))) or 0
    finished = run.completed_at or run.failed_at
    duration = Decimal(str(round((finished - run.started_at).total_seconds(), 3))) if finished and run.started_at else None
    metrics = session.get(RuleRunMetrics, run_id)
    previous = (metrics.throttled_count, metrics.retry_count, metrics.write_requests) if metrics else (0, 0, 0)
    values = dict(
        tenant_id=run.tenant_id,
        state=run.state,
        targets_total=total,
        targets_write=writes,
        targets_pending=counts.get(TargetState.PENDING.value, 0),
        targets_applying=counts.get(TargetState.APPLYING.value, 0),
        targets_applied=applied,
        targets_failed=counts.get(TargetState.FAILED.value, 0),
        success_rate=(Decimal(applied) / Decimal(writes)).quantize(Decimal("0.0001")) if writes else None,
        duration_seconds=duration,
        dlq_size=dlq,
        throttled_count=previous[0] + throttled,
        retry_count=previous[1] + retries,
        write_requests=previous[2] + write_requests,
        computed_at=utcnow(),
    )
    if metrics is None:
        metrics = RuleRunMetrics(run_id=run_id, **values)
        session.add(metrics)
    else:
        for key, value in values.items():
            setattr(metrics, key, value)
    return metrics

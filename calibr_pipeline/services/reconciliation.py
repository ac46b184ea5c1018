"""After the apply: what the shop really shows, and what is left in the dead-letter queue."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Callable

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from calibr_pipeline.connectors.shopify_admin import ShopifyAdminClient
from calibr_pipeline.connectors.shopify_admin.writes import read_variant_prices
from calibr_pipeline import settings
from calibr_pipeline.domain.state_machine import RunState, TargetState, check_target_transition
from calibr_pipeline.services.price_apply import MAYBE_WRITTEN_ERRORS, audit_write, shop_for_run
from calibr_pipeline.services.rule_runs import create_run, get_run, request_apply_of
from calibr_pipeline.warehouse.engine import session_scope
from calibr_pipeline.warehouse.models import DeadLetter, Project, ReconciliationMismatch, RuleRun, RuleTarget, Variant
from calibr_pipeline.warehouse.tenancy import project_by_slug
from calibr_pipeline.warehouse.types import utcnow
from calibr_pipeline.warehouse.outbox import record_event

MISMATCH_EVENT = "automation.reconciliation.mismatch"
DLQ_REPORT_EVENT = "automation.dlq.report"


@dataclass(frozen=True)
class Mismatch:
    target_id: int
    sku: str
    expected: Decimal
    actual: Decimal | None
    # lost_write: the shop still shows the price we replaced (our write did not land);
    # drift: someone set another price since; missing: the variant is gone.
    kind: str = "lost_write"

    @property
    def difference(self) -> Decimal | None:
        return None if self.actual is None else self.actual - self.expected


def diff_prices(expected: dict[int, tuple[str, str, Decimal, Decimal]], shop_prices: dict[str, Decimal | None]) -> list[Mismatch]:
    """Pure: ``expected`` is target id -> (sku, variant gid, price we applied, price it replaced)."""
    mismatches = []
    for target_id, (sku, gid, price, replaced) in sorted(expected.items()):
        actual = shop_prices.get(gid)
        if actual != price:
            kind = "missing" if actual is None else "lost_write" if actual == replaced else "drift"
            mismatches.append(Mismatch(target_id, sku, price, actual, kind))
    return mismatches


@dataclass
class ReconciliationReport:
    run_id: str
    checked: int
    matched: int
    mismatches: list[Mismatch]
    retry_run_id: str | None = None
    confirmed: int = 0  # targets that may have been written (lost answer) and were found written

    @property
    def lost_writes(self) -> list[Mismatch]:
        return [m for m in self.mismatches if m.kind == "lost_write"]


def maybe_written(state: str | None, error_code: str | None) -> bool:
    """A target whose write may have landed although it is not APPLIED: still APPLYING
    (interrupted), or FAILED after an answer that was lost on the way back."""
    return state == TargetState.APPLYING.value or (state == TargetState.FAILED.value and error_code in MAYBE_WRITTEN_ERRORS)


def confirm_written(session: Session, run: RuleRun, targets: list[RuleTarget], shop_prices: dict[str, Decimal | None], *, actor: str) -> int:
    """Targets that may have been written and that the shop shows at their target price were
    written: FAILED -> APPLIED with their one audit row (an APPLYING target is left to the
    apply that owns it). Returns how many were confirmed."""
    confirmed = [t for t in targets if t.state == TargetState.FAILED.value and shop_prices.get(t.variant_external_id) == t.to_price]
    for target in confirmed:
        check_target_transition(target.state, TargetState.APPLIED)
        target.state, target.applied_at, target.error, target.error_code = TargetState.APPLIED.value, utcnow(), None, None
        audit_write(session, run, target, actor=actor, note="the answer was lost; reconciliation read the target price back")
        dead = session.scalar(select(DeadLetter).where(DeadLetter.target_id == target.id, DeadLetter.resolved_at.is_(None)))
        if dead is not None:
            dead.resolved_at, dead.resolution = utcnow(), "confirmed_written"
    return len(confirmed)


def reconcile_run(
    warehouse_url: str,
    run_id: str,
    client_factory: Callable,
    *,
    actor: str,
    schedule_retry: bool = False,
) -> ReconciliationReport:
    """Read back every target that was or may have been written; record each mismatch.

    Targets whose answer was lost and that the shop shows at their price are confirmed
    (APPLIED, audited). Every mismatch is classified: ``lost_write`` (the shop still shows
    the price we replaced), ``drift`` (someone set another price since: reported, never
    overwritten) or ``missing``. With ``schedule_retry`` only lost writes get a
    ``reconcile_retry`` run. The warehouse's prices are set to what the shop shows.
    """
    with session_scope(warehouse_url) as session:
        run = get_run(session, run_id)
        shop = shop_for_run(session, run)
        candidates = session.execute(
            select(RuleTarget.id, RuleTarget.state, RuleTarget.error_code, RuleTarget.variant_external_id)
            .where(RuleTarget.run_id == run_id, RuleTarget.action == "write")
        ).all()
        # Every write target's variant is read: the checks need the applied and maybe-written
        # ones, and the warehouse mirrors the shop for all of them afterwards.
        gids = [c.variant_external_id for c in candidates]
    client: ShopifyAdminClient = client_factory(shop)
    try:
        shop_prices = read_variant_prices(client, gids) if gids else {}
    finally:
        client.close()
    with session_scope(warehouse_url) as session:
        run = get_run(session, run_id)
        targets = session.scalars(select(RuleTarget).where(RuleTarget.run_id == run_id, RuleTarget.variant_external_id.in_(gids))).all() if gids else []
        confirmed = confirm_written(session, run, [t for t in targets if maybe_written(t.state, t.error_code)], shop_prices, actor=actor)
        expected = {t.id: (t.sku, t.variant_external_id, t.to_price, t.from_price) for t in targets if t.state == TargetState.APPLIED.value}
        mismatches = diff_prices(expected, shop_prices)
        report = ReconciliationReport(run_id, len(expected), len(expected) - len(mismatches), mismatches, confirmed=confirmed)
        # The warehouse mirrors the shop after reconciliation.
        for t in targets:
            price = shop_prices.get(t.variant_external_id)
            if price is not None:
                session.execute(update(Variant).where(Variant.id == t.variant_id).values(price=price).execution_options(synchronize_session=False))
        session.execute(delete(ReconciliationMismatch).where(ReconciliationMismatch.run_id == run_id))
        if report.lost_writes and schedule_retry:
            project_slug = session.get(Project, run.project_id).slug
            retry = create_run(session, project_slug=project_slug, actor=actor, kind="reconcile_retry", source_run_id=run_id)
            retry.run_metadata = {"target_ids": [m.target_id for m in report.lost_writes]}
            request_apply_of(session, retry, actor=actor)
            report.retry_run_id = retry.id
        for m in mismatches:
            retry_run_id = report.retry_run_id if m.kind == "lost_write" else None
            session.add(
                ReconciliationMismatch(
                    tenant_id=run.tenant_id, run_id=run_id, target_id=m.target_id, sku=m.sku, kind=m.kind,
                    expected_price=m.expected, actual_price=m.actual, difference=m.difference, retry_run_id=retry_run_id,
                )
            )
            record_event(
                session,
                MISMATCH_EVENT,
                {"run_id": run_id, "target_id": m.target_id, "sku": m.sku, "kind": m.kind, "expected": str(m.expected),
                 "actual": None if m.actual is None else str(m.actual),
                 "difference": None if m.difference is None else str(m.difference), "retry_run_id": retry_run_id},
                tenant_id=run.tenant_id, actor=actor, correlation_id=run.correlation_id, project_id=run.project_id, run_id=run.id,
            )
        run.run_metadata = {**(run.run_metadata or {}), "reconciliation": {
            "checked": report.checked, "mismatched": len(mismatches), "lost_writes": len(report.lost_writes), "confirmed": confirmed}}
    return report


# Error types (connector error classes and Shopify userError codes) -> what to do about them.
RECOMMENDATIONS: dict[str, str] = {
    "http_5xx": "Transient Shopify outage: the hourly DLQ drain retries these automatically.",
    "timeout": "Shopify answered too slowly: the hourly DLQ drain retries these; check Shopify status if it persists.",
    "connection": "Network problem reaching Shopify: retried by the hourly DLQ drain.",
    "malformed_body": "Shopify's answer was cut off: retried by the hourly DLQ drain.",
    "rate_limited": "Rate budget exhausted: retried by the hourly DLQ drain; consider a smaller rule scope or a Plus shop.",
    "PRODUCT_VARIANT_DOES_NOT_EXIST": "The variant was deleted in Shopify: re-sync the catalog (catalog_sync) and re-run the rule.",
    "PRODUCT_DOES_NOT_EXIST": "The product was deleted in Shopify: re-sync the catalog (catalog_sync).",
    "INVALID_INPUT": "Shopify refused the price: check the rule's guardrails and rounding for this SKU.",
    "GREATER_THAN_OR_EQUAL_TO": "Shopify refused the price as out of range: check floors and ceilings.",
    "auth": "The shop's access token was refused: reconnect the shop (calibr shops add).",
}
TRANSIENT_ERROR_TYPES = frozenset({"http_5xx", "timeout", "connection", "rate_limited", "malformed_body"})


def recommendation_for(error_type: str) -> str:
    return RECOMMENDATIONS.get(error_type, "Inspect the error message; fix the cause, then retry with the retry_failed job.")


@dataclass
class DlqGroup:
    error_type: str
    count: int
    skus: list[str] = field(default_factory=list)
    sample_error: str | None = None

    @property
    def recommendation(self) -> str:
        return recommendation_for(self.error_type)

    @property
    def transient(self) -> bool:
        return self.error_type in TRANSIENT_ERROR_TYPES


def dlq_summary(warehouse_url: str, run_id: str, *, actor: str) -> list[DlqGroup]:
    """Unresolved dead letters of the run, grouped by error type, announced as an event."""
    groups: dict[str, DlqGroup] = {}
    with session_scope(warehouse_url) as session:
        run = get_run(session, run_id)
        rows = session.execute(
            select(DeadLetter, RuleTarget.sku)
            .join(RuleTarget, RuleTarget.id == DeadLetter.target_id)
            .where(DeadLetter.run_id == run_id, DeadLetter.resolved_at.is_(None))
            .order_by(RuleTarget.sku)
        ).all()
        for dead, sku in rows:
            group = groups.setdefault(dead.error_type, DlqGroup(dead.error_type, 0, [], dead.error_message))
            group.count += 1
            group.skus.append(sku)
        ordered = sorted(groups.values(), key=lambda g: (-g.count, g.error_type))
        record_event(
            session,
            DLQ_REPORT_EVENT,
            {"run_id": run_id, "total": sum(g.count for g in ordered),
             "groups": [{"error_type": g.error_type, "count": g.count, "skus": g.skus[:20], "recommendation": g.recommendation, "sample_error": g.sample_error} for g in ordered]},
            tenant_id=run.tenant_id, actor=actor, correlation_id=run.correlation_id, project_id=run.project_id, run_id=run.id,
        )
    return ordered


TRANSIENT_DLQ_TYPES = TRANSIENT_ERROR_TYPES | {"DATA_WITH_ERRORS"}


@dataclass
class DrainPlan:
    """What a DLQ drain does: retry these letters' targets, close those with a reason."""

    retry: dict[str, list[int]] = field(default_factory=dict)  # run id -> target ids
    close: list[tuple[int, str, str]] = field(default_factory=list)  # (letter id, resolution, why)

    def as_dict(self) -> dict:
        return {"retry": self.retry, "close": [{"letter_id": i, "resolution": r, "reason": why} for i, r, why in self.close]}


def plan_dlq_drain(
    session: Session,
    *,
    project_slug: str | None = None,
    run_ids: list[str] | None = None,
    now: datetime | None = None,
    max_age_hours: float | None = None,
    max_retries: int | None = None,
) -> DrainPlan:
    """Which transient dead letters may be retried *now*.

    A letter is retried only if its run is still the latest decision for that variant (not
    reverted, not superseded by a newer run that applied the variant), it is younger than
    ``max_age_hours`` and was drained fewer than ``max_retries`` times; the retry itself
    goes through the apply's write-time checks. Others are closed with the reason
    (reverted / superseded / expired / exhausted), so nothing is retried forever.
    """
    from calibr_pipeline.services.price_apply import reverting_run

    now = now or utcnow()
    max_age = timedelta(hours=settings.dlq_max_age_hours() if max_age_hours is None else max_age_hours)
    max_retries = settings.dlq_max_retries() if max_retries is None else max_retries
    query = (
        select(DeadLetter, RuleTarget.variant_id, RuleTarget.state, RuleRun)
        .join(RuleTarget, RuleTarget.id == DeadLetter.target_id)
        .join(RuleRun, RuleRun.id == DeadLetter.run_id)
        .where(DeadLetter.resolved_at.is_(None), DeadLetter.error_type.in_(sorted(TRANSIENT_DLQ_TYPES)))
        .order_by(DeadLetter.run_id, DeadLetter.target_id)
    )
    if project_slug is not None:
        query = query.where(RuleRun.project_id == project_by_slug(session, project_slug).id)
    if run_ids is not None:
        query = query.where(DeadLetter.run_id.in_(run_ids))
    plan = DrainPlan()
    reverted: dict[str, str | None] = {}
    for letter, variant_id, target_state, run in session.execute(query).all():
        if run.id not in reverted:
            reverted[run.id] = reverting_run(session, run.id)
        if reverted[run.id]:
            plan.close.append((letter.id, "reverted", f"run {run.id} was reverted by run {reverted[run.id]}"))
            continue
        newer = session.scalar(
            select(RuleTarget.run_id).join(RuleRun, RuleRun.id == RuleTarget.run_id)
            .where(RuleTarget.variant_id == variant_id, RuleRun.project_id == run.project_id, RuleRun.id != run.id,
                   RuleRun.queued_at > run.queued_at, RuleTarget.state == TargetState.APPLIED.value).limit(1)
        )
        if newer:
            plan.close.append((letter.id, "superseded", f"newer run {newer} already set this variant"))
        elif target_state != TargetState.FAILED.value:
            plan.close.append((letter.id, "stale_letter", f"the target is {target_state}, no longer FAILED"))
        elif now - letter.created_at > max_age:
            plan.close.append((letter.id, "expired", f"older than {max_age.total_seconds() / 3600:g} h: its price is out of date"))
        elif letter.retry_count >= max_retries:
            plan.close.append((letter.id, "exhausted", f"drained {letter.retry_count} times already"))
        elif run.state == RunState.APPLYING.value:
            continue  # its writer is on it; look again next time
        else:
            plan.retry.setdefault(run.id, []).append(letter.target_id)
    return plan


def close_letters(session: Session, plan: DrainPlan, *, actor: str) -> None:
    now = utcnow()
    for letter_id, resolution, why in plan.close:
        letter = session.get(DeadLetter, letter_id)
        letter.resolved_at, letter.resolution = now, resolution
        record_event(session, "automation.dlq.closed", {"letter_id": letter_id, "run_id": letter.run_id, "target_id": letter.target_id,
                                                        "resolution": resolution, "reason": why},
                     tenant_id=letter.tenant_id, actor=actor, run_id=letter.run_id)


def prepare_drain_retry(session: Session, run_id: str, target_ids: list[int], *, actor: str) -> list[int]:
    """Right before a drain retries ``target_ids`` of ``run_id``: check them again (the plan
    may be an hour old), close what is no longer eligible, count the retry on the rest."""
    plan = plan_dlq_drain(session, run_ids=[run_id])
    close_letters(session, plan, actor=actor)
    eligible = sorted(set(plan.retry.get(run_id, [])) & set(target_ids))
    if eligible:
        session.execute(
            update(DeadLetter).where(DeadLetter.target_id.in_(eligible))
            .values(retry_count=DeadLetter.retry_count + 1, last_retry_at=utcnow()).execution_options(synchronize_session=False)
        )
    return eligible


def drain_dead_letters(warehouse_url: str, client_factory: Callable, *, actor: str, project_slug: str | None = None,
                       dry_run: bool = False, sleep: Callable[[float], None] | None = None) -> dict:
    """``calibr dlq drain``: plan, close the ineligible letters, retry the rest through the apply."""
    from calibr_pipeline.services import price_apply

    with session_scope(warehouse_url) as session:
        plan = plan_dlq_drain(session, project_slug=project_slug)
        if dry_run:
            return {"dry_run": True, **plan.as_dict()}
        close_letters(session, plan, actor=actor)
    outcomes: dict[str, str] = {}
    for run_id, target_ids in plan.retry.items():
        with session_scope(warehouse_url) as session:
            eligible = prepare_drain_retry(session, run_id, target_ids, actor=actor)
            if eligible:
                price_apply.retry_failed(session, run_id, target_ids=eligible, actor=actor)
        if eligible:
            kwargs = {"sleep": sleep} if sleep is not None else {}
            outcomes[run_id] = price_apply.apply_run(warehouse_url, run_id, client_factory, actor=actor, **kwargs).state
    return {"dry_run": False, **plan.as_dict(), "runs": outcomes}

"""After the apply: what the shop really shows, and what is left in the dead-letter queue."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Callable

from sqlalchemy import delete, select

from calibr_pipeline.connectors.shopify_admin import ShopifyAdminClient
from calibr_pipeline.connectors.shopify_admin.writes import read_variant_prices
from calibr_pipeline.domain.state_machine import TargetState
from calibr_pipeline.services.price_apply import shop_for_run
from calibr_pipeline.services.rule_runs import create_run, get_run, request_apply_of
from calibr_pipeline.warehouse.engine import session_scope
from calibr_pipeline.warehouse.models import DeadLetter, Project, ReconciliationMismatch, RuleTarget
from calibr_pipeline.warehouse.outbox import record_event

MISMATCH_EVENT = "automation.reconciliation.mismatch"
DLQ_REPORT_EVENT = "automation.dlq.report"


@dataclass(frozen=True)
class Mismatch:
    target_id: int
    sku: str
    expected: Decimal
    actual: Decimal | None

    @property
    def difference(self) -> Decimal | None:
        return None if self.actual is None else self.actual - self.expected


def diff_prices(expected: dict[int, tuple[str, str, Decimal]], shop_prices: dict[str, Decimal | None]) -> list[Mismatch]:
    """Pure: ``expected`` is target id -> (sku, variant gid, price we applied)."""
    mismatches = []
    for target_id, (sku, gid, price) in sorted(expected.items()):
        actual = shop_prices.get(gid)
        if actual != price:
            mismatches.append(Mismatch(target_id, sku, price, actual))
    return mismatches


@dataclass
class ReconciliationReport:
    run_id: str
    checked: int
    matched: int
    mismatches: list[Mismatch]
    retry_run_id: str | None = None


def reconcile_run(
    warehouse_url: str,
    run_id: str,
    client_factory: Callable,
    *,
    actor: str,
    schedule_retry: bool = False,
) -> ReconciliationReport:
    """Read back every APPLIED target's price; record and announce each mismatch.

    With ``schedule_retry`` the mismatched targets get a ``reconcile_retry`` run (and its
    ``job.rules.apply`` event) that writes them again.
    """
    with session_scope(warehouse_url) as session:
        run = get_run(session, run_id)
        shop = shop_for_run(session, run)
        expected = {
            t.id: (t.sku, t.variant_external_id, t.to_price)
            for t in session.scalars(select(RuleTarget).where(RuleTarget.run_id == run_id, RuleTarget.state == TargetState.APPLIED.value))
        }
    client: ShopifyAdminClient = client_factory(shop)
    try:
        shop_prices = read_variant_prices(client, [gid for _, gid, _ in expected.values()]) if expected else {}
    finally:
        client.close()
    mismatches = diff_prices(expected, shop_prices)
    report = ReconciliationReport(run_id, len(expected), len(expected) - len(mismatches), mismatches)
    with session_scope(warehouse_url) as session:
        run = get_run(session, run_id)
        session.execute(delete(ReconciliationMismatch).where(ReconciliationMismatch.run_id == run_id))
        if mismatches and schedule_retry:
            project_slug = session.get(Project, run.project_id).slug
            retry = create_run(session, project_slug=project_slug, actor=actor, kind="reconcile_retry", source_run_id=run_id)
            retry.run_metadata = {"target_ids": [m.target_id for m in mismatches]}
            request_apply_of(session, retry, actor=actor)
            report.retry_run_id = retry.id
        for m in mismatches:
            session.add(
                ReconciliationMismatch(
                    tenant_id=run.tenant_id, run_id=run_id, target_id=m.target_id, sku=m.sku,
                    expected_price=m.expected, actual_price=m.actual, difference=m.difference, retry_run_id=report.retry_run_id,
                )
            )
            record_event(
                session,
                MISMATCH_EVENT,
                {"run_id": run_id, "target_id": m.target_id, "sku": m.sku, "expected": str(m.expected),
                 "actual": None if m.actual is None else str(m.actual),
                 "difference": None if m.difference is None else str(m.difference), "retry_run_id": report.retry_run_id},
                tenant_id=run.tenant_id, actor=actor, correlation_id=run.correlation_id, project_id=run.project_id, run_id=run.id,
            )
        run.run_metadata = {**(run.run_metadata or {}), "reconciliation": {"checked": report.checked, "mismatched": len(mismatches)}}
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


def runs_with_transient_dead_letters(warehouse_url: str) -> dict[str, list[int]]:
    """Run id -> target ids whose unresolved dead letter is transient (what the DLQ drain retries)."""
    result: dict[str, list[int]] = defaultdict(list)
    with session_scope(warehouse_url) as session:
        for run_id, target_id in session.execute(
            select(DeadLetter.run_id, DeadLetter.target_id).where(
                DeadLetter.resolved_at.is_(None), DeadLetter.error_type.in_(sorted(TRANSIENT_ERROR_TYPES))
            ).order_by(DeadLetter.run_id, DeadLetter.target_id)
        ):
            result[run_id].append(target_id)
    return dict(result)

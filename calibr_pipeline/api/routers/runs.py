"""Rule runs: list, get (counts, progress, timings), targets, explain, and the actions that
launch work (apply, revert, retry-failed through the outbox and the rules_apply_sensor, as
the CLI does; reconcile reads the shop back and answers with the report).

Run and target states come from domain.state_machine, so states added there flow through.
"""

from __future__ import annotations

from calibr_pipeline.domain.errors import CalibrError

import base64
import json
from datetime import datetime

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import and_, func, or_, select

from calibr_pipeline.api.auth import open_scope
from calibr_pipeline.api.errors import ApiError, ConflictError
from calibr_pipeline.api.pagination import after_id, check_limit, encode_cursor
from calibr_pipeline.api.schemas import FastJSON, ReconcileBody, RetryFailedBody, iso, money, page
from calibr_pipeline.domain.state_machine import RUN_INITIAL, RUN_TRANSITIONS, TARGET_INITIAL, RunState, TargetState
from calibr_pipeline.services import price_apply
from calibr_pipeline.services.rule_runs import APPLY_REQUESTED, create_run, request_apply_of
from calibr_pipeline.warehouse.models import (
    DeadLetter,
    EventLog,
    OutboxEvent,
    PriceAudit,
    Project,
    RuleRun,
    RuleTarget,
)
from calibr_pipeline.warehouse.outbox import publish
from calibr_pipeline.warehouse.scoped import TenantScope
from calibr_pipeline.warehouse.tenancy import InvalidInputError

# Targets still waiting for or in the middle of a write; every other state is settled
# (APPLIED, FAILED and whatever terminal states the state machine gains).
IN_FLIGHT_TARGET_STATES = frozenset({TARGET_INITIAL, TargetState.APPLYING})
# Runs whose failed targets can be retried: those that may go back to APPLYING, other than a new run.
RETRYABLE_RUN_STATES = frozenset(s for s, nexts in RUN_TRANSITIONS.items() if RunState.APPLYING in nexts and s != RUN_INITIAL)
REVERTIBLE_RUN_STATES = frozenset({RunState.APPLIED, RunState.PARTIAL})


# --- reads --------------------------------------------------------------------------------


def _run_cursor(run: RuleRun) -> str:
    return base64.urlsafe_b64encode(json.dumps([run.queued_at.isoformat(), run.id]).encode()).decode().rstrip("=")


def _decode_run_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        at, run_id = json.loads(base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode()))
        return datetime.fromisoformat(at), str(run_id)
    except Exception:
        raise ApiError(400, "invalid_cursor", "invalid cursor: pass the nextCursor of the previous page") from None


def target_counts(scope: TenantScope, run_id: str) -> dict:
    rows = scope.session.execute(
        scope.select(RuleTarget, RuleTarget.action, RuleTarget.state, RuleTarget.proposal_status, func.count())
        .where(RuleTarget.run_id == run_id)
        .group_by(RuleTarget.action, RuleTarget.state, RuleTarget.proposal_status)
    ).all()
    by_state = {state.value: 0 for state in TargetState}
    by_proposal: dict[str, int] = {}
    total = writes = settled = 0
    for action, state, proposal, count in rows:
        total += count
        by_proposal[proposal] = by_proposal.get(proposal, 0) + count
        if action == "write":
            writes += count
            if state is not None:
                by_state[state] = by_state.get(state, 0) + count
                if state not in IN_FLIGHT_TARGET_STATES:
                    settled += count
    return {"total": total, "toWrite": writes, "byState": by_state, "byProposal": dict(sorted(by_proposal.items())), "settled": settled}


def run_json(scope: TenantScope, run: RuleRun, *, detail: bool = False) -> dict:
    rule_name = scope.rule_name(run.rule_id) if run.rule_id else None
    data = {
        "runId": run.id,
        "kind": run.kind,
        "state": run.state,
        "project": scope.project_slug(run.project_id),
        "rule": None if rule_name is None else {"id": run.rule_id, "name": rule_name},
        "sourceRunId": run.source_run_id,
        "requestedBy": run.requested_by,
        "queuedAt": iso(run.queued_at),
        "startedAt": iso(run.started_at),
        "completedAt": iso(run.completed_at),
        "failedAt": iso(run.failed_at),
        "error": run.error,
    }
    if detail:
        counts = target_counts(scope, run.id)
        settled = counts.pop("settled")
        end = run.completed_at or run.failed_at
        data |= {
            "targets": counts,
            "progress": round(settled / counts["toWrite"], 4) if counts["toWrite"] else (1.0 if run.state != RunState.QUEUED else 0.0),
            "timings": {
                "queuedSeconds": (run.started_at - run.queued_at).total_seconds() if run.started_at else None,
                "applySeconds": (end - run.started_at).total_seconds() if end and run.started_at else None,
                "estimatedApplySeconds": (run.run_metadata or {}).get("estimated_apply_seconds"),
            },
            "deadLetters": scope.session.scalar(
                scope.select(DeadLetter, func.count()).where(DeadLetter.run_id == run.id, DeadLetter.resolved_at.is_(None))
            ),
            "reconciliation": (run.run_metadata or {}).get("reconciliation"),
            # A PARTIAL/FAILED run whose failed targets were queued for another attempt: it
            # stays PARTIAL/FAILED until the apply launched for it claims it.
            "retryQueued": run.state in (RunState.PARTIAL, RunState.FAILED)
            and bool(counts["byState"].get(TargetState.APPLYING.value) or counts["byState"].get(TargetState.PENDING.value)),
        }
    return data


# What target_json reads: a RuleTarget or a row of these columns.
_TARGET_PAGE_COLUMNS = tuple(getattr(RuleTarget, name) for name in (
    "id", "run_id", "sku", "variant_id", "currency", "from_price", "to_price", "action", "proposal_status", "reason", "state",
    "attempts", "max_attempts", "error", "error_code", "last_attempt_at", "applied_at",
))


def target_json(t: RuleTarget) -> dict:
    return {
        "id": t.id, "runId": t.run_id, "skuId": t.sku, "variantId": t.variant_id, "currency": t.currency,
        "fromPrice": money(t.from_price), "toPrice": money(t.to_price), "action": t.action, "proposal": t.proposal_status,
        "reason": t.reason, "state": t.state, "attempts": t.attempts, "maxAttempts": t.max_attempts, "error": t.error,
        "errorCode": t.error_code, "lastAttemptAt": iso(t.last_attempt_at), "appliedAt": iso(t.applied_at),
    }


def list_targets(scope: TenantScope, run_id: str, *, state: str | None, limit: int, cursor: str | None) -> dict:
    scope.run(run_id)
    # Plain rows of the columns the page shows, not ORM objects: no explain trace (the heavy
    # column; GET …/explain has it) and no identity-map bookkeeping for a read-only page.
    query = scope.select(RuleTarget, *_TARGET_PAGE_COLUMNS).where(RuleTarget.run_id == run_id).order_by(RuleTarget.id)
    if state:
        valid = {s.value for s in TargetState}
        if state not in valid:
            raise ApiError(422, "invalid_input", f"state {state!r} is not one of {', '.join(sorted(valid))}", {"field": "state"})
        query = query.where(RuleTarget.state == state)
    after = after_id(cursor)
    if after is not None:
        query = query.where(RuleTarget.id > after)
    rows = scope.session.execute(query.limit(limit + 1)).all()
    items = [target_json(t) for t in rows[:limit]]
    return page(items, encode_cursor(items[-1]["id"]) if len(rows) > limit else None)


def explain(scope: TenantScope, target_id: int) -> dict:
    target = scope.target(target_id)
    writes = scope.session.scalars(scope.select(PriceAudit).where(PriceAudit.target_id == target.id).order_by(PriceAudit.id)).all()
    dead = scope.session.scalar(scope.select(DeadLetter).where(DeadLetter.target_id == target.id))
    events = scope.session.scalars(scope.select(EventLog).where(EventLog.run_id == target.run_id).order_by(EventLog.id).limit(200)).all()
    trail = [
        {"at": iso(a.created_at), "eventType": a.event_type, "actor": a.actor, "from": money(a.from_price), "to": money(a.to_price),
         "idempotencyKey": a.idempotency_key, "note": a.note}
        for a in writes
    ]
    run_events = [
        {"at": iso(e.created_at), "eventType": e.event_type, "actor": e.actor, "payload": e.payload}
        for e in events
        if not isinstance(e.payload, dict) or "target_id" not in e.payload or e.payload.get("target_id") == target.id
        if not isinstance(e.payload, dict) or "targets" not in e.payload or target.id in (e.payload.get("targets") or [])
    ]
    return {
        "target": target_json(target),
        "explain": target.explain,
        "auditTrail": trail,
        "deadLetter": None if dead is None else {
            "errorType": dead.error_type, "errorMessage": dead.error_message, "attempts": dead.attempts,
            "createdAt": iso(dead.created_at), "resolvedAt": iso(dead.resolved_at), "resolution": dead.resolution,
        },
        "runEvents": run_events,
    }


# --- actions (shared with the console) ---------------------------------------------------------


def _queue_position(scope: TenantScope, event_id: str) -> int:
    event = scope.session.get(OutboxEvent, event_id)
    return scope.session.scalar(
        scope.select(OutboxEvent, func.count()).where(
            OutboxEvent.event_type == APPLY_REQUESTED,
            OutboxEvent.dispatched_at.is_(None),
            or_(OutboxEvent.created_at < event.created_at, and_(OutboxEvent.created_at == event.created_at, OutboxEvent.id <= event.id)),
        )
    )


def _refuse_if_apply_queued(scope: TenantScope, run) -> None:
    """A run whose apply is already queued gets no second request (it would be collapsed anyway)."""
    pending = scope.session.scalars(
        scope.select(OutboxEvent).where(OutboxEvent.event_type == APPLY_REQUESTED, OutboxEvent.dispatched_at.is_(None)).order_by(OutboxEvent.created_at)
    ).all()
    waiting = next((e for e in pending if isinstance(e.payload, dict) and e.payload.get("run_id") == run.id), None)
    if waiting is not None:
        raise ConflictError(f"the apply of run {run.id} is already queued (event {waiting.id})", {"state": run.state, "eventId": waiting.id})


def request_apply(scope: TenantScope, run_id: str, *, actor: str) -> dict:
    run = scope.run(run_id)
    _refuse_if_apply_queued(scope, run)
    try:
        event_id = request_apply_of(scope.session, run, actor=actor)
    except InvalidInputError as exc:  # the run is APPLYING or finished: a state conflict
        raise ConflictError(str(exc), {"state": run.state}) from None
    scope.session.flush()
    return {"runId": run.id, "status": "queued", "queuePosition": _queue_position(scope, event_id), "eventId": event_id}


def request_revert(scope: TenantScope, run_id: str, *, actor: str) -> dict:
    source = scope.run(run_id)
    if source.state not in REVERTIBLE_RUN_STATES:
        raise ConflictError(
            f"run {run_id} is {source.state}; only {' or '.join(sorted(REVERTIBLE_RUN_STATES))} runs can be reverted", {"state": source.state}
        )
    project = scope.session.get(Project, source.project_id)
    run = create_run(scope.session, project_slug=project.slug, actor=actor, kind="revert", source_run_id=source.id)
    event_id = request_apply_of(scope.session, run, actor=actor)
    scope.session.flush()
    return {"runId": run.id, "sourceRunId": source.id, "status": "queued", "queuePosition": _queue_position(scope, event_id), "eventId": event_id}


def retry_failed(scope: TenantScope, run_id: str, target_ids: list[int] | None, *, actor: str) -> dict:
    run = scope.run(run_id)
    if run.state not in RETRYABLE_RUN_STATES:
        raise ConflictError(
            f"run {run_id} is {run.state}; failed targets can be retried only in {' or '.join(sorted(RETRYABLE_RUN_STATES))} runs",
            {"state": run.state},
        )
    _refuse_if_apply_queued(scope, run)
    wanted = sorted(set(target_ids or ()))
    if wanted:
        found = set(scope.session.scalars(scope.select(RuleTarget, RuleTarget.id).where(RuleTarget.run_id == run.id, RuleTarget.id.in_(wanted))).all())
        unknown = [i for i in wanted if i not in found]
        if unknown:
            raise ApiError(422, "invalid_input", f"target id(s) {unknown} are not targets of run {run_id}", {"unknownTargetIds": unknown})
    query = scope.select(RuleTarget).where(RuleTarget.run_id == run.id, RuleTarget.state == TargetState.FAILED.value).order_by(RuleTarget.id)
    if wanted:
        query = query.where(RuleTarget.id.in_(wanted))
    failed = [(t.id, t.sku, t.error) for t in scope.session.scalars(query).all()]
    try:
        retried = price_apply.retry_failed(scope.session, run.id, target_ids=wanted or None, actor=actor) if failed else 0
    except CalibrError as exc:  # reverted, or being applied right now
        raise ConflictError(str(exc), {"state": run.state}) from None
    event_id = None
    if retried:
        # Its failed targets are APPLYING now (read back before any write); the sensor launches
        # apply_run, which claims the run.
        event_id = publish(scope.session, APPLY_REQUESTED, {"run_id": run.id, "kind": run.kind}, tenant_id=run.tenant_id,
                           actor=actor, project_id=run.project_id, run_id=run.id).id
    states = dict(scope.session.execute(select(RuleTarget.id, RuleTarget.state).where(RuleTarget.id.in_([i for i, _, _ in failed]))).all()) if failed else {}
    return {
        "runId": run.id,
        "status": "queued" if retried else "nothing_to_retry",
        "retriedCount": retried,
        "eventId": event_id,
        "queuePosition": _queue_position(scope, event_id) if event_id else None,
        "targets": [{"id": i, "skuId": sku, "previousError": error, "status": states.get(i)} for i, sku, error in failed],
    }


def _client_for(shop):
    from calibr_pipeline.connectors.shopify_admin import ShopifyAdminClient

    return ShopifyAdminClient(shop.admin_endpoint, shop.access_token, api_version=shop.api_version or "2025-01", timeout=30.0)


def build_router(require_read, require_write) -> APIRouter:
    router = APIRouter(tags=["runs"])

    @router.get("/api/v1/runs", summary="Runs of the tenant, newest first (filter by state, rule, project, time)")
    def list_runs(
        request: Request,
        state: str | None = None,
        rule: int | None = Query(None, description="rule id"),
        project: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = Query(50),
        cursor: str | None = None,
        principal=Depends(require_read),
    ):
        check_limit(limit)
        with open_scope(request, principal) as scope:
            query = scope.select(RuleRun).order_by(RuleRun.queued_at.desc(), RuleRun.id.desc())
            if state:
                valid = {s.value for s in RunState}
                if state not in valid:
                    raise ApiError(422, "invalid_input", f"state {state!r} is not one of {', '.join(sorted(valid))}", {"field": "state"})
                query = query.where(RuleRun.state == state)
            if rule is not None:
                query = query.where(RuleRun.rule_id == scope.rule(rule).id)
            if project:
                query = query.where(RuleRun.project_id == scope.project(project).id)
            if since:
                query = query.where(RuleRun.queued_at >= since)
            if until:
                query = query.where(RuleRun.queued_at < until)
            if cursor:
                at, run_id = _decode_run_cursor(cursor)
                query = query.where(or_(RuleRun.queued_at < at, and_(RuleRun.queued_at == at, RuleRun.id < run_id)))
            runs = scope.session.scalars(query.limit(limit + 1)).all()
            items = [run_json(scope, r) for r in runs[:limit]]
            return FastJSON(page(items, _run_cursor(runs[limit - 1]) if len(runs) > limit else None))

    @router.get("/api/v1/runs/{run_id}", summary="One run: state, target counts per state, progress, timings")
    def get_run(run_id: str, request: Request, principal=Depends(require_read)):
        with open_scope(request, principal) as scope:
            return FastJSON(run_json(scope, scope.run(run_id), detail=True))

    @router.get("/api/v1/runs/{run_id}/targets", summary="A run's targets (paginated, filter by state)")
    def run_targets(run_id: str, request: Request, state: str | None = None, limit: int = Query(100), cursor: str | None = None, principal=Depends(require_read)):
        check_limit(limit)
        with open_scope(request, principal) as scope:
            return FastJSON(list_targets(scope, run_id, state=state, limit=limit, cursor=cursor))

    @router.get("/api/v1/targets/{target_id}/explain", summary="A target's explain trace and audit trail")
    def target_explain(target_id: int, request: Request, principal=Depends(require_read)):
        with open_scope(request, principal) as scope:
            return FastJSON(explain(scope, target_id))

    @router.post("/api/v1/runs/{run_id}/apply", status_code=202, summary="Queue the apply of a run (outbox -> rules_apply_sensor)")
    def apply(run_id: str, request: Request, principal=Depends(require_write)):
        with open_scope(request, principal) as scope:
            return request_apply(scope, run_id, actor=principal.actor)

    @router.post("/api/v1/runs/{run_id}/revert", status_code=202, summary="Queue a revert run restoring the run's previous prices")
    def revert(run_id: str, request: Request, principal=Depends(require_write)):
        with open_scope(request, principal) as scope:
            return request_revert(scope, run_id, actor=principal.actor)

    @router.post("/api/v1/runs/{run_id}/retry-failed", status_code=202, summary="Retry FAILED targets (all, or targetIds)")
    def retry(run_id: str, request: Request, body: RetryFailedBody | None = Body(None), principal=Depends(require_write)):
        with open_scope(request, principal) as scope:
            result = retry_failed(scope, run_id, body.targetIds if body else None, actor=principal.actor)
        return JSONResponse(result, status_code=202 if result["retriedCount"] else 200)

    @router.post("/api/v1/runs/{run_id}/reconcile", summary="Read the run's applied prices back from the shop; the report")
    def reconcile(run_id: str, request: Request, body: ReconcileBody | None = Body(None), principal=Depends(require_write)):
        from calibr_pipeline.connectors.shopify_admin.errors import ShopifyAdminError
        from calibr_pipeline.monitoring.connector_stats import recording_clients
        from calibr_pipeline.services.reconciliation import reconcile_run

        with open_scope(request, principal) as scope:
            run = scope.run(run_id)
            if run.state == RunState.QUEUED:
                raise ConflictError(f"run {run_id} is QUEUED: nothing was applied yet", {"state": run.state})
        url = request.app.state.warehouse_url
        try:
            with recording_clients(_client_for, url) as client_for:
                report = reconcile_run(url, run_id, client_for, actor=principal.actor, schedule_retry=bool(body and body.scheduleRetry))
        except ShopifyAdminError as exc:
            raise ApiError(502, "shop_unavailable", f"could not read prices from the shop: {' '.join(str(exc).split())[:300]}") from None
        return {
            "runId": report.run_id,
            "checked": report.checked,
            "matched": report.matched,
            "mismatches": [
                {"targetId": m.target_id, "skuId": m.sku, "expected": money(m.expected), "actual": money(m.actual), "difference": money(m.difference)}
                for m in report.mismatches
            ],
            "retryRunId": report.retry_run_id,
        }

    return router

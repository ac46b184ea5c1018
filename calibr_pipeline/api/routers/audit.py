"""The audit trail and the price changes, with filters and cursor pagination, scoped to the caller's tenant."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Query, Request

from calibr_pipeline.api.auth import open_scope
from calibr_pipeline.api.pagination import after_id, check_limit, encode_cursor
from calibr_pipeline.api.schemas import FastJSON, iso, money, page
from calibr_pipeline.services.audit import AuditFilters, query_audit
from calibr_pipeline.warehouse.models import PriceAudit, Project


def build_router(require_read, require_write) -> APIRouter:
    router = APIRouter(tags=["audit"])

    @router.get("/api/v1/audit", summary="Audit events, oldest first (filters: project, run, event type, actor, time range)")
    def audit(
        request: Request,
        project: str | None = None,
        run: str | None = None,
        eventType: list[str] | None = Query(None, description="repeatable, e.g. price.applied"),
        actor: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = Query(50),
        cursor: str | None = None,
        principal=Depends(require_read),
    ):
        check_limit(limit)
        after_id(cursor)  # a bad cursor is a 400 before any query
        with open_scope(request, principal) as scope:
            if project:
                scope.project(project)
            if run:
                scope.run(run)
            filters = AuditFilters(
                tenant=principal.tenant_slug, project=project, run_id=run, event_types=tuple(eventType or ()), since=since, until=until, actor=actor
            )
            rows, next_cursor = query_audit(scope.session, filters, limit=limit, cursor=cursor)
        return FastJSON(page(rows, next_cursor))

    @router.get("/api/v1/price-changes", summary="Every effective price write, oldest first (filters: project, run, actor, event type, time range)")
    def price_changes(
        request: Request,
        project: str | None = None,
        run: str | None = None,
        eventType: str | None = Query(None, description="price.applied or price.reverted"),
        actor: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = Query(100),
        cursor: str | None = None,
        principal=Depends(require_read),
    ):
        check_limit(limit)
        after = after_id(cursor)
        with open_scope(request, principal) as scope:
            query = scope.select(PriceAudit, PriceAudit, Project.slug).join(Project, Project.id == PriceAudit.project_id).order_by(PriceAudit.id)
            if project:
                query = query.where(PriceAudit.project_id == scope.project(project).id)
            if run:
                query = query.where(PriceAudit.run_id == scope.run(run).id)
            if eventType:
                query = query.where(PriceAudit.event_type == eventType)
            if actor:
                query = query.where(PriceAudit.actor == actor)
            if since:
                query = query.where(PriceAudit.created_at >= since)
            if until:
                query = query.where(PriceAudit.created_at < until)
            if after is not None:
                query = query.where(PriceAudit.id > after)
            rows = scope.session.execute(query.limit(limit + 1)).all()
            items = [
                {
                    "id": a.id, "at": iso(a.created_at), "project": slug, "runId": a.run_id, "targetId": a.target_id, "skuId": a.sku,
                    "eventType": a.event_type, "actor": a.actor, "from": money(a.from_price), "to": money(a.to_price), "currency": a.currency,
                    "correlationId": a.correlation_id, "note": a.note,
                }
                for a, slug in rows[:limit]
            ]
        return FastJSON(page(items, encode_cursor(items[-1]["id"]) if len(rows) > limit else None))

    return router

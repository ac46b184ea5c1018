"""Audit queries with filters and opaque cursor pagination (stable under concurrent inserts)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from calibr_pipeline.domain.errors import CalibrError
from calibr_pipeline.warehouse.models import EventLog, Project, Tenant

MAX_PAGE = 500


@dataclass(frozen=True)
class AuditFilters:
    tenant: str | None = None
    project: str | None = None
    run_id: str | None = None
    event_types: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": last_id}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))["after"]
        if not isinstance(value, int) or value < 0:
            raise ValueError
        return value
    except Exception:
        raise CalibrError(f"invalid cursor {cursor!r}: pass the next_cursor printed by the previous page") from None


def query_audit(session: Session, filters: AuditFilters, *, limit: int = 50, cursor: str | None = None) -> tuple[list[dict], str | None]:
    """Events oldest first; returns (rows, next cursor or None when this is the last page)."""
    if not 1 <= limit <= MAX_PAGE:
        raise CalibrError(f"limit must be between 1 and {MAX_PAGE}, got {limit}")
    query = (
        select(EventLog, Tenant.slug, Project.slug)
        .outerjoin(Tenant, Tenant.id == EventLog.tenant_id)
        .outerjoin(Project, Project.id == EventLog.project_id)
        .order_by(EventLog.id)
    )
    if filters.tenant:
        query = query.where(Tenant.slug == filters.tenant)
    if filters.project:
        query = query.where(Project.slug == filters.project)
    if filters.run_id:
        query = query.where(EventLog.run_id == filters.run_id)
    if filters.event_types:
        query = query.where(EventLog.event_type.in_(filters.event_types))
    if filters.since:
        query = query.where(EventLog.created_at >= filters.since)
    if filters.until:
        query = query.where(EventLog.created_at < filters.until)
    if cursor:
        query = query.where(EventLog.id > decode_cursor(cursor))
    rows = session.execute(query.limit(limit + 1)).all()
    page = [
        {
            "id": event.id,
            "at": event.created_at.isoformat(),
            "tenant": tenant,
            "project": project,
            "run_id": event.run_id,
            "event_type": event.event_type,
            "actor": event.actor,
            "correlation_id": event.correlation_id,
            "payload": event.payload,
        }
        for event, tenant, project in rows[:limit]
    ]
    next_cursor = encode_cursor(page[-1]["id"]) if len(rows) > limit else None
    return page, next_cursor

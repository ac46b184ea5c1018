"""Audit queries with filters and opaque cursor pagination (stable under concurrent inserts)."""

from __future__ import annotations

import base64
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from calibr_pipeline.domain.errors import CalibrError
from calibr_pipeline.domain.money import quantize
from calibr_pipeline.warehouse.models import EventLog, Project, Tenant
from calibr_pipeline.warehouse.outbox import read_logged

MAX_PAGE = 500
# Reading an event validates (and upcasts) its payload against the registry, which costs
# far more than fetching it (about 0.15 ms a row). ``event_log`` rows never change once
# written, so the outcome per row is remembered for the most recently read rows: pages
# that are read again and again (the console, pollers, probes) are validated once.
_READ_CACHE_SIZE = 50_000
_read_cache: OrderedDict[tuple, tuple] = OrderedDict()
_read_cache_lock = threading.Lock()


@dataclass(frozen=True)
class AuditFilters:
    tenant: str | None = None
    project: str | None = None
    run_id: str | None = None
    event_types: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    actor: str | None = None


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


def query_audit(
    session: Session, filters: AuditFilters, *, limit: int = 50, cursor: str | None = None, newest_first: bool = False,
    include_archived: bool = False,
) -> tuple[list[dict], str | None]:
    """Events oldest first (or newest first); returns (rows, next cursor or None when this is the last page).

    ``include_archived`` also reads the months moved to cold storage (``calibr events archive``).
    """
    if not 1 <= limit <= MAX_PAGE:
        raise CalibrError(f"limit must be between 1 and {MAX_PAGE}, got {limit}")
    query = (
        select(EventLog, Tenant.slug, Project.slug)
        .outerjoin(Tenant, Tenant.id == EventLog.tenant_id)
        .outerjoin(Project, Project.id == EventLog.project_id)
        .order_by(EventLog.id.desc() if newest_first else EventLog.id)
    )
    if filters.tenant:
        query = query.where(Tenant.slug == filters.tenant)
    if filters.project:
        query = query.where(Project.slug == filters.project)
    if filters.run_id:
        query = query.where(EventLog.run_id == filters.run_id)
    if filters.event_types:
        query = query.where(EventLog.event_type.in_(filters.event_types))
    if filters.actor:
        query = query.where(EventLog.actor == filters.actor)
    if filters.since:
        query = query.where(EventLog.created_at >= filters.since)
    if filters.until:
        query = query.where(EventLog.created_at < filters.until)
    if cursor:
        after = decode_cursor(cursor)
        query = query.where(EventLog.id < after if newest_first else EventLog.id > after)
    rows = [
        _audit_row(event.id, event.created_at, tenant, project, event.run_id, event.event_type, event.actor, event.correlation_id,
                   event.payload, event.schema_version)
        for event, tenant, project in session.execute(query.limit(limit + 1)).all()
    ]
    if include_archived:
        # Archived months live in cold storage with their original ids: merge them in id order.
        position = decode_cursor(cursor) if cursor else None
        archived = _archived_audit_rows(session, filters, after_id=None if newest_first else position)
        if newest_first:
            archived = [r for r in archived if position is None or r["id"] < position][::-1]
        rows = sorted(rows + archived[: limit + 1], key=lambda r: r["id"], reverse=newest_first)[: limit + 1]
    page = rows[:limit]
    next_cursor = encode_cursor(page[-1]["id"]) if len(rows) > limit else None
    return page, next_cursor


def _archived_audit_rows(session: Session, filters: AuditFilters, *, after_id: int | None, limit: int | None = None) -> list[dict]:
    """The archived events (by id, the first ``limit`` when given) that match the filters."""
    from calibr_pipeline.events.archive import archived_event_log_rows

    projects = dict(session.execute(select(Project.id, Project.slug)).all())
    matched = []
    for raw in archived_event_log_rows(session, tenant=filters.tenant, since=filters.since, until=filters.until):
        project = projects.get(raw.get("project_id"))
        if (
            (after_id is not None and raw["id"] <= after_id)
            or (filters.project and project != filters.project)
            or (filters.run_id and raw.get("run_id") != filters.run_id)
            or (filters.event_types and raw["event_type"] not in filters.event_types)
            or (filters.since and raw["created_at"] < filters.since)
            or (filters.until and raw["created_at"] >= filters.until)
        ):
            continue
        tenant = None if raw["tenant_key"] == "_global" else raw["tenant_key"]
        matched.append(_audit_row(raw["id"], raw["created_at"], tenant, project, raw.get("run_id"), raw["event_type"], raw["actor"],
                                  raw.get("correlation_id"), raw["payload"], raw.get("schema_version")) | {"archived": True})
    matched.sort(key=lambda r: r["id"])
    return matched if limit is None else matched[:limit]


def _audit_row(event_id, created_at, tenant, project, run_id, event_type, actor, correlation_id, payload, schema_version) -> dict:
    """One audit row; the payload upcast to its type's current version (``schema_error`` when it cannot be)."""
    # The stored payload is part of the check: ids repeat across the warehouses (and test
    # schemas) one process may read, and comparing two small dicts is cheap next to validating.
    key = (event_id, event_type, schema_version)
    with _read_cache_lock:
        hit = _read_cache.get(key)
        if hit is not None and hit[0] == payload:
            _read_cache.move_to_end(key)
            cached = hit[1]
        else:
            cached = None
    if cached is None:
        cached = read_logged(event_type, schema_version, payload)
        with _read_cache_lock:
            _read_cache[key] = (payload, cached)
            if len(_read_cache) > _READ_CACHE_SIZE:
                _read_cache.popitem(last=False)
    version, current, problem = cached
    row = {
        "id": event_id,
        "at": created_at.isoformat(),
        "tenant": tenant,
        "project": project,
        "run_id": run_id,
        "event_type": event_type,
        "actor": actor,
        "correlation_id": correlation_id,
        "payload": current,
        "schema_version": version,
    }
    if problem:
        row["schema_error"] = problem
    return row


def render_audit_report(session: Session, *, tenants: list[str] | None = None, per_tenant: int = 8) -> str:
    """A Markdown audit report: each tenant's runs, price writes with explain traces, events."""
    from calibr_pipeline.warehouse.models import PriceAudit, PricingRule, RuleRun, RuleTarget

    lines = ["# Audit sample", "", "Generated from the demo tenants by `calibr audit --markdown`.", ""]
    slugs = tenants or list(session.scalars(select(Tenant.slug).order_by(Tenant.slug)))
    for slug in slugs:
        tenant = session.scalar(select(Tenant).where(Tenant.slug == slug))
        if tenant is None:
            continue
        lines += [f"## Tenant `{slug}`", "", "| run | rule | kind | state | queued | completed | by |", "|---|---|---|---|---|---|---|"]
        runs = session.execute(
            select(RuleRun, PricingRule.name).outerjoin(PricingRule, PricingRule.id == RuleRun.rule_id).where(RuleRun.tenant_id == tenant.id).order_by(RuleRun.queued_at)
        ).all()
        for run, rule in runs:
            completed = f"{run.completed_at:%Y-%m-%d %H:%M:%S}" if run.completed_at else "-"
            lines.append(f"| `{run.id[:8]}` | {rule or '-'} | {run.kind} | {run.state} | {run.queued_at:%Y-%m-%d %H:%M:%S} | {completed} | {run.requested_by} |")
        audits = session.scalars(select(PriceAudit).where(PriceAudit.tenant_id == tenant.id).order_by(PriceAudit.id).limit(per_tenant)).all()
        total = session.scalar(select(func.count()).select_from(PriceAudit).where(PriceAudit.tenant_id == tenant.id))
        lines += ["", f"Price writes ({total} in all; the first {len(audits)}):", "", "| at | run | SKU | from → to | event | actor | idempotency key |", "|---|---|---|---|---|---|---|"]
        for a in audits:
            lines.append(f"| {a.created_at:%H:%M:%S} | `{a.run_id[:8]}` | {a.sku} | {quantize(a.from_price, a.currency)} → {quantize(a.to_price, a.currency)} {a.currency} | {a.event_type} | {a.actor} | `{a.idempotency_key[:8]}…:{a.target_id}` |")
        if audits:
            target = session.get(RuleTarget, audits[0].target_id)
            lines += ["", f"Explain trace of `{target.sku}`:", "", "```json", json.dumps(target.explain, indent=2, sort_keys=True, default=str), "```"]
        counts = session.execute(
            select(EventLog.event_type, func.count()).where(EventLog.tenant_id == tenant.id).group_by(EventLog.event_type).order_by(EventLog.event_type)
        ).all()
        lines += ["", "Events in the audit trail:", "", "| event type | count |", "|---|---|", *[f"| {t} | {n} |" for t, n in counts], ""]
    return "\n".join(lines) + "\n"

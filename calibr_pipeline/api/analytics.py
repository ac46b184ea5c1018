"""Analytics routes: ``GET /api/v1/analytics/{projectSlug}/overview``.

A factory, so the API's owner mounts it with its own auth dependencies::

    app.include_router(build_router(require_read, require_write))

``require_read`` returns the principal (``tenant_id``, ``tenant_slug``, ``token_id``,
``scope``); every read is scoped by ``principal.tenant_id``, and another tenant's project
answers 404 exactly like a project that does not exist (no existence oracle).

Money is exact: decimal strings in the project currency (and the integer minor units).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query
from sqlalchemy import inspect, select, text

from calibr_pipeline import settings
from calibr_pipeline.domain.money import from_minor_units
from calibr_pipeline.warehouse.engine import get_engine, session_scope
from calibr_pipeline.warehouse.models import Project

_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
MAX_DAYS = 366


def _money(minor: Any, currency: str) -> str | None:
    return None if minor is None else str(from_minor_units(int(minor), currency))


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def overview_for(warehouse_url: str, tenant_id: int, project_slug: str, start: dt.date, end: dt.date) -> dict[str, Any] | None:
    """The overview rows of one of the tenant's projects, or None when it is not theirs."""
    with session_scope(warehouse_url) as session:
        project = session.scalar(select(Project).where(Project.slug == project_slug, Project.tenant_id == tenant_id))
        if project is None:
            return None
        currency = project.currency
        built = inspect(get_engine(warehouse_url)).has_table("analytics_overview")
        rows = []
        if built:
            rows = session.execute(
                text(
                    "SELECT day, orders, units, revenue_minor, cost_minor, margin_minor, margin_pct, price_index, "
                    "skus_with_market, share_lowest_pct, share_middle_pct, share_highest_pct, price_changes, "
                    "runs_applied, runs_partial, runs_failed FROM analytics_overview "
                    "WHERE project_id = :project AND tenant_id = :tenant AND day BETWEEN :start AND :end ORDER BY day"
                ),
                {"project": project.id, "tenant": tenant_id, "start": start, "end": end},
            ).all()
    days = [
        {
            "day": str(r.day)[:10],
            "orders": int(r.orders),
            "units": int(r.units),
            "revenue": _money(r.revenue_minor, currency),
            "cost": _money(r.cost_minor, currency),
            "gross_margin": _money(r.margin_minor, currency),
            "margin_pct": _number(r.margin_pct),
            "price_index": _number(r.price_index),
            "skus_with_market": int(r.skus_with_market),
            "share_lowest_pct": _number(r.share_lowest_pct),
            "share_middle_pct": _number(r.share_middle_pct),
            "share_highest_pct": _number(r.share_highest_pct),
            "price_changes": int(r.price_changes),
            "runs": {"applied": int(r.runs_applied), "partial": int(r.runs_partial), "failed": int(r.runs_failed)},
        }
        for r in rows
    ]
    revenue = sum(int(r.revenue_minor or 0) for r in rows)
    known = [r for r in rows if r.margin_minor is not None]
    margin = sum(int(r.margin_minor) for r in known)
    return {
        "project": project_slug,
        "currency": currency,
        "from": start.isoformat(),
        "to": end.isoformat(),
        "models_built": built,
        "totals": {
            "orders": sum(d["orders"] for d in days),
            "units": sum(d["units"] for d in days),
            "revenue": _money(revenue, currency),
            "gross_margin": _money(margin, currency) if known else None,
            "price_changes": sum(d["price_changes"] for d in days),
        },
        "days": days,
    }


def build_router(require_read: Callable[..., Any], require_write: Callable[..., Any], *, warehouse_url: str | None = None) -> APIRouter:
    """``require_write`` is accepted for symmetry with the other areas; analytics is read-only."""
    router = APIRouter(prefix="/api/v1/analytics", tags=["analytics"])

    @router.get("/{projectSlug}/overview")
    def project_overview(
        projectSlug: str,
        principal: Any = Depends(require_read),
        start: dt.date | None = Query(None, alias="from", description="first day (UTC), default 29 days before `to`"),
        end: dt.date | None = Query(None, alias="to", description="last day (UTC), default yesterday"),
    ) -> dict[str, Any]:
        if not _SLUG.fullmatch(projectSlug):
            raise HTTPException(status_code=404, detail="project not found")
        end = end or (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1))
        start = start or (end - dt.timedelta(days=29))
        if start > end:
            raise HTTPException(status_code=422, detail="`from` must not be after `to`")
        if (end - start).days + 1 > MAX_DAYS:
            raise HTTPException(status_code=422, detail=f"at most {MAX_DAYS} days per request")
        body = overview_for(warehouse_url or settings.warehouse_url(), int(principal.tenant_id), projectSlug, start, end)
        if body is None:
            raise HTTPException(status_code=404, detail="project not found")
        return body

    return router

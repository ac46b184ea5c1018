"""Competitor listings: register by URL + SKU (same policy as the CLI), list, observations."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import func, select

from calibr_pipeline import settings
from calibr_pipeline.api.auth import open_scope
from calibr_pipeline.api.errors import ApiError
from calibr_pipeline.api.pagination import DEFAULT_LIMIT, after_id, check_limit, encode_cursor
from calibr_pipeline.api.schemas import CompetitorCreate, FastJSON, iso, money, page
from calibr_pipeline.services.competitor_monitoring import register_listing
from calibr_pipeline.warehouse.models import (
    Competitor,
    CompetitorListing,
    CompetitorPriceObservation,
    MarketPosition,
    NormalizedPriceSnapshot,
    Project,
    Variant,
)
from calibr_pipeline.warehouse.scoped import TenantScope
from calibr_pipeline.warehouse.tenancy import NotFoundError


def _listings(scope: TenantScope, *, project_id: int | None, limit: int, cursor: str | None) -> dict:
    query = (
        scope.select(CompetitorListing, CompetitorListing, Variant.sku, Competitor.name, Project.slug)
        .join(Variant, Variant.id == CompetitorListing.variant_id)
        .join(Competitor, Competitor.id == CompetitorListing.competitor_id)
        .order_by(CompetitorListing.id)
    )
    if project_id is not None:
        query = query.where(CompetitorListing.project_id == project_id)
    after = after_id(cursor)
    if after is not None:
        query = query.where(CompetitorListing.id > after)
    rows = scope.session.execute(query.limit(limit + 1)).all()
    shown = rows[:limit]
    ids = [r[0].id for r in shown]
    variant_ids = list({r[0].variant_id for r in shown})
    latest_price: dict[int, NormalizedPriceSnapshot] = {}
    latest_obs: dict[int, CompetitorPriceObservation] = {}
    positions: dict[int, MarketPosition] = {}
    if ids:
        S = NormalizedPriceSnapshot
        newest = select(S.listing_id, func.max(S.snapshot_date).label("d")).where(S.listing_id.in_(ids)).group_by(S.listing_id).subquery()
        for snap in scope.session.scalars(
            scope.select(S).join(newest, (newest.c.listing_id == S.listing_id) & (newest.c.d == S.snapshot_date))
        ):
            latest_price[snap.listing_id] = snap
        O = CompetitorPriceObservation
        newest_obs = select(func.max(O.id)).where(O.listing_id.in_(ids)).group_by(O.listing_id)
        for obs in scope.session.scalars(scope.select(O).where(O.id.in_(newest_obs))):
            latest_obs[obs.listing_id] = obs
        M = MarketPosition
        newest_pos = select(M.variant_id, func.max(M.position_date).label("d")).where(M.variant_id.in_(variant_ids)).group_by(M.variant_id).subquery()
        for pos in scope.session.scalars(
            scope.select(M).join(newest_pos, (newest_pos.c.variant_id == M.variant_id) & (newest_pos.c.d == M.position_date))
        ):
            positions[pos.variant_id] = pos
    items = []
    for listing, sku, competitor, project_slug in shown:
        snap, obs, pos = latest_price.get(listing.id), latest_obs.get(listing.id), positions.get(listing.variant_id)
        items.append(
            {
                **_listing_json(listing, sku=sku, competitor=competitor, project=project_slug),
                "latestPrice": None if snap is None else {
                    "amount": money(snap.amount), "currency": snap.currency, "amountInProjectCurrency": money(snap.amount_in_project_currency),
                    "projectCurrency": snap.project_currency, "date": snap.snapshot_date.isoformat(), "observedAt": iso(snap.observed_at),
                    "availability": snap.availability,
                },
                "status": None if obs is None else {
                    "status": obs.status, "errorClass": obs.error_class, "httpStatus": obs.http_status, "fetchedAt": iso(obs.fetched_at),
                },
                "marketPosition": None if pos is None else {
                    "position": pos.position, "date": pos.position_date.isoformat(), "ourPrice": money(pos.our_price),
                    "lowestPrice": money(pos.lowest_price), "medianPrice": money(pos.median_price), "priceIndex": money(pos.price_index),
                    "competitorCount": pos.competitor_count,
                },
            }
        )
    return page(items, encode_cursor(shown[-1][0].id) if len(rows) > limit else None)


def _listing_json(listing: CompetitorListing, *, sku: str, competitor: str, project: str) -> dict:
    return {
        "id": listing.id,
        "project": project,
        "sku": sku,
        "competitorId": listing.competitor_id,
        "competitor": competitor,
        "url": listing.url,
        "kind": listing.page_kind,
        "match": listing.match_type,
        "variant": listing.variant_hint,
        "active": listing.active,
        "createdAt": iso(listing.created_at),
    }


def _register(scope: TenantScope, project: Project, body: CompetitorCreate, principal):
    return register_listing(
        scope.session,
        project_slug=project.slug,
        sku=body.sku,
        url=body.url,
        allowed_hosts=settings.sandbox_allowed_hosts(),
        competitor_name=body.name,
        currency=body.currency,
        page_kind=body.kind,
        match_type=body.match,
        variant_hint=body.variant,
        actor=principal.actor,
    )


def build_router(require_read, require_write) -> APIRouter:
    router = APIRouter(tags=["competitors"])

    @router.post("/api/v1/projects/{slug}/competitors", status_code=201, summary="Register a competitor page for one of our SKUs")
    def add_competitor(slug: str, body: CompetitorCreate, request: Request, principal=Depends(require_write)):
        with open_scope(request, principal) as scope:
            project = scope.project(slug)
            try:
                added = _register(scope, project, body, principal)
            except NotFoundError as exc:  # the SKU in the body: bad input, the URL's project exists
                raise ApiError(422, "invalid_input", str(exc), {"field": "sku"}) from None
            listing = scope.listing(added.listing_id)
            competitor = scope.session.get(Competitor, listing.competitor_id)
            result = {
                "listing": _listing_json(listing, sku=body.sku, competitor=competitor.name, project=project.slug),
                "eventId": added.event_id or None,
                "created": added.created,
            }
        return JSONResponse(result, status_code=201 if added.created else 200)

    @router.get("/api/v1/projects/{slug}/competitors", summary="A project's competitor listings with latest price, status and market position")
    def project_competitors(slug: str, request: Request, limit: int = Query(DEFAULT_LIMIT), cursor: str | None = None, principal=Depends(require_read)):
        check_limit(limit)
        with open_scope(request, principal) as scope:
            return FastJSON(_listings(scope, project_id=scope.project(slug).id, limit=limit, cursor=cursor))

    @router.get("/api/v1/competitors", summary="Every competitor listing of the tenant (optionally one project)")
    def all_competitors(request: Request, project: str | None = None, limit: int = Query(DEFAULT_LIMIT), cursor: str | None = None, principal=Depends(require_read)):
        check_limit(limit)
        with open_scope(request, principal) as scope:
            return FastJSON(_listings(scope, project_id=scope.project(project).id if project else None, limit=limit, cursor=cursor))

    @router.get("/api/v1/competitors/{listing_id}/observations", summary="Fetch outcomes of one listing, newest first")
    def observations(listing_id: int, request: Request, limit: int = Query(DEFAULT_LIMIT), cursor: str | None = None, principal=Depends(require_read)):
        check_limit(limit)
        O = CompetitorPriceObservation
        with open_scope(request, principal) as scope:
            query = scope.observations(listing_id).order_by(O.id.desc())
            before = after_id(cursor)
            if before is not None:
                query = query.where(O.id < before)
            rows = scope.session.scalars(query.limit(limit + 1)).all()
            items = [
                {
                    "id": o.id, "date": o.observation_date.isoformat(), "status": o.status, "httpStatus": o.http_status,
                    "errorClass": o.error_class, "errorMessage": o.error_message, "amount": money(o.amount), "currency": o.currency,
                    "regularAmount": money(o.regular_amount), "availability": o.availability, "source": o.extraction_source,
                    "attempts": o.attempts, "elapsedMs": o.elapsed_ms, "fetchedAt": iso(o.fetched_at), "url": o.url,
                }
                for o in rows[:limit]
            ]
        return FastJSON(page(items, encode_cursor(items[-1]["id"]) if len(rows) > limit else None))

    return router

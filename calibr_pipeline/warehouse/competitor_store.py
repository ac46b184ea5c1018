"""Competitor monitoring in the warehouse: listings, observations, snapshots, market position.

Each ``replace_*`` function owns the rows of one partition (tenant and day): re-running a
partition deletes and rewrites exactly those rows, in one transaction.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Iterable, Sequence
from urllib.parse import urlsplit

from sqlalchemy import and_, delete, select
from sqlalchemy.orm import Session

from calibr_pipeline.domain.fx import FxQuote, max_rate_age_days, missing_reason, quantize_rate
from calibr_pipeline.domain.market import CompetitorPrice, compute_market_position
from calibr_pipeline.domain.trust import TrustInputs, redirected_away, threshold as trust_threshold
from calibr_pipeline.domain.trust import score as trust_score
from calibr_pipeline.warehouse.models import (
    Competitor,
    CompetitorListing,
    CompetitorPriceObservation,
    FxRate,
    MarketPosition,
    NormalizedPriceSnapshot,
    Project,
    Variant,
)
from calibr_pipeline.warehouse.outbox import publish
from calibr_pipeline.warehouse.tenancy import InvalidInputError, project_by_slug, variant_by_sku
from calibr_pipeline.warehouse.types import utcnow

COMPETITOR_ADDED = "competitor.added"
PAGE_KINDS = ("shopify", "html")
MATCH_TYPES = ("exact", "similar", "manual")
_SHOPIFY_PRODUCT_PATH = re.compile(r"^/(?:[a-z]{2}(?:-[a-z]{2})?/)?products/[^/]+/?$", re.IGNORECASE)


def guess_page_kind(url: str) -> str:
    """``/products/<handle>`` is the Shopify storefront convention; anything else is an HTML page."""
    return "shopify" if _SHOPIFY_PRODUCT_PATH.match(urlsplit(url).path) else "html"


@dataclass(frozen=True)
class AddedListing:
    listing_id: int
    competitor_id: int
    event_id: str
    created: bool


def add_competitor_listing(
    session: Session,
    *,
    project_slug: str,
    sku: str,
    url: str,
    competitor_name: str | None = None,
    currency: str | None = None,
    page_kind: str = "auto",
    match_type: str = "exact",
    variant_hint: str | None = None,
    actor: str = "cli",
) -> AddedListing:
    """Store a listing and its ``competitor.added`` outbox event in the caller's transaction.

    ``url`` must already have passed the URL policy. Adding the same URL for the same SKU
    again is not an error; it returns the existing listing and publishes no new event.
    """
    project = project_by_slug(session, project_slug)
    variant = variant_by_sku(session, project, sku)
    if match_type not in MATCH_TYPES:
        raise InvalidInputError(f"match type {match_type!r} is not one of {', '.join(MATCH_TYPES)}")
    if page_kind == "auto":
        page_kind = guess_page_kind(url)
    if page_kind not in PAGE_KINDS:
        raise InvalidInputError(f"page kind {page_kind!r} is not one of auto, {', '.join(PAGE_KINDS)}")
    if currency is not None and not re.fullmatch(r"[A-Z]{3}", currency):
        raise InvalidInputError(f"currency {currency!r} is not an ISO 4217 code such as USD or EUR")

    domain = (urlsplit(url).hostname or "").lower()
    port = urlsplit(url).port
    domain_key = f"{domain}:{port}" if port else domain
    competitor = session.scalar(select(Competitor).where(Competitor.project_id == project.id, Competitor.domain == domain_key))
    if competitor is None:
        competitor = Competitor(project_id=project.id, name=competitor_name or domain_key, domain=domain_key, currency=currency)
        session.add(competitor)
        session.flush()
    elif currency and competitor.currency != currency:
        competitor.currency = currency

    existing = session.scalar(select(CompetitorListing).where(CompetitorListing.variant_id == variant.id, CompetitorListing.url == url))
    if existing is not None:
        return AddedListing(existing.id, competitor.id, event_id="", created=False)

    listing = CompetitorListing(
        project_id=project.id,
        competitor_id=competitor.id,
        variant_id=variant.id,
        url=url,
        page_kind=page_kind,
        variant_hint=variant_hint,
        match_type=match_type,
        active=True,
    )
    session.add(listing)
    session.flush()
    event = publish(
        session,
        COMPETITOR_ADDED,
        {
            "listing_id": listing.id,
            "tenant_id": project.tenant_id,
            "project": project.slug,
            "sku": variant.sku,
            "url": url,
            "competitor_id": competitor.id,
        },
        tenant_id=project.tenant_id,
        actor=actor,
        project_id=project.id,
    )
    return AddedListing(listing.id, competitor.id, event.id, created=True)


@dataclass(frozen=True)
class ListingToScrape:
    listing_id: int
    tenant_id: int
    project_id: int
    url: str
    page_kind: str
    variant_hint: str | None
    currency_hint: str | None


def listings_to_scrape(session: Session, tenant_id: int, listing_ids: Sequence[int] | None = None) -> list[ListingToScrape]:
    query = (
        select(CompetitorListing, Competitor.currency, Project.tenant_id)
        .join(Competitor, Competitor.id == CompetitorListing.competitor_id)
        .join(Project, Project.id == CompetitorListing.project_id)
        .where(Project.tenant_id == tenant_id, CompetitorListing.active.is_(True))
        .order_by(CompetitorListing.id)
    )
    if listing_ids is not None:
        query = query.where(CompetitorListing.id.in_(list(listing_ids)))
    return [
        ListingToScrape(l.id, t_id, l.project_id, l.url, l.page_kind, l.variant_hint, currency)
        for l, currency, t_id in session.execute(query).all()
    ]


@dataclass(frozen=True)
class ObservationRow:
    """One fetch outcome, as the scraping layer reports it (no ORM)."""

    listing_id: int
    url: str
    status: str
    http_status: int | None
    error_class: str | None
    error_message: str | None
    amount: Decimal | None
    currency: str | None
    regular_amount: Decimal | None
    availability: str | None
    extraction_source: str | None
    extracted: dict | None
    attempts: int
    elapsed_ms: int | None
    fetched_at: datetime


def replace_observations(
    session: Session,
    *,
    tenant_id: int,
    observation_date: date,
    rows: Iterable[ObservationRow],
    run_id: str | None,
    listing_ids: Sequence[int] | None = None,
) -> int:
    """Replace the partition's observations (or only those of ``listing_ids``) with ``rows``."""
    projects = dict(
        session.execute(
            select(CompetitorListing.id, CompetitorListing.project_id)
            .join(Project, Project.id == CompetitorListing.project_id)
            .where(Project.tenant_id == tenant_id)
        ).all()
    )
    condition = and_(
        CompetitorPriceObservation.tenant_id == tenant_id,
        CompetitorPriceObservation.observation_date == observation_date,
    )
    if listing_ids is not None:
        condition = and_(condition, CompetitorPriceObservation.listing_id.in_(list(listing_ids)))
    session.execute(delete(CompetitorPriceObservation).where(condition))
    count = 0
    for row in rows:
        session.add(
            CompetitorPriceObservation(
                tenant_id=tenant_id,
                project_id=projects[row.listing_id],
                listing_id=row.listing_id,
                observation_date=observation_date,
                dagster_run_id=run_id,
                url=row.url,
                status=row.status,
                http_status=row.http_status,
                error_class=row.error_class,
                error_message=row.error_message,
                amount=row.amount,
                currency=row.currency,
                regular_amount=row.regular_amount,
                availability=row.availability,
                extraction_source=row.extraction_source,
                extracted=row.extracted,
                attempts=row.attempts,
                elapsed_ms=row.elapsed_ms,
                fetched_at=row.fetched_at,
            )
        )
        count += 1
    session.flush()
    return count


def upsert_fx_rate(session: Session, rate_date: date, base: str, quote: str, rate: Decimal, source: str) -> None:
    """Store 1 ``base`` = ``rate`` ``quote`` at the fixed precision of :mod:`calibr_pipeline.domain.fx`."""
    rate = quantize_rate(rate)
    row = session.scalar(
        select(FxRate).where(FxRate.rate_date == rate_date, FxRate.base_currency == base, FxRate.quote_currency == quote)
    )
    if row is None:
        session.add(FxRate(rate_date=rate_date, base_currency=base, quote_currency=quote, rate=rate, source=source))
    else:
        row.rate, row.source = rate, source


def fx_quote(session: Session, base: str, quote: str, on: date) -> FxQuote | None:
    """The latest reference rate on or before ``on`` (the inverse pair when only that exists)."""
    if base == quote:
        return FxQuote(base, quote, Decimal(1), on, inverted=False)
    for b, q, invert in ((base, quote, False), (quote, base, True)):
        found = session.execute(
            select(FxRate.rate, FxRate.rate_date)
            .where(FxRate.base_currency == b, FxRate.quote_currency == q, FxRate.rate_date <= on)
            .order_by(FxRate.rate_date.desc())
            .limit(1)
        ).first()
        if found is not None:
            return FxQuote(base, quote, found.rate, found.rate_date, inverted=invert)
    return None


def fx_rate(session: Session, base: str, quote: str, on: date) -> Decimal | None:
    """The applied rate (6 decimals) of :func:`fx_quote`, or None; ignores the rate's age."""
    found = fx_quote(session, base, quote, on)
    return found.rate if found is not None else None


@dataclass(frozen=True)
class SnapshotStats:
    snapshots: int
    listings_without_price: int
    missing_fx: dict[str, int]
    stale_fx: dict[str, int] = field(default_factory=dict)
    quarantined: int = 0


def replace_snapshots(
    session: Session, *, tenant_id: int, snapshot_date: date, max_fx_age_days: int | None = None
) -> SnapshotStats:
    """One row per listing and day, from the day's latest successful observation.

    A missing or stale FX rate (older than ``max_fx_age_days``, default
    ``CALIBR_FX_MAX_RATE_AGE_DAYS``) keeps the snapshot without a converted amount and with
    ``excluded_reason`` saying why; it never fails the partition."""
    max_age = max_rate_age_days() if max_fx_age_days is None else max_fx_age_days
    session.execute(
        delete(NormalizedPriceSnapshot).where(
            NormalizedPriceSnapshot.tenant_id == tenant_id, NormalizedPriceSnapshot.snapshot_date == snapshot_date
        )
    )
    observations = session.scalars(
        select(CompetitorPriceObservation)
        .where(
            CompetitorPriceObservation.tenant_id == tenant_id,
            CompetitorPriceObservation.observation_date == snapshot_date,
        )
        .order_by(CompetitorPriceObservation.listing_id, CompetitorPriceObservation.fetched_at)
    ).all()
    latest_ok: dict[int, CompetitorPriceObservation] = {}
    seen: set[int] = set()
    for obs in observations:
        seen.add(obs.listing_id)
        if obs.status == "ok" and obs.amount is not None and obs.amount > 0 and obs.currency:
            latest_ok[obs.listing_id] = obs
    listings = {
        l.id: l
        for l in session.scalars(select(CompetitorListing).where(CompetitorListing.id.in_(list(latest_ok)))).all()
    }
    project_currency = dict(session.execute(select(Project.id, Project.currency).where(Project.tenant_id == tenant_id)).all())
    missing_fx: dict[str, int] = defaultdict(int)
    stale_fx: dict[str, int] = defaultdict(int)
    snapshots: list[NormalizedPriceSnapshot] = []
    quotes: dict[tuple[str, str], FxQuote | None] = {}
    for listing_id, obs in latest_ok.items():
        listing = listings[listing_id]
        target = project_currency[listing.project_id]
        key = (obs.currency, target)
        if key not in quotes:
            quotes[key] = fx_quote(session, obs.currency, target, snapshot_date)
        quote = quotes[key]
        excluded_reason = None
        if quote is None:
            missing_fx[f"{obs.currency}->{target}"] += 1
            excluded_reason = missing_reason(obs.currency, target, snapshot_date)
        else:
            excluded_reason = quote.stale_reason(snapshot_date, max_age)
            if excluded_reason is not None:
                stale_fx[f"{obs.currency}->{target}"] += 1
        usable = quote is not None and excluded_reason is None
        snapshots.append(
            NormalizedPriceSnapshot(
                tenant_id=tenant_id,
                project_id=listing.project_id,
                listing_id=listing_id,
                competitor_id=listing.competitor_id,
                variant_id=listing.variant_id,
                observation_id=obs.id,
                snapshot_date=snapshot_date,
                amount=obs.amount,
                currency=obs.currency,
                regular_amount=obs.regular_amount,
                on_sale=obs.regular_amount is not None and obs.regular_amount > obs.amount,
                availability=obs.availability,
                project_currency=target,
                fx_rate=quote.rate if quote is not None else None,
                amount_in_project_currency=quote.convert(obs.amount) if usable else None,
                excluded_reason=excluded_reason,
                observed_at=obs.fetched_at,
            )
        )
    quarantined = _score_trust(session, tenant_id, snapshot_date, snapshots, latest_ok, listings)
    session.add_all(snapshots)
    session.flush()
    return SnapshotStats(len(latest_ok), len(seen - set(latest_ok)), dict(missing_fx), dict(stale_fx), quarantined)


def previous_amounts(session: Session, tenant_id: int, before: date, days: int = 30) -> dict[int, tuple[Decimal, str]]:
    """Each listing's latest snapshot amount (and currency) before ``before``."""
    S = NormalizedPriceSnapshot
    rows = session.execute(
        select(S.listing_id, S.amount, S.currency)
        .where(S.tenant_id == tenant_id, S.snapshot_date < before, S.snapshot_date >= before - timedelta(days=days))
        .order_by(S.listing_id, S.snapshot_date)
    ).all()
    return {row.listing_id: (row.amount, row.currency) for row in rows}


def _score_trust(
    session: Session,
    tenant_id: int,
    snapshot_date: date,
    snapshots: list[NormalizedPriceSnapshot],
    observations: dict[int, CompetitorPriceObservation],
    listings: dict[int, CompetitorListing],
) -> int:
    """Trust score, reasons and quarantine for each snapshot (calibr_pipeline.domain.trust)."""
    if not snapshots:
        return 0
    previous = previous_amounts(session, tenant_id, snapshot_date)
    our_prices = dict(
        session.execute(select(Variant.id, Variant.price).where(Variant.id.in_({s.variant_id for s in snapshots}))).all()
    )
    thresholds = dict(
        session.execute(select(Project.id, Project.trust_threshold).where(Project.tenant_id == tenant_id)).all()
    )
    by_variant: dict[int, list[NormalizedPriceSnapshot]] = defaultdict(list)
    for snap in snapshots:
        by_variant[snap.variant_id].append(snap)
    day_end = datetime.combine(snapshot_date, time.max, tzinfo=timezone.utc)
    scored_at = min(utcnow(), day_end)
    quarantined = 0
    for snap in snapshots:
        obs = observations[snap.listing_id]
        extracted = obs.extracted or {}
        listing = listings[snap.listing_id]
        peers = [
            p.amount_in_project_currency
            for p in by_variant[snap.variant_id]
            if p is not snap and p.amount_in_project_currency is not None and p.availability != "OutOfStock"
        ]
        prev = previous.get(snap.listing_id)
        confidence = extracted.get("confidence")
        source = extracted.get("source") or obs.extraction_source
        multi = bool(extracted.get("low_price") and extracted.get("high_price") and extracted["low_price"] != extracted["high_price"])
        result = trust_score(
            TrustInputs(
                amount=snap.amount_in_project_currency,
                extraction_confidence=float(confidence) if isinstance(confidence, (int, float)) else None,
                extraction_source=source,
                age_hours=max(0.0, (scored_at - obs.fetched_at).total_seconds() / 3600),
                peer_amounts=tuple(peers),
                our_price=our_prices.get(snap.variant_id) if snap.amount_in_project_currency is not None else None,
                listing_amount=snap.amount,
                previous_amount=prev[0] if prev is not None and prev[1] == snap.currency else None,
                confirmed_by_refetch=extracted.get("confirmed_by_refetch"),
                multi_price=multi,
                soft_404="soft_404" in (extracted.get("page_flags") or []) or redirected_away(listing.url, extracted.get("final_url")),
                out_of_stock=snap.availability == "OutOfStock",
                currency_inferred=source in ("dom", "meta"),
                match_type=listing.match_type,
            )
        )
        limit = trust_threshold(thresholds.get(snap.project_id))
        snap.trust_score = result.score
        snap.trust_reasons = list(result.reasons)
        snap.quarantined = result.quarantined(limit)
        quarantined += snap.quarantined
    return quarantined



@dataclass(frozen=True)
class PositionStats:
    skus: int
    by_position: dict[str, int]


def replace_market_positions(session: Session, *, tenant_id: int, position_date: date) -> PositionStats:
    """Market position for every SKU that has competitor listings.

    Out-of-stock offers, prices we cannot convert to our currency and quarantined prices are
    left out: a shopper cannot buy the first, the second cannot be compared, the third is doubtful.
    """
    session.execute(
        delete(MarketPosition).where(MarketPosition.tenant_id == tenant_id, MarketPosition.position_date == position_date)
    )
    listed_variants = session.execute(
        select(Variant)
        .join(CompetitorListing, CompetitorListing.variant_id == Variant.id)
        .join(Project, Project.id == Variant.project_id)
        .where(Project.tenant_id == tenant_id, CompetitorListing.active.is_(True))
        .distinct()
    ).scalars().all()
    prices: dict[int, list[CompetitorPrice]] = defaultdict(list)
    for snap in session.scalars(
        select(NormalizedPriceSnapshot).where(
            NormalizedPriceSnapshot.tenant_id == tenant_id,
            NormalizedPriceSnapshot.snapshot_date == position_date,
            NormalizedPriceSnapshot.amount_in_project_currency.is_not(None),
            # A quarantined price (trust score under the threshold) is not a market price either.
            NormalizedPriceSnapshot.quarantined.is_(False),
        )
    ):
        if snap.availability != "OutOfStock":
            prices[snap.variant_id].append(CompetitorPrice(snap.competitor_id, snap.amount_in_project_currency))
    by_position: dict[str, int] = defaultdict(int)
    now = utcnow()
    for variant in listed_variants:
        result = compute_market_position(variant.price, prices.get(variant.id, []))
        by_position[result.position] += 1
        session.add(
            MarketPosition(
                tenant_id=tenant_id,
                project_id=variant.project_id,
                variant_id=variant.id,
                position_date=position_date,
                our_price=variant.price,
                currency=variant.currency,
                competitor_count=result.competitor_count,
                lowest_price=result.lowest,
                highest_price=result.highest,
                median_price=result.median,
                spread=result.spread,
                spread_pct=result.spread_pct,
                position=result.position,
                lowest_competitor_id=result.lowest_competitor_id,
                price_index=result.price_index,
                computed_at=now,
            )
        )
    session.flush()
    return PositionStats(len(listed_variants), dict(sorted(by_position.items())))


def recent_statuses_by_listing(
    session: Session, tenant_id: int, up_to: date, depth: int, since: date
) -> dict[int, list[str]]:
    """The newest ``depth`` fetch statuses per listing (newest first), across days from ``since``."""
    rows = session.execute(
        select(
            CompetitorPriceObservation.listing_id,
            CompetitorPriceObservation.status,
        )
        .join(CompetitorListing, CompetitorListing.id == CompetitorPriceObservation.listing_id)
        .where(
            CompetitorListing.active.is_(True),
            CompetitorPriceObservation.tenant_id == tenant_id,
            CompetitorPriceObservation.observation_date <= up_to,
            CompetitorPriceObservation.observation_date >= since,
        )
        .order_by(CompetitorPriceObservation.listing_id, CompetitorPriceObservation.fetched_at.desc())
    ).all()
    result: dict[int, list[str]] = defaultdict(list)
    for listing_id, status in rows:
        if len(result[listing_id]) < depth:
            result[listing_id].append(status)
    return dict(result)


def observation_error_classes(session: Session, tenant_id: int, on: date) -> list[str | None]:
    return list(
        session.scalars(
            select(CompetitorPriceObservation.error_class).where(
                CompetitorPriceObservation.tenant_id == tenant_id, CompetitorPriceObservation.observation_date == on
            )
        ).all()
    )



def quarantine_history(session: Session, tenant_id: int, up_to: date, days: int) -> dict[int, list[bool]]:
    """Per active listing, its snapshots' quarantine flags on the newest ``days`` snapshot days
    up to ``up_to``, newest first."""
    S = NormalizedPriceSnapshot
    rows = session.execute(
        select(S.listing_id, S.quarantined)
        .join(CompetitorListing, CompetitorListing.id == S.listing_id)
        .where(
            S.tenant_id == tenant_id,
            S.snapshot_date <= up_to,
            S.snapshot_date > up_to - timedelta(days=days + 7),
            CompetitorListing.active.is_(True),
        )
        .order_by(S.listing_id, S.snapshot_date.desc())
    ).all()
    history: dict[int, list[bool]] = defaultdict(list)
    for listing_id, quarantined in rows:
        if len(history[listing_id]) < days:
            history[listing_id].append(bool(quarantined))
    return dict(history)

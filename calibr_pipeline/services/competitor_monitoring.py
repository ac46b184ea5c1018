"""Competitor monitoring for one tenant and day, without Dagster.

The Dagster assets, the CLI and the benchmarks all call these functions, so what the
benchmark measures is what the pipeline runs.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Sequence

from calibr_pipeline.connectors.storefront import ListingTarget, ScrapeOutcome, StorefrontScraper
from calibr_pipeline.domain.errors import CalibrError
from calibr_pipeline.domain.trust import is_anomaly
from calibr_pipeline.warehouse.competitor_store import (
    ObservationRow,
    listings_to_scrape,
    previous_amounts,
    replace_observations,
)
from calibr_pipeline.warehouse.engine import session_scope


@dataclass(frozen=True)
class ScrapeSummary:
    listings: int
    ok: int
    failed: int
    by_error_class: dict[str, int]
    retried: int
    total_attempts: int
    by_source: dict[str, int] = field(default_factory=dict)
    refetched: int = 0  # anomalous prices fetched a second time to confirm them

    @property
    def error_rate(self) -> float:
        return self.failed / self.listings if self.listings else 0.0


def to_observation(outcome: ScrapeOutcome, confirmed_by_refetch: bool | None = None) -> ObservationRow:
    offer = outcome.offer
    extracted = None
    if offer is not None:
        extracted = offer.to_json_dict() | {"final_url": outcome.final_url}
        if confirmed_by_refetch is not None:
            extracted["confirmed_by_refetch"] = confirmed_by_refetch
    return ObservationRow(
        listing_id=outcome.listing_id,
        url=outcome.url,
        status=outcome.status,
        http_status=outcome.http_status,
        error_class=outcome.error_class.value if outcome.error_class is not None else None,
        error_message=outcome.error_message,
        amount=offer.amount if offer else None,
        currency=offer.currency if offer else None,
        regular_amount=offer.regular_amount if offer else None,
        availability=offer.availability if offer else outcome.availability,
        extraction_source=offer.source if offer else None,
        extracted=extracted,
        attempts=outcome.attempts,
        elapsed_ms=outcome.elapsed_ms,
        fetched_at=outcome.fetched_at,
    )


def summarize(outcomes: Sequence[ScrapeOutcome]) -> ScrapeSummary:
    errors = Counter(o.error_class.value for o in outcomes if o.error_class is not None)
    sources = Counter(o.offer.source for o in outcomes if o.offer is not None)
    return ScrapeSummary(
        listings=len(outcomes),
        ok=sum(1 for o in outcomes if o.status == "ok"),
        failed=sum(1 for o in outcomes if o.status != "ok"),
        by_error_class=dict(sorted(errors.items())),
        retried=sum(1 for o in outcomes if o.attempts > 1),
        total_attempts=sum(o.attempts for o in outcomes),
        by_source=dict(sorted(sources.items())),
    )


def scrape_tenant_day(
    warehouse_url: str,
    scraper: StorefrontScraper,
    *,
    tenant_id: int,
    day: date,
    run_id: str | None,
    listing_ids: Sequence[int] | None = None,
) -> ScrapeSummary:
    """Scrape the tenant's active listings and replace that day's observations with the outcomes."""
    with session_scope(warehouse_url) as session:
        listings = listings_to_scrape(session, tenant_id, listing_ids)
    if listing_ids is not None:
        missing = sorted(set(listing_ids) - {l.listing_id for l in listings})
        if missing:
            raise CalibrError(f"listing id(s) {missing} are not active listings of tenant {tenant_id}")
    targets = [
        ListingTarget(
            listing_id=l.listing_id,
            url=l.url,
            kind=l.page_kind,
            variant_hint=l.variant_hint,
            currency_hint=l.currency_hint,
        )
        for l in listings
    ]
    outcomes = scraper.scrape_many(targets)
    outcomes, confirmations = confirm_anomalies(warehouse_url, scraper, tenant_id, day, targets, outcomes)
    with session_scope(warehouse_url) as session:
        replace_observations(
            session,
            tenant_id=tenant_id,
            observation_date=day,
            rows=[to_observation(o, confirmations.get(o.listing_id)) for o in outcomes],
            run_id=run_id,
            listing_ids=listing_ids,
        )
    return replace(summarize(outcomes), refetched=len(confirmations))


def confirm_anomalies(
    warehouse_url: str,
    scraper: StorefrontScraper,
    tenant_id: int,
    day: date,
    targets: Sequence[ListingTarget],
    outcomes: list[ScrapeOutcome],
) -> tuple[list[ScrapeOutcome], dict[int, bool]]:
    """Fetch once more every price that dropped > 60 % or jumped > 150 % against the listing's
    previous snapshot (calibr_pipeline.domain.trust.is_anomaly). The second reading replaces the
    first; it is *confirmed* when both agree. Returns the outcomes and {listing_id: confirmed}."""
    with session_scope(warehouse_url) as session:
        previous = previous_amounts(session, tenant_id, day)
    by_id = {t.listing_id: t for t in targets}
    anomalous = [
        o
        for o in outcomes
        if o.offer is not None
        and o.listing_id in previous
        and previous[o.listing_id][1] == o.offer.currency
        and is_anomaly(previous[o.listing_id][0], o.offer.amount) is not None
    ]
    if not anomalous:
        return outcomes, {}
    again = {o.listing_id: o for o in scraper.scrape_many([by_id[a.listing_id] for a in anomalous])}
    confirmations: dict[int, bool] = {}
    merged = []
    for outcome in outcomes:
        second = again.get(outcome.listing_id)
        if second is None:
            merged.append(outcome)
            continue
        first_offer = outcome.offer
        confirmations[outcome.listing_id] = bool(
            second.offer is not None
            and first_offer is not None
            and (second.offer.amount, second.offer.currency) == (first_offer.amount, first_offer.currency)
        )
        merged.append(second)
    return merged, confirmations


def register_listing(
    session,
    *,
    project_slug: str,
    sku: str,
    url: str,
    allowed_hosts: Sequence[str] = (),
    competitor_name: str | None = None,
    currency: str | None = None,
    page_kind: str = "auto",
    match_type: str = "exact",
    variant_hint: str | None = None,
    actor: str,
):
    """Validate a competitor URL (SSRF policy, column length) and currency, then store the
    listing and its ``competitor.added`` outbox event in the caller's transaction.

    The CLI and the API both call this, so both apply the same policy.
    """
    from calibr_pipeline.domain.currency import normalize_code
    from calibr_pipeline.domain.errors import ErrorClass
    from calibr_pipeline.domain.url_policy import UrlPolicyError, validate_competitor_url
    from calibr_pipeline.warehouse.competitor_store import add_competitor_listing
    from calibr_pipeline.warehouse.models import CompetitorListing

    url = validate_competitor_url(url, allowed_hosts=allowed_hosts)
    max_length = CompetitorListing.url.type.length
    if len(url) > max_length:
        # The URL policy allows a little more than the column holds (Postgres would refuse it).
        raise UrlPolicyError(ErrorClass.INVALID_URL, f"The competitor URL is longer than {max_length} characters.")
    if currency is not None:
        code = normalize_code(currency)
        if code is None:
            raise CalibrError(f"currency {currency!r} is not an ISO 4217 currency code such as USD or EUR")
        currency = code
    return add_competitor_listing(
        session,
        project_slug=project_slug,
        sku=sku,
        url=url,
        competitor_name=competitor_name,
        currency=currency,
        page_kind=page_kind,
        match_type=match_type,
        variant_hint=variant_hint,
        actor=actor,
    )

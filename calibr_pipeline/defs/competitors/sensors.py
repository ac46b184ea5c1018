"""Sensors: new tenants become partitions; ``competitor.added`` outbox events become scrapes."""


from datetime import datetime, timezone

import dagster as dg
from dagster._core.storage.tags import RUN_KEY_TAG
from sqlalchemy import select

from calibr_pipeline.defs.competitors.jobs import competitor_listing_scrape_job
from calibr_pipeline.defs.partitions import TENANT_PARTITIONS
from calibr_pipeline.defs.resources import WarehouseResource
from calibr_pipeline.warehouse.competitor_store import COMPETITOR_ADDED
from calibr_pipeline.warehouse.models import CompetitorListing, Project, Tenant
from calibr_pipeline.warehouse.outbox import PendingEvent, dead_letter, mark_dispatched, pending_events

OUTBOX_BATCH = 50


def _missing_tenant_partitions(context, slugs) -> list[str]:
    existing = set(context.instance.get_dynamic_partitions(TENANT_PARTITIONS.name))
    return sorted(set(slugs) - existing)


@dg.sensor(
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Adds a `tenant` partition for every tenant in the warehouse.",
)
def tenant_partitions_sensor(context: dg.SensorEvaluationContext, warehouse: WarehouseResource) -> dg.SensorResult:
    with warehouse.session() as session:
        slugs = session.scalars(select(Tenant.slug)).all()
    missing = _missing_tenant_partitions(context, slugs)
    if not missing:
        return dg.SensorResult(skip_reason=dg.SkipReason(f"all {len(slugs)} tenant(s) have partitions"))
    return dg.SensorResult(dynamic_partitions_requests=[TENANT_PARTITIONS.build_add_request(missing)])


def _parse_competitor_added(event: PendingEvent, tenant_slugs: dict[int, str], listings: dict[int, int]) -> tuple[str, int]:
    """(tenant slug, listing id) from a ``competitor.added`` payload, or ValueError with the reason."""
    payload = event.payload
    if not isinstance(payload, dict):
        raise ValueError(f"payload is {type(payload).__name__}, expected a JSON object")
    listing_id = payload.get("listing_id")
    if not isinstance(listing_id, int) or isinstance(listing_id, bool):
        raise ValueError(f"listing_id must be an integer, got {listing_id!r}")
    if listing_id not in listings:
        raise ValueError(f"listing {listing_id} does not exist or is inactive")
    tenant_id = listings[listing_id]
    if event.tenant_id is not None and event.tenant_id != tenant_id:
        raise ValueError(f"event tenant {event.tenant_id} does not own listing {listing_id}")
    return tenant_slugs[tenant_id], listing_id


@dg.sensor(
    job=competitor_listing_scrape_job,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Reads `competitor.added` events from the outbox and scrapes just that listing "
        "(run_key = event id, so an event launches at most one run). Malformed events go "
        "to `outbox_dead_letters` with the reason."
    ),
)
def competitor_added_sensor(context: dg.SensorEvaluationContext, warehouse: WarehouseResource) -> dg.SensorResult:
    today = datetime.now(timezone.utc).date().isoformat()
    run_requests: list[dg.RunRequest] = []
    tenants_needed: set[str] = set()
    dead_lettered = dispatched = 0
    with warehouse.session() as session:
        events = pending_events(session, COMPETITOR_ADDED, limit=OUTBOX_BATCH)
        if not events:
            return dg.SensorResult(skip_reason=dg.SkipReason("no pending competitor.added events"))
        tenant_slugs = dict(session.execute(select(Tenant.id, Tenant.slug)).all())
        listings = _listing_tenants(session)
        for event in events:
            # Crash-safe at-least-once: an event is marked dispatched only once its run
            # exists; until then it is requested again with the same run_key, which
            # Dagster de-duplicates.
            if context.instance.get_run_ids(filters=dg.RunsFilter(tags={RUN_KEY_TAG: event.id}), limit=1):
                mark_dispatched(session, event.id, run_key=event.id)
                dispatched += 1
                continue
            try:
                tenant_slug, listing_id = _parse_competitor_added(event, tenant_slugs, listings)
            except ValueError as exc:
                context.log.warning(f"outbox event {event.id} dead-lettered: {exc}")
                dead_letter(session, event, reason=str(exc))
                dead_lettered += 1
                continue
            tenants_needed.add(tenant_slug)
            run_requests.append(
                dg.RunRequest(
                    run_key=event.id,
                    partition_key=dg.MultiPartitionKey({"date": today, "tenant": tenant_slug}),
                    run_config={"ops": {"competitor_price_observations": {"config": {"listing_ids": [listing_id]}}}},
                    tags={"calibr/outbox_event": event.id, "calibr/trigger": COMPETITOR_ADDED},
                )
            )
    context.log.info(f"{len(run_requests)} run request(s), {dispatched} dispatched, {dead_lettered} dead-lettered")
    missing = _missing_tenant_partitions(context, tenants_needed)
    return dg.SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=[TENANT_PARTITIONS.build_add_request(missing)] if missing else [],
    )


def _listing_tenants(session) -> dict[int, int]:
    """Active listing id -> owning tenant id."""
    return dict(
        session.execute(
            select(CompetitorListing.id, Project.tenant_id)
            .join(Project, Project.id == CompetitorListing.project_id)
            .where(CompetitorListing.active.is_(True))
        ).all()
    )

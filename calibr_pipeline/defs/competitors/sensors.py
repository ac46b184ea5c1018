"""Sensors: new tenants become partitions; ``competitor.added`` outbox events become scrapes."""


from datetime import datetime, timezone

import dagster as dg
from sqlalchemy import select

from calibr_pipeline.defs.competitors.jobs import competitor_listing_scrape_job
from calibr_pipeline.defs.outbox import Dispatch, dispatch_outbox
from calibr_pipeline.defs.partitions import TENANT_PARTITIONS
from calibr_pipeline.defs.resources import WarehouseResource
from calibr_pipeline.warehouse.competitor_store import COMPETITOR_ADDED
from calibr_pipeline.warehouse.models import CompetitorListing, Project, Tenant
from calibr_pipeline.warehouse.outbox import PendingEvent


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
    lookups: dict[str, dict] = {}

    def build(session, event: PendingEvent) -> Dispatch:
        if not lookups:
            lookups["tenants"] = dict(session.execute(select(Tenant.id, Tenant.slug)).all())
            lookups["listings"] = _listing_tenants(session)
        tenant_slug, listing_id = _parse_competitor_added(event, lookups["tenants"], lookups["listings"])
        return Dispatch(
            dg.RunRequest(
                run_key=event.id,
                partition_key=dg.MultiPartitionKey({"date": today, "tenant": tenant_slug}),
                run_config={"ops": {"competitor_price_observations": {"config": {"listing_ids": [listing_id]}}}},
                tags={"calibr/outbox_event": event.id, "calibr/trigger": COMPETITOR_ADDED},
            ),
            partitions={TENANT_PARTITIONS.name: [tenant_slug]},
        )

    return dispatch_outbox(context, warehouse, COMPETITOR_ADDED, build)


def _listing_tenants(session) -> dict[int, int]:
    """Active listing id -> owning tenant id."""
    return dict(
        session.execute(
            select(CompetitorListing.id, Project.tenant_id)
            .join(Project, Project.id == CompetitorListing.project_id)
            .where(CompetitorListing.active.is_(True))
        ).all()
    )

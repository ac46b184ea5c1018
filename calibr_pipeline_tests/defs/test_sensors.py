from datetime import datetime, timezone

import dagster as dg
import pytest
from dagster._core.storage.tags import RUN_KEY_TAG
from sqlalchemy import select

from calibr_pipeline.defs.competitors.sensors import competitor_added_sensor, tenant_partitions_sensor
from calibr_pipeline.defs.partitions import TENANT_PARTITIONS
from calibr_pipeline.defs.resources import WarehouseResource
from calibr_pipeline.warehouse.competitor_store import COMPETITOR_ADDED, add_competitor_listing
from calibr_pipeline.warehouse.engine import session_scope
from calibr_pipeline.warehouse.models import OutboxDeadLetter, OutboxEvent
from calibr_pipeline.warehouse.tenancy import get_or_create_tenant



def _tick(sensor, instance, url):
    context = dg.build_sensor_context(instance=instance, resources={"warehouse": WarehouseResource(url=url)})
    return sensor(context)


def test_tenant_sensor_adds_missing_partitions(seeded, instance):
    url, _ = seeded
    result = _tick(tenant_partitions_sensor, instance, url)
    (request,) = result.dynamic_partitions_requests
    assert request.partitions_def_name == TENANT_PARTITIONS.name and list(request.partition_keys) == ["acme"]
    instance.add_dynamic_partitions(TENANT_PARTITIONS.name, ["acme"])
    assert _tick(tenant_partitions_sensor, instance, url).dynamic_partitions_requests in (None, [])


def test_competitor_added_event_becomes_one_scrape_of_that_listing(seeded, instance):
    url, tenant_id = seeded
    with session_scope(url) as session:
        added = add_competitor_listing(session, project_slug="acme-store", sku="A", url="https://rival.example/products/a")

    first = _tick(competitor_added_sensor, instance, url)
    (request,) = first.run_requests
    today = datetime.now(timezone.utc).date().isoformat()
    assert request.run_key == added.event_id
    assert request.partition_key == dg.MultiPartitionKey({"date": today, "tenant": "acme"})
    assert request.run_config["ops"]["competitor_price_observations"]["config"]["listing_ids"] == [added.listing_id]
    assert [list(r.partition_keys) for r in first.dynamic_partitions_requests] == [["acme"]]

    # No run yet (e.g. the tick crashed before launch): the same run key is requested again,
    # which Dagster de-duplicates, so the event can never launch two runs.
    again = _tick(competitor_added_sensor, instance, url)
    assert [r.run_key for r in again.run_requests] == [added.event_id]

    # Once a run with that run key exists the event is marked dispatched and not requested again.
    instance.add_dynamic_partitions(TENANT_PARTITIONS.name, ["acme"])
    instance.create_run_for_job(
        job_def=dg.GraphDefinition(name="noop", node_defs=[]).to_job(), tags={RUN_KEY_TAG: added.event_id}
    )
    settled = _tick(competitor_added_sensor, instance, url)
    assert not settled.run_requests
    with session_scope(url) as session:
        event = session.get(OutboxEvent, added.event_id)
        assert event.dispatched_at is not None and event.dispatched_run_key == added.event_id
    assert not _tick(competitor_added_sensor, instance, url).run_requests


VALID_ADDED = {"listing_id": 1, "tenant_id": 1, "project": "acme-store", "sku": "A", "url": "https://rival.example/a", "competitor_id": 1}


@pytest.mark.parametrize(
    "payload, reason",
    [
        # refused by the registered schema on read (docs/events.md), with the schema path
        (["not", "an", "object"], "competitor.added v1 payload invalid at $: ['not', 'an', 'object'] is not of type 'object' [schema path: #/type]"),
        ({**VALID_ADDED, "listing_id": "7"}, "competitor.added v1 payload invalid at $.listing_id: '7' is not of type 'integer' [schema path: #/properties/listing_id/type]"),
        ({}, "competitor.added v1 payload invalid at $: 'competitor_id' is a required property [schema path: #/required] (and 5 more problem(s))"),
        # valid by its schema, refused by the sensor's own lookup
        ({**VALID_ADDED, "listing_id": 424242}, "listing 424242 does not exist or is inactive"),
    ],
)
def test_malformed_events_are_dead_lettered_with_the_reason(seeded, instance, payload, reason):
    url, tenant_id = seeded
    with session_scope(url) as session:
        session.add(OutboxEvent(id="bad-event", tenant_id=tenant_id, event_type=COMPETITOR_ADDED, payload=payload))
    result = _tick(competitor_added_sensor, instance, url)
    assert not result.run_requests
    with session_scope(url) as session:
        parked = session.scalars(select(OutboxDeadLetter)).one()
        assert (parked.outbox_id, parked.reason) == ("bad-event", reason)
        assert session.get(OutboxEvent, "bad-event").dispatched_run_key == "dead-letter"


def test_event_for_another_tenants_listing_is_dead_lettered(seeded, instance):
    url, tenant_id = seeded
    with session_scope(url) as session:
        added = add_competitor_listing(session, project_slug="acme-store", sku="B", url="https://rival.example/products/b")
        other = get_or_create_tenant(session, "other")
        session.get(OutboxEvent, added.event_id).tenant_id = other.id
    assert not _tick(competitor_added_sensor, instance, url).run_requests
    with session_scope(url) as session:
        assert "does not own listing" in session.scalars(select(OutboxDeadLetter.reason)).one()

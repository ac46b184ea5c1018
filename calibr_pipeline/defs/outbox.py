"""Turning transactional-outbox events into Dagster runs, crash-safely.

An event is marked dispatched only once a run with ``run_key = event id`` exists. Until
then every tick requests it again with the same run key, which Dagster de-duplicates: at
least once from the outbox, exactly once as a run. An event that cannot become a run goes
to ``outbox_dead_letters`` with the reason. Every event is first read through the event
registry (validated against the version it was written with, upcast to the current one);
an event its schema refuses is dead-lettered with the validation message.
"""

from dataclasses import dataclass, field
from typing import Callable

import dagster as dg
from dagster._core.storage.tags import RUN_KEY_TAG
from sqlalchemy.orm import Session

from calibr_pipeline.defs.resources import WarehouseResource
from calibr_pipeline.events.registry import EventRegistryError
from calibr_pipeline.warehouse.outbox import PendingEvent, dead_letter, mark_dispatched, pending_events, read_pending

OUTBOX_BATCH = 50


@dataclass
class Dispatch:
    """What one event becomes: a run request and the dynamic partitions it needs.

    ``collapse_key``: events with the same key in one tick become one run (the others are
    marked dispatched into it). ``run_request=None`` with ``settled`` means the event needs
    no run (its work is already requested or under way): it is marked dispatched with that
    reason as run key.
    """

    run_request: dg.RunRequest | None
    partitions: dict[str, list[str]] = field(default_factory=dict)  # partitions def name -> keys
    collapse_key: str | None = None
    settled: str | None = None


def run_exists(instance: dg.DagsterInstance, run_key: str) -> bool:
    return bool(instance.get_run_ids(filters=dg.RunsFilter(tags={RUN_KEY_TAG: run_key}), limit=1))


def dispatch_outbox(
    context: dg.SensorEvaluationContext,
    warehouse: WarehouseResource,
    event_type: str,
    build: Callable[[Session, PendingEvent], Dispatch],
) -> dg.SensorResult:
    """``build`` raises ValueError with a reason for an event that cannot become a run."""
    run_requests: list[dg.RunRequest] = []
    partitions: dict[str, set[str]] = {}
    dispatched = dead = 0
    collapsed: dict[str, str] = {}  # collapse key -> the event whose run serves them all
    with warehouse.session() as session:
        events = pending_events(session, event_type, limit=OUTBOX_BATCH)
        if not events:
            return dg.SensorResult(skip_reason=dg.SkipReason(f"no pending {event_type} events"))
        for event in events:
            if run_exists(context.instance, event.id):
                mark_dispatched(session, event.id, run_key=event.id)
                dispatched += 1
                continue
            try:
                dispatch = build(session, read_pending(event))
            except (ValueError, EventRegistryError) as exc:
                context.log.warning(f"outbox event {event.id} dead-lettered: {exc}")
                dead_letter(session, event, reason=str(exc))
                dead += 1
                continue
            if dispatch.run_request is None:
                context.log.info(f"outbox event {event.id} needs no run: {dispatch.settled}")
                mark_dispatched(session, event.id, run_key=(dispatch.settled or "settled")[:64])
                dispatched += 1
                continue
            if dispatch.collapse_key is not None:
                if dispatch.collapse_key in collapsed:
                    mark_dispatched(session, event.id, run_key=f"collapsed:{collapsed[dispatch.collapse_key]}"[:64])
                    dispatched += 1
                    continue
                collapsed[dispatch.collapse_key] = event.id
            run_requests.append(dispatch.run_request)
            for name, keys in dispatch.partitions.items():
                partitions.setdefault(name, set()).update(keys)
    context.log.info(f"{event_type}: {len(run_requests)} run request(s), {dispatched} dispatched, {dead} dead-lettered")
    requests = []
    for name, keys in sorted(partitions.items()):
        missing = sorted(keys - set(context.instance.get_dynamic_partitions(name)))
        if missing:
            requests.append(dg.AddDynamicPartitionsRequest(partitions_def_name=name, partition_keys=missing))
    return dg.SensorResult(run_requests=run_requests, dynamic_partitions_requests=requests)

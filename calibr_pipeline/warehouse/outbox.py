"""Transactional outbox and event log helpers: the only writers of ``outbox`` and ``event_log``.

``publish`` is called inside the caller's transaction, so the event exists if and only if
the change it announces was committed. Both writers validate the payload against the
event registry (``calibr_pipeline/events``) before adding anything to the session: an
unregistered type or an invalid payload raises, so nothing reaches the commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from calibr_pipeline.events.registry import EventRegistryError, registry
from calibr_pipeline.warehouse.models import EventLog, OutboxDeadLetter, OutboxEvent, new_event_id
from calibr_pipeline.warehouse.types import utcnow


def publish(
    session: Session,
    event_type: str,
    payload: dict,
    *,
    tenant_id: int | None,
    actor: str,
    project_id: int | None = None,
    run_id: str | None = None,
) -> OutboxEvent:
    version = registry().validate_for_write(event_type, payload, "outbox")
    # The id is set here rather than by a flush, so publishing many events in one
    # transaction is one batched INSERT per table at commit, not a round trip per event.
    event = OutboxEvent(id=new_event_id(), tenant_id=tenant_id, event_type=event_type, payload=payload, schema_version=version)
    session.add(event)
    if "event_log" in registry().current(event_type).channels:
        record_event(
            session, event_type, payload, tenant_id=tenant_id, actor=actor, correlation_id=event.id, project_id=project_id, run_id=run_id
        )
    return event


def record_event(
    session: Session,
    event_type: str,
    payload: dict,
    *,
    tenant_id: int | None,
    actor: str,
    correlation_id: str | None = None,
    project_id: int | None = None,
    run_id: str | None = None,
) -> EventLog:
    version = registry().validate_for_write(event_type, payload, "event_log")
    row = EventLog(
        tenant_id=tenant_id,
        project_id=project_id,
        run_id=run_id,
        event_type=event_type,
        payload=payload,
        actor=actor,
        correlation_id=correlation_id,
        schema_version=version,
    )
    session.add(row)
    return row


def record_events(session: Session, event_type: str, rows: list[dict]) -> None:
    """Many ``event_log`` rows of one type in one statement (the write path audits a product
    at a time). Each row has the keyword arguments of :func:`record_event` plus ``payload``;
    every payload is validated against the registry first, as :func:`record_event` does."""
    if not rows:
        return
    versions = [registry().validate_for_write(event_type, r["payload"], "event_log") for r in rows]
    now = utcnow()
    session.execute(
        EventLog.__table__.insert(),
        [
            {"tenant_id": r["tenant_id"], "project_id": r.get("project_id"), "run_id": r.get("run_id"), "event_type": event_type,
             "payload": r["payload"], "actor": r["actor"], "correlation_id": r.get("correlation_id"), "created_at": now, "schema_version": v}
            for r, v in zip(rows, versions)
        ],
    )


@dataclass(frozen=True)
class PendingEvent:
    id: str
    event_type: str
    tenant_id: int | None
    payload: object
    created_at: datetime
    schema_version: int = 1


def read_pending(event: PendingEvent) -> PendingEvent:
    """The event validated against the version it was written with and upcast to the current one.

    Raises ``EventRegistryError`` (with the validation message) for an event that cannot be
    read: the sensor dead-letters it instead of launching a run.
    """
    version, payload = registry().read(event.event_type, event.schema_version, event.payload)
    return PendingEvent(event.id, event.event_type, event.tenant_id, payload, event.created_at, version)


def read_logged(event_type: str, schema_version: int | None, payload: object) -> tuple[int | None, object, str | None]:
    """An ``event_log`` payload as the current version, for audit readers: (version, payload, problem).

    The audit trail must stay readable even when a stored row does not satisfy its schema
    (rows from before the registry, a type since retired): such a row is returned as stored
    with the problem named, never dropped and never an exception.
    """
    try:
        version, current = registry().read(event_type, schema_version, payload)
        return version, current, None
    except EventRegistryError as exc:
        return schema_version, payload, str(exc)


def pending_events(session: Session, event_type: str, limit: int = 100) -> list[PendingEvent]:
    rows = session.scalars(
        select(OutboxEvent)
        .where(OutboxEvent.event_type == event_type, OutboxEvent.dispatched_at.is_(None))
        .order_by(OutboxEvent.created_at, OutboxEvent.id)
        .limit(limit)
    ).all()
    return [PendingEvent(r.id, r.event_type, r.tenant_id, r.payload, r.created_at, r.schema_version or 1) for r in rows]


def mark_dispatched(session: Session, event_id: str, run_key: str) -> None:
    event = session.get(OutboxEvent, event_id)
    if event is not None and event.dispatched_at is None:
        event.dispatched_at = utcnow()
        event.dispatched_run_key = run_key


def dead_letter(session: Session, event: PendingEvent, reason: str) -> None:
    """Park an event that cannot be dispatched, with the reason, and take it off the queue."""
    if session.scalar(select(OutboxDeadLetter.id).where(OutboxDeadLetter.outbox_id == event.id)) is None:
        payload = event.payload if isinstance(event.payload, dict) else {"raw": repr(event.payload)}
        session.add(OutboxDeadLetter(outbox_id=event.id, tenant_id=event.tenant_id, event_type=event.event_type, payload=payload, reason=reason,
                                     schema_version=event.schema_version))
    mark_dispatched(session, event.id, run_key="dead-letter")

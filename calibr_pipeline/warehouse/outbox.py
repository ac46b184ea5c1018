"""Transactional outbox and event log helpers.

``publish`` is called inside the caller's transaction, so the event exists if and only if
the change it announces was committed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from calibr_pipeline.warehouse.models import EventLog, OutboxDeadLetter, OutboxEvent
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
    event = OutboxEvent(tenant_id=tenant_id, event_type=event_type, payload=payload)
    session.add(event)
    session.flush()
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
    row = EventLog(
        tenant_id=tenant_id,
        project_id=project_id,
        run_id=run_id,
        event_type=event_type,
        payload=payload,
        actor=actor,
        correlation_id=correlation_id,
    )
    session.add(row)
    return row


def record_events(session: Session, rows: list[dict]) -> None:
    """Many ``event_log`` rows in one statement (the write path audits a product at a time).

    Each row has the keyword arguments of :func:`record_event` plus ``event_type`` and ``payload``.
    """
    if rows:
        now = utcnow()
        session.execute(
            EventLog.__table__.insert(),
            [
                {"tenant_id": r["tenant_id"], "project_id": r.get("project_id"), "run_id": r.get("run_id"), "event_type": r["event_type"],
                 "payload": r["payload"], "actor": r["actor"], "correlation_id": r.get("correlation_id"), "created_at": now}
                for r in rows
            ],
        )


@dataclass(frozen=True)
class PendingEvent:
    id: str
    event_type: str
    tenant_id: int | None
    payload: object
    created_at: datetime


def pending_events(session: Session, event_type: str, limit: int = 100) -> list[PendingEvent]:
    rows = session.scalars(
        select(OutboxEvent)
        .where(OutboxEvent.event_type == event_type, OutboxEvent.dispatched_at.is_(None))
        .order_by(OutboxEvent.created_at, OutboxEvent.id)
        .limit(limit)
    ).all()
    return [PendingEvent(r.id, r.event_type, r.tenant_id, r.payload, r.created_at) for r in rows]


def mark_dispatched(session: Session, event_id: str, run_key: str) -> None:
    event = session.get(OutboxEvent, event_id)
    if event is not None and event.dispatched_at is None:
        event.dispatched_at = utcnow()
        event.dispatched_run_key = run_key


def dead_letter(session: Session, event: PendingEvent, reason: str) -> None:
    """Park an event that cannot be dispatched, with the reason, and take it off the queue."""
    if session.scalar(select(OutboxDeadLetter.id).where(OutboxDeadLetter.outbox_id == event.id)) is None:
        payload = event.payload if isinstance(event.payload, dict) else {"raw": repr(event.payload)}
        session.add(OutboxDeadLetter(outbox_id=event.id, event_type=event.event_type, payload=payload, reason=reason))
    mark_dispatched(session, event.id, run_key="dead-letter")

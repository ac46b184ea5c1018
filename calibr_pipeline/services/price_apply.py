"""Applying a rule run's targets to the shop: one writer, checked at write time, audited.

The promise: a price reaches the shop only if it is safe *at the moment it is written*,
whatever happened since the preview, whatever else runs at the same time, and whatever the
network did to the answer. The loop, per run:

1. **Claim.** One compare-and-set ``UPDATE rule_runs … WHERE state IN (QUEUED, PARTIAL,
   FAILED) OR (APPLYING AND lease expired)`` makes this process the run's only writer
   (``lease_owner``, ``lease_expires_at``), and only if no other run of the same project
   (one Shopify shop per project) holds a live lease. A second writer finds the run taken
   and stops with :class:`RunTaken`; nothing is written. An expired preview of a QUEUED run
   is refused (:class:`PreviewExpired`).
2. **Pages of products.** Targets are streamed a page of products at a time (never every
   target, never their explain JSON). For each page the variants are read from the shop
   (``nodes(ids:)``: current price and unit cost) and MAP / cost from the warehouse, then
   every target is judged by :func:`calibr_pipeline.domain.write_guard.check_write`:
   still at the previewed price? inside every guardrail on write-time data? not reverted
   or superseded by a newer run? Refusals are terminal, audited skips
   (SKIPPED_STALE / SKIPPED_GUARDRAIL / SKIPPED_SUPERSEDED).
3. **Write.** Per product: renew the lease (a writer that lost it stops before writing),
   commit PENDING -> APPLYING with ``attempts + 1`` *before* the request, send one
   ``productVariantsBulkUpdate``, record per-variant outcomes (APPLIED with exactly one
   audit row; userErrors FAILED and dead-lettered).
4. **Ambiguous answers are resolved by reading.** A write whose answer was lost (timeout,
   reset, 5xx, cut-off body, data with errors) leaves its targets APPLYING; the next pass
   reads them back: at the target price -> APPLIED (audited); still at the previewed price
   -> written again if attempts are left, else FAILED; anything else -> SKIPPED_STALE.
   A crashed apply leaves the same APPLYING targets; resuming it does the same.
5. **Outcome.** When nothing is PENDING or APPLYING the run ends APPLIED, PARTIAL or FAILED
   and the lease is released in the same guarded UPDATE.

SQL per product write is constant (a handful of set-based statements), whatever the number
of variants.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Callable, Sequence

from sqlalchemy import and_, bindparam, exists, func, or_, select, update
from sqlalchemy.orm import Session, aliased

from calibr_pipeline import settings
from calibr_pipeline.connectors.shopify_admin import ShopifyAdminClient, ShopifyAdminError
from calibr_pipeline.connectors.shopify_admin.writes import (
    VariantPriceUpdate,
    VariantSnapshot,
    bulk_update_prices,
    read_variants,
)
from calibr_pipeline.domain.errors import CalibrError
from calibr_pipeline.domain.rules import Guardrails, RuleValidationError, parse_rule
from calibr_pipeline.domain.state_machine import (
    RunState,
    TargetState,
    check_run_transition,
    check_target_transition,
    run_outcome,
)
from calibr_pipeline.domain.write_guard import WriteDecision, WriteTimeFacts, check_write
from calibr_pipeline.domain.write_policy import WRITE_TRANSIENT_POLICY, WriteFailureKind, failure_kind
from calibr_pipeline.services.catalog_sync import ClientFactory
from calibr_pipeline.services.rule_runs import RATE_PRESETS, get_run, known_competitor_ids
from calibr_pipeline.warehouse.engine import session_scope
from calibr_pipeline.warehouse.models import (
    DeadLetter,
    PriceAudit,
    PricingRule,
    Project,
    RuleRun,
    RuleRunMetrics,
    RuleTarget,
    Shop,
    Variant,
)
from calibr_pipeline.warehouse.outbox import record_event, record_events
from calibr_pipeline.warehouse.types import utcnow

PAGE_PRODUCTS = 25  # products judged per shop read; bounds memory and the read-to-write gap
READ_BATCH = 100  # variants per nodes(ids:) read
ACTIVE_TARGET_STATES = (TargetState.PENDING.value, TargetState.APPLYING.value)
# Error types that mean "the request may have reached the shop": such a FAILED target may
# have been written, so reconciliation and revert look at it too.
MAYBE_WRITTEN_ERRORS = frozenset({"http_5xx", "timeout", "connection", "malformed_body", "DATA_WITH_ERRORS"})


class RunTaken(CalibrError):
    """Another writer holds the run (or another run of the same shop is being applied)."""


class PreviewExpired(CalibrError):
    """The run's preview is older than the configured maximum age."""


class LeaseLost(CalibrError):
    """This writer's lease was taken over (it paused past its lease): it must stop writing."""


@dataclass
class ApplySummary:
    run_id: str
    state: str
    applied: int = 0
    failed: int = 0
    recovered: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    write_requests: int = 0
    read_requests: int = 0
    throttled: int = 0
    retries: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    duration_seconds: float = 0.0
    taken_by: str | None = None  # set when another writer held the run: nothing was done
    concurrency: int = 1  # product writes in flight at once (one writer, several requests)
    mode: str = "sync"  # "bulk": a bulk mutation wrote what it could, the sync loop the rest
    bulk_operation: str | None = None
    bulk_status: str | None = None
    bulk_message: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, **deltas: int) -> int:
        """Add to counters from any writer thread; returns the last counter's new value."""
        value = 0
        with self._lock:
            for name, delta in deltas.items():
                value = getattr(self, name) + delta
                setattr(self, name, value)
        return value

    def tally(self, counter: str, key: str, n: int = 1) -> None:
        with self._lock:
            bucket = getattr(self, counter)
            bucket[key] = bucket.get(key, 0) + n


def shop_for_run(session: Session, run: RuleRun) -> Shop:
    """The project's Shopify shop. A project has at most one (``tenancy.add_shop`` refuses a
    second), so every variant of a run is written through the shop it belongs to."""
    shop = session.scalar(select(Shop).where(Shop.project_id == run.project_id, Shop.platform == "shopify").order_by(Shop.id))
    if shop is None:
        raise CalibrError(f"project of run {run.id} has no Shopify shop to write to")
    session.expunge(shop)
    return shop


def new_owner(actor: str) -> str:
    return f"{actor[:60]}@{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def reverting_run(session: Session, run_id: str) -> str | None:
    """The id of a revert requested for ``run_id``, if any: its failed targets are never retried."""
    return session.scalar(select(RuleRun.id).where(RuleRun.source_run_id == run_id, RuleRun.kind == "revert").order_by(RuleRun.queued_at).limit(1))


def check_rule_enabled(session: Session, run: RuleRun) -> None:
    """A disabled rule (e.g. a copilot proposal awaiting review) is previewed, never applied."""
    if run.kind == "apply" and run.rule_id is not None:
        rule = session.get(PricingRule, run.rule_id)
        if rule is not None and not rule.active:
            raise CalibrError(f"rule {rule.name!r} is disabled: review and enable it before applying run {run.id}")


def check_preview_fresh(run: RuleRun, *, now: datetime, max_age_hours: float | None = None) -> None:
    """Refuse to start applying a QUEUED run whose preview is older than the maximum age."""
    max_age_hours = settings.preview_max_age_hours() if max_age_hours is None else max_age_hours
    if run.state != RunState.QUEUED or run.previewed_at is None:
        return
    age = now - run.previewed_at
    if age > timedelta(hours=max_age_hours):
        raise PreviewExpired(
            f"the preview of run {run.id} is {age.total_seconds() / 3600:.1f} h old (previews expire after {max_age_hours:g} h); "
            f"preview it again with `calibr runs preview --run {run.id}` and review the new targets, then apply"
        )


# -- claim, renew, release ---------------------------------------------------------------------


def claim_run(warehouse_url: str, run_id: str, owner: str, *, actor: str, lease_seconds: float, now: datetime | None = None) -> str | None:
    """Make ``owner`` the run's only writer; returns the state it was claimed from, or None
    when the run is already APPLIED (nothing to do). Raises :class:`RunTaken`."""
    now = now or utcnow()
    with session_scope(warehouse_url) as session:
        run = get_run(session, run_id)
        if run.state == RunState.APPLIED:
            return None
        if run.state in (RunState.PARTIAL, RunState.FAILED) and (reverted_by := reverting_run(session, run_id)):
            raise CalibrError(f"run {run_id} was reverted by run {reverted_by}; its failed targets are not retried")
        check_preview_fresh(run, now=now)
        check_rule_enabled(session, run)
        previous, project_id = run.state, run.project_id
    other = aliased(RuleRun)
    busy = exists().where(
        other.project_id == project_id, other.id != run_id, other.state == RunState.APPLYING.value, other.lease_expires_at > now
    )
    claimable = or_(
        RuleRun.state.in_([RunState.QUEUED.value, RunState.PARTIAL.value, RunState.FAILED.value]),
        and_(RuleRun.state == RunState.APPLYING.value, or_(RuleRun.lease_expires_at.is_(None), RuleRun.lease_expires_at < now)),
    )
    with session_scope(warehouse_url) as session:
        if session.get_bind().dialect.name == "postgresql":
            # Serialise claims per project (= per shop): two claims of different runs must not
            # both pass the "no other live lease" test under READ COMMITTED.
            session.execute(select(Project.id).where(Project.id == project_id).with_for_update())
        if previous != RunState.APPLYING:
            check_run_transition(previous, RunState.APPLYING)
        claimed = session.execute(
            update(RuleRun)
            .where(RuleRun.id == run_id, claimable, ~busy)
            .values(state=RunState.APPLYING.value, lease_owner=owner, lease_expires_at=now + timedelta(seconds=lease_seconds),
                    started_at=func.coalesce(RuleRun.started_at, now), completed_at=None, failed_at=None)
            .execution_options(synchronize_session=False)
        ).rowcount
        if claimed != 1:
            session.rollback()
            run = get_run(session, run_id)
            if run.state == RunState.APPLIED:
                return None
            if run.state == RunState.APPLYING and run.lease_expires_at and run.lease_expires_at >= now:
                raise RunTaken(f"run {run_id} is already being applied by {run.lease_owner} (lease until {run.lease_expires_at:%Y-%m-%d %H:%M:%S} UTC); nothing done")
            holder = session.scalar(select(RuleRun.id).where(RuleRun.project_id == project_id, RuleRun.id != run_id, RuleRun.state == RunState.APPLYING.value, RuleRun.lease_expires_at > now))
            if holder:
                raise RunTaken(f"run {holder} is writing to this project's shop right now; run {run_id} waits its turn (nothing done)")
            raise RunTaken(f"run {run_id} is {run.state} and cannot be claimed; nothing done")
        run = get_run(session, run_id)
        where = dict(tenant_id=run.tenant_id, actor=actor, correlation_id=run.correlation_id, project_id=run.project_id, run_id=run_id)
        if previous == RunState.APPLYING:
            record_event(session, "automation.run.resumed", {"run_id": run_id, "from_state": str(previous), "owner": owner}, **where)
        else:
            record_event(session, "automation.run.applying", {"run_id": run_id}, **where)
        selected = session.scalar(select(RuleTarget.id).where(RuleTarget.run_id == run_id, RuleTarget.state == TargetState.APPLYING.value).limit(1))
        if previous in (RunState.PARTIAL, RunState.FAILED) and selected is None:
            # Applying a PARTIAL/FAILED run again is the state machine's "retry failed/all"
            # (unless a manual retry already picked its targets).
            _retry_failed_targets(session, run, None, actor=actor)
    return str(previous)


def renew_lease(session: Session, run_id: str, owner: str, lease_seconds: float) -> None:
    renewed = session.execute(
        update(RuleRun)
        .where(RuleRun.id == run_id, RuleRun.lease_owner == owner, RuleRun.state == RunState.APPLYING.value)
        .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds))
        .execution_options(synchronize_session=False)
    ).rowcount
    if renewed != 1:
        raise LeaseLost(f"run {run_id}: this writer ({owner}) lost its lease to another writer; it stops without writing")


def release_lease(warehouse_url: str, run_id: str, owner: str) -> None:
    """Give the claim up early (the run stays APPLYING and can be resumed at once)."""
    with session_scope(warehouse_url) as session:
        session.execute(
            update(RuleRun).where(RuleRun.id == run_id, RuleRun.lease_owner == owner).values(lease_expires_at=utcnow())
            .execution_options(synchronize_session=False)
        )


# -- manual retry ------------------------------------------------------------------------------------


def _retry_failed_targets(session: Session, run: RuleRun, target_ids: Sequence[int] | None, *, actor: str) -> int:
    """FAILED -> APPLYING with attempts reset: they may have been written, so they are read
    back before anything is sent again."""
    query = select(RuleTarget.id).where(RuleTarget.run_id == run.id, RuleTarget.state == TargetState.FAILED.value)
    if target_ids:
        query = query.where(RuleTarget.id.in_(list(target_ids)))
    ids = list(session.scalars(query).all())
    if not ids:
        return 0
    check_target_transition(TargetState.FAILED, TargetState.APPLYING)
    now = utcnow()
    session.execute(
        update(RuleTarget).where(RuleTarget.id.in_(ids)).values(state=TargetState.APPLYING.value, attempts=0, next_attempt_at=None, last_attempt_at=now)
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(DeadLetter).where(DeadLetter.target_id.in_(ids), DeadLetter.resolved_at.is_(None)).values(resolved_at=now, resolution="retried")
        .execution_options(synchronize_session=False)
    )
    record_event(session, "automation.run.retry", {"run_id": run.id, "targets": ids}, tenant_id=run.tenant_id, actor=actor,
                 correlation_id=run.correlation_id, project_id=run.project_id, run_id=run.id)
    return len(ids)


def retry_failed(session: Session, run_id: str, *, target_ids: Sequence[int] | None = None, actor: str) -> int:
    """Manual retry of FAILED targets (all, or the given ids); the apply that follows claims
    the run and verifies them against the shop before any write."""
    run = get_run(session, run_id)
    if target_ids:
        found = set(session.scalars(select(RuleTarget.id).where(RuleTarget.run_id == run_id, RuleTarget.id.in_(list(target_ids)))).all())
        unknown = sorted(set(target_ids) - found)
        if unknown:
            raise CalibrError(f"target id(s) {unknown} do not belong to run {run_id}")
    if reverted_by := reverting_run(session, run_id):
        raise CalibrError(f"run {run_id} was reverted by run {reverted_by}; its failed targets are not retried")
    if run.state == RunState.APPLYING and run.lease_expires_at and run.lease_expires_at >= utcnow():
        raise RunTaken(f"run {run_id} is being applied by {run.lease_owner}; retry it once that apply ends")
    return _retry_failed_targets(session, run, target_ids, actor=actor)


# -- the apply loop -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    id: int
    variant_id: int
    sku: str
    variant_gid: str
    product_gid: str
    from_price: Decimal
    to_price: Decimal
    currency: str
    state: str
    attempts: int
    max_attempts: int
    error: str | None
    error_code: str | None

    @property
    def sent_before(self) -> bool:
        return self.state == TargetState.APPLYING.value or self.attempts > 0


_TARGET_COLUMNS = (
    RuleTarget.id, RuleTarget.variant_id, RuleTarget.sku, RuleTarget.variant_external_id, RuleTarget.product_external_id, RuleTarget.from_price,
    RuleTarget.to_price, RuleTarget.currency, RuleTarget.state, RuleTarget.attempts, RuleTarget.max_attempts, RuleTarget.error, RuleTarget.error_code,
)


@dataclass
class _RunContext:
    run_id: str
    tenant_id: int
    project_id: int
    correlation_id: str
    kind: str
    queued_at: datetime
    guardrails: Guardrails | None
    check_max_change: bool
    owner: str
    actor: str
    lease_seconds: float
    # Concurrent writes on SQLite: one transaction at a time, queued on this lock instead of
    # SQLite's busy handler (which sleeps 1-100 ms per retry and made 8 threads slower than 1).
    db_lock: threading.Lock | None = None


@contextmanager
def _transaction(warehouse_url: str, ctx: _RunContext) -> Iterator[Session]:
    if ctx.db_lock is None:
        with session_scope(warehouse_url) as session:
            yield session
        return
    with ctx.db_lock, session_scope(warehouse_url) as session:
        yield session


def _guardrails_of(session: Session, run: RuleRun) -> tuple[Guardrails | None, bool]:
    """The guardrails the write-time check uses: the run's rule (a revert or re-apply: the
    source run's rule; a revert skips max-change, since it undoes a change of that size)."""
    snapshot, check_max_change = run.rule_snapshot, True
    if run.kind != "apply" and run.source_run_id:
        source = get_run(session, run.source_run_id)
        snapshot, check_max_change = source.rule_snapshot, run.kind != "revert"
    if not snapshot:
        return None, check_max_change
    project = session.get(Project, run.project_id)
    try:
        rule = parse_rule(snapshot, currency=project.currency, known_competitor_ids=known_competitor_ids(session, run.project_id))
    except RuleValidationError as exc:
        raise CalibrError(f"run {run.id}: its rule no longer validates, so its guardrails cannot be checked at write time ({exc}); nothing written") from exc
    return rule.guardrails, check_max_change


def apply_run(
    warehouse_url: str,
    run_id: str,
    client_factory: ClientFactory,
    *,
    actor: str,
    sleep: Callable[[float], None] = time.sleep,
    after_request: Callable[[int], None] | None = None,
    lease_seconds: float | None = None,
    retry_delay: Callable[[int], float] | None = None,
    concurrency: int | None = None,
    mode: str | None = None,
    bulk_poll_interval: float = 0.5,
) -> ApplySummary:
    """Apply every PENDING (and verify every APPLYING) target of the run; see module docstring.

    Raises :class:`RunTaken` when another writer holds the run. ``retry_delay(attempts)`` is
    the wait before a target's next attempt (default: 2/4/8 s ±20 %). ``concurrency``: how
    many product writes this (single) writer keeps in flight at once; default
    ``CALIBR_APPLY_CONCURRENCY``, else chosen from the restore rate the shop reports
    (:func:`concurrency_for_restore_rate`: 1 on Standard, 8 on Plus). ``mode``: ``"sync"``,
    ``"bulk"`` (a bulk mutation first, see :func:`_apply_bulk`) or None: the run's preview
    choice (``run_metadata.apply_mode``), overridable with ``CALIBR_APPLY_MODE``.
    """
    started = time.monotonic()
    lease_seconds = settings.apply_lease_seconds() if lease_seconds is None else lease_seconds
    retry_delay = retry_delay or (lambda attempts: WRITE_TRANSIENT_POLICY.delay_for(max(1, attempts)))
    owner = new_owner(actor)
    if claim_run(warehouse_url, run_id, owner, actor=actor, lease_seconds=lease_seconds) is None:
        return ApplySummary(run_id, RunState.APPLIED.value)
    with session_scope(warehouse_url) as session:
        run = get_run(session, run_id)
        guardrails, check_max_change = _guardrails_of(session, run)
        ctx = _RunContext(run.id, run.tenant_id, run.project_id, run.correlation_id, run.kind, run.queued_at, guardrails, check_max_change,
                          owner, actor, lease_seconds)
        shop = shop_for_run(session, run)
        run_metadata = dict(run.run_metadata or {})
    summary = ApplySummary(run_id, RunState.APPLYING.value)
    mode = mode or settings.apply_mode() or (run_metadata.get("apply_mode") if isinstance(run_metadata, dict) else None) or "sync"
    if mode not in ("sync", "bulk"):
        raise CalibrError(f"apply mode must be sync or bulk, got {mode!r}")
    summary.mode = mode
    client = client_factory(shop)
    try:
        _release_bulk_holds(warehouse_url, run_id)  # a crashed bulk apply's targets are read back at once
        if mode == "bulk":
            _apply_bulk(warehouse_url, ctx, client, summary, sleep=sleep, poll_interval=bulk_poll_interval)
        if concurrency is None:
            concurrency = settings.apply_concurrency()
        if concurrency is None:
            preset = RATE_PRESETS.get((shop.rate_limit_preset or "").lower())
            concurrency = concurrency_for_restore_rate(preset[1] if preset else None)
        if concurrency is not None and concurrency > 1:
            summary.concurrency = concurrency
            _apply_concurrently(warehouse_url, ctx, client, summary, concurrency, sleep=sleep, retry_delay=retry_delay, after_request=after_request)
            return _finish(warehouse_url, ctx, client, summary, started)
        ready_by: datetime | None = None
        while True:
            now = max(utcnow(), ready_by or utcnow())
            with session_scope(warehouse_url) as session:
                renew_lease(session, run_id, owner, lease_seconds)
                page = _next_page(session, run_id, now)
                if not page:
                    earliest = session.scalar(
                        select(func.min(RuleTarget.next_attempt_at)).where(RuleTarget.run_id == run_id, RuleTarget.state.in_(ACTIVE_TARGET_STATES))
                    )
                    waiting = earliest is not None
            if not page:
                if not waiting:
                    break
                # Targets wait for their backoff; a test's fake sleep moves "now" along with it.
                sleep(max(0.0, (earliest - utcnow()).total_seconds()))
                ready_by = earliest
                continue
            _apply_page(warehouse_url, ctx, client, page, summary, sleep=sleep, retry_delay=retry_delay, after_request=after_request)
        return _finish(warehouse_url, ctx, client, summary, started)
    except (LeaseLost, RunTaken):
        raise
    except BaseException:
        # Interrupted (shop unreadable, process stopping): the run stays APPLYING and may be
        # resumed at once, by anyone.
        release_lease(warehouse_url, run_id, owner)
        raise
    finally:
        client.close()


def _next_page(session: Session, run_id: str, now: datetime, *, exclude_products: Iterable[str] = (), limit: int = PAGE_PRODUCTS) -> list[_Target]:
    ready = and_(
        RuleTarget.run_id == run_id,
        RuleTarget.state.in_(ACTIVE_TARGET_STATES),
        or_(RuleTarget.next_attempt_at.is_(None), RuleTarget.next_attempt_at <= now),
    )
    exclude_products = list(exclude_products)
    if exclude_products:
        # Products whose write is in flight: their rows are still PENDING/APPLYING.
        ready = and_(ready, RuleTarget.product_external_id.not_in(exclude_products))
    products = session.scalars(
        select(RuleTarget.product_external_id).where(ready).group_by(RuleTarget.product_external_id).order_by(RuleTarget.product_external_id).limit(limit)
    ).all()
    if not products:
        return []
    rows = session.execute(select(*_TARGET_COLUMNS).where(ready, RuleTarget.product_external_id.in_(products)).order_by(RuleTarget.product_external_id, RuleTarget.id)).all()
    return [_Target(*row) for row in rows]


def _superseded(session: Session, ctx: _RunContext, variant_ids: Iterable[int]) -> dict[int, str]:
    """Variants this run must no longer write: the run was reverted, or a newer run applied them."""
    variant_ids = list(set(variant_ids))
    reverted_by = reverting_run(session, ctx.run_id)
    if reverted_by:
        return {vid: f"run {ctx.run_id} was reverted by run {reverted_by}" for vid in variant_ids}
    newer = session.execute(
        select(RuleTarget.variant_id, func.min(RuleTarget.run_id))
        .join(RuleRun, RuleRun.id == RuleTarget.run_id)
        .where(RuleTarget.variant_id.in_(variant_ids), RuleRun.project_id == ctx.project_id, RuleRun.id != ctx.run_id,
               RuleRun.queued_at > ctx.queued_at, RuleTarget.state == TargetState.APPLIED.value)
        .group_by(RuleTarget.variant_id)
    ).all()
    superseded = {vid: f"superseded: newer run {other} already set this variant" for vid, other in newer}
    # A target already sent (APPLYING) whose variant another run applied *after* this run's
    # attempt: finding the target price when reading back would credit this run with the
    # other run's write (two audit rows for one write). It is that run's price now.
    attempted = {vid: at for vid, at in session.execute(
        select(RuleTarget.variant_id, func.max(RuleTarget.last_attempt_at))
        .where(RuleTarget.run_id == ctx.run_id, RuleTarget.variant_id.in_(variant_ids), RuleTarget.state == TargetState.APPLYING.value)
        .group_by(RuleTarget.variant_id)
    ).all() if at is not None}
    if attempted:
        for vid, other, applied_at in session.execute(
            select(RuleTarget.variant_id, RuleTarget.run_id, RuleTarget.applied_at)
            .join(RuleRun, RuleRun.id == RuleTarget.run_id)
            .where(RuleTarget.variant_id.in_(list(attempted)), RuleRun.project_id == ctx.project_id, RuleRun.id != ctx.run_id,
                   RuleTarget.state == TargetState.APPLIED.value)
        ).all():
            if vid not in superseded and applied_at is not None and applied_at >= attempted[vid]:
                superseded[vid] = f"superseded: run {other} set this variant after this run's attempt; its write is that run's, not audited again"
    return superseded


# -- concurrent writes (one writer, several requests in flight) -----------------------------------

READ_AHEAD = 2  # page reads under way while the writers write the pages read before
MAX_CONCURRENCY = 10  # requests' connection pool keeps 10 connections per host
# Points restored per second that one sequential writer can use at ~50-100 ms a round trip
# (10-point writes): Standard (100/s) needs 1 request in flight, Plus (1,000/s) about 8.
_RESTORE_PER_WRITER = 125.0


def concurrency_for_restore_rate(restore_rate: float | None) -> int:
    """Requests in flight that let one writer spend a bucket restoring ``restore_rate`` points/s."""
    if not restore_rate or restore_rate <= 0:
        return 1
    return max(1, min(MAX_CONCURRENCY, round(restore_rate / _RESTORE_PER_WRITER)))


def _apply_concurrently(warehouse_url: str, ctx: _RunContext, client: ShopifyAdminClient, summary: ApplySummary, concurrency: int, *,
                        sleep, retry_delay, after_request) -> None:
    """The apply loop with up to ``concurrency`` product writes in flight.

    Still one writer: the run's lease is this process's, renewed before every product write
    by whichever thread sends it; a lost lease stops every thread (the first error wins and
    no new write starts). The main thread reads and judges a page (the write-time check,
    per product, on data read from the shop just before), then hands the products to the
    worker threads; two reader threads read the next pages while they write (a page read of
    100 variants takes longer than its 25 writes at 8 in flight), never picking a product
    whose read or write is still under way. The gap between a product's read and its write
    is therefore at most about two pages of writes (well under a second on Plus). Every request, read or write, books its points in the
    client's shared :class:`CostBucket` and waits until the mirrored bucket can pay, so
    concurrency never sends a request the bucket cannot pay.
    """
    from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

    if warehouse_url.startswith("sqlite"):
        ctx = replace(ctx, db_lock=threading.Lock())

    in_flight: dict[Future, str] = {}
    slots = threading.Semaphore(concurrency)
    failed: list[BaseException] = []
    ready_by: datetime | None = None

    def check_failures() -> None:
        for future in [f for f in in_flight if f.done()]:
            del in_flight[future]
            error = future.exception()
            if error is not None:
                failed.append(error)
        if failed:
            raise failed[0]

    def run_one(product_gid, targets, decisions, snapshots) -> None:
        try:
            if failed:
                return  # another write failed (lease lost, shop unreadable): start nothing new
            _write_product(warehouse_url, ctx, client, product_gid, targets, decisions, snapshots, summary,
                           sleep=sleep, retry_delay=retry_delay, after_request=after_request)
        except BaseException as exc:
            failed.append(exc)
            raise
        finally:
            slots.release()

    reading: dict[Future, list[str]] = {}  # page reads under way -> their products
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix=f"apply-{ctx.run_id[:8]}") as pool, \
            ThreadPoolExecutor(max_workers=READ_AHEAD, thread_name_prefix=f"apply-read-{ctx.run_id[:8]}") as readers:
        try:
            while True:
                check_failures()
                # Keep READ_AHEAD page reads under way, so the writers never wait for a read.
                exhausted = False
                while len(reading) < READ_AHEAD and not exhausted:
                    now = max(utcnow(), ready_by or utcnow())
                    busy = set(in_flight.values()).union(*reading.values())
                    with _transaction(warehouse_url, ctx) as session:
                        renew_lease(session, ctx.run_id, ctx.owner, ctx.lease_seconds)
                        page = _next_page(session, ctx.run_id, now, exclude_products=busy, limit=PAGE_PRODUCTS)
                        earliest = None
                        if not page and not in_flight and not reading:
                            earliest = session.scalar(
                                select(func.min(RuleTarget.next_attempt_at)).where(RuleTarget.run_id == ctx.run_id, RuleTarget.state.in_(ACTIVE_TARGET_STATES))
                            )
                    if page:
                        reading[readers.submit(_judge_page, warehouse_url, ctx, client, page, summary)] = sorted({t.product_gid for t in page})
                    else:
                        exhausted = True
                if not reading:
                    if in_flight:
                        wait(list(in_flight), return_when=FIRST_COMPLETED)
                        continue
                    if earliest is None:
                        return
                    sleep(max(0.0, (earliest - utcnow()).total_seconds()))
                    ready_by = earliest
                    continue
                done, _ = wait(list(reading), return_when=FIRST_COMPLETED)
                for read in done:
                    judged = read.result()  # a page the shop would not let us read stops the run
                    for product_gid, targets, decisions, snapshots in judged:
                        slots.acquire()
                        check_failures()
                        in_flight[pool.submit(run_one, product_gid, targets, decisions, snapshots)] = product_gid
                    del reading[read]
        except BaseException:
            failed.append(RuntimeError("stopping"))  # workers not yet started do nothing
            raise
        finally:
            wait(list(reading))
            wait(list(in_flight))


# -- bulk-operation apply (huge runs) -----------------------------------------------------------------

BULK_PENDING = "BULK_PENDING"  # error_code of targets handed to a bulk operation, outcome not yet known
_BULK_HOLD = timedelta(hours=24)  # a bulk mutation ends within 24 h (Shopify)
_LOST_HOLD = timedelta(minutes=10)  # lost track of a started operation: wait before reading back


def _release_bulk_holds(warehouse_url: str, run_id: str) -> None:
    """Targets a crashed bulk apply left behind are due now: the loop reads them back."""
    with session_scope(warehouse_url) as session:
        session.execute(
            update(RuleTarget).where(RuleTarget.run_id == run_id, RuleTarget.state == TargetState.APPLYING.value, RuleTarget.error_code == BULK_PENDING)
            .values(next_attempt_at=None).execution_options(synchronize_session=False)
        )


def _apply_bulk(warehouse_url: str, ctx: _RunContext, client: ShopifyAdminClient, summary: ApplySummary, *, sleep, poll_interval: float) -> None:
    """Write the run's targets with one bulk mutation, then leave the rest to the sync loop.

    1. Page by page, exactly as the sync loop: read the variants (write-time facts), judge
       every target, record skips/recoveries, renew the lease, and commit the targets still
       safe to write as APPLYING (``attempts + 1``, ``error_code`` BULK_PENDING, held for
       24 h so the page query moves on). Only those go into the JSONL.
    2. Upload, run, poll, download (:mod:`connectors.shopify_admin.bulk`); the operation id
       is kept in the run's metadata.
    3. A result line decides its variants: written -> APPLIED (one audit row each);
       userErrors -> FAILED (dead-lettered). Variants without a result (operation FAILED
       before their line, a lost poll or download) stay APPLYING and are due at once: the
       sync loop that follows reads them back (at the target -> APPLIED, at the previewed
       price -> written again, else SKIPPED_STALE). An operation that never started
       (upload expired, another bulk mutation in progress) certainly wrote nothing: its
       targets go back to PENDING and the sync loop writes them.
    """
    from calibr_pipeline.connectors.shopify_admin.bulk import BulkLine, run_bulk_price_update

    held: list[_Target] = []
    while True:
        with session_scope(warehouse_url) as session:
            renew_lease(session, ctx.run_id, ctx.owner, ctx.lease_seconds)
            page = _next_page(session, ctx.run_id, utcnow())
        if not page:
            break
        judged = _judge_page(warehouse_url, ctx, client, page, summary)
        # One transaction per page (nothing is sent per product here; the lease is renewed
        # before the page's targets are committed as handed to the bulk operation).
        with session_scope(warehouse_url) as session:
            renew_lease(session, ctx.run_id, ctx.owner, ctx.lease_seconds)
            page_writes: list[_Target] = []
            for _product_gid, targets, decisions, snapshots in judged:
                to_write = [t for t in targets if decisions[t.id].verdict == "write" and t.attempts < t.max_attempts]
                exhausted = [t for t in targets if decisions[t.id].verdict == "write" and t.attempts >= t.max_attempts]
                _record_decisions(session, ctx, targets, decisions, snapshots, summary)
                if exhausted:
                    _fail(session, ctx, exhausted, summary, error_type_of=lambda t: t.error_code or "unknown", message_of=lambda t: t.error or "write attempts exhausted")
                page_writes.extend(to_write)
            if page_writes:
                session.execute(
                    update(RuleTarget).where(RuleTarget.id.in_([t.id for t in page_writes]))
                    .values(state=TargetState.APPLYING.value, attempts=RuleTarget.attempts + 1, last_attempt_at=utcnow(),
                            next_attempt_at=utcnow() + _BULK_HOLD, error_code=BULK_PENDING, error="handed to a bulk operation")
                    .execution_options(synchronize_session=False)
                )
        held.extend(_after_attempt(t) for t in page_writes)
    if not held:
        return
    by_product: dict[str, list[_Target]] = defaultdict(list)
    for t in held:
        by_product[t.product_gid].append(t)
    lines = [BulkLine(product, [(t.variant_gid, t.to_price) for t in targets]) for product, targets in by_product.items()]

    def remember(operation_id: str) -> None:
        summary.bulk_operation = operation_id
        with session_scope(warehouse_url) as session:
            run = get_run(session, ctx.run_id)
            run.run_metadata = {**(run.run_metadata or {}), "bulk_operation": operation_id}

    summary.count(write_requests=1)
    result = run_bulk_price_update(client, lines, sleep=sleep, on_started=remember, poll_interval=poll_interval)
    summary.bulk_status, summary.bulk_message = result.status, result.message
    ok = [t for t in held if (o := result.outcomes.get(t.variant_gid)) is not None and o.ok]
    refused = [t for t in held if (o := result.outcomes.get(t.variant_gid)) is not None and not o.ok]
    unknown = [t for t in held if t.variant_gid not in result.outcomes]
    chunk = 500
    for start in range(0, max(len(ok), len(refused)), chunk):
        with session_scope(warehouse_url) as session:
            renew_lease(session, ctx.run_id, ctx.owner, ctx.lease_seconds)
            _mark_applied(session, ctx, ok[start:start + chunk], summary, note=f"written by bulk operation {result.operation_id}")
            part = refused[start:start + chunk]
            if part:
                _fail(session, ctx, part, summary, error_type_of=lambda t: result.outcomes[t.variant_gid].error_code or "USER_ERROR",
                      message_of=lambda t: result.outcomes[t.variant_gid].error_message or "refused by the shop")
    if unknown:
        ids = [t.id for t in unknown]
        with session_scope(warehouse_url) as session:
            due: datetime | None = None
            if result.status == "REFUSED":
                # Never started: nothing was written; the sync loop writes them (attempt given back).
                check_target_transition(TargetState.APPLYING, TargetState.PENDING, attempts=0, max_attempts=1)
                values = dict(state=TargetState.PENDING.value, attempts=RuleTarget.attempts - 1)
            elif result.status == "LOST":
                # The operation may still be running: read them back only once it has had time to end.
                values, due = {}, utcnow() + _LOST_HOLD
            else:
                values = {}
            for start in range(0, len(ids), chunk):
                session.execute(
                    update(RuleTarget).where(RuleTarget.id.in_(ids[start:start + chunk]))
                    .values(next_attempt_at=due, error_code=f"BULK_{result.status}", error=(result.message or result.status)[:2000], **values)
                    .execution_options(synchronize_session=False)
                )
        summary.tally("errors", f"BULK_{result.status}", len(unknown))


def _judge_page(warehouse_url: str, ctx: _RunContext, client: ShopifyAdminClient, page: list[_Target], summary: ApplySummary) -> list[tuple[str, list[_Target], dict[int, WriteDecision], Any]]:
    """Read the page's variants from the shop (write-time facts) and judge every target;
    returns ``(product_gid, targets, decisions, snapshots)`` per product, in page order."""
    gids = [t.variant_gid for t in page]
    snapshots = read_variants(client, gids, batch_size=READ_BATCH, with_cost=True)
    summary.count(read_requests=-(-len(gids) // READ_BATCH))  # requests sent (not counting transport retries)
    with _transaction(warehouse_url, ctx) as session:
        catalog = {row.id: (row.cost, row.map_price) for row in session.execute(
            select(Variant.id, Variant.cost, Variant.map_price).where(Variant.id.in_([t.variant_id for t in page]))
        )}
        superseded = _superseded(session, ctx, [t.variant_id for t in page])
    by_product: dict[str, list[_Target]] = defaultdict(list)
    for target in page:
        by_product[target.product_gid].append(target)
    judged = []
    for product_gid, targets in by_product.items():
        decisions: dict[int, WriteDecision] = {}
        for t in targets:
            if t.variant_id in superseded:
                decisions[t.id] = WriteDecision("superseded", superseded[t.variant_id])  # type: ignore[arg-type]
                continue
            snapshot: VariantSnapshot | None = snapshots.get(t.variant_gid)
            db_cost, map_price = catalog.get(t.variant_id, (None, None))
            facts = WriteTimeFacts(
                shop_price=snapshot.price if snapshot is not None else None,
                cost=snapshot.unit_cost if snapshot is not None and snapshot.unit_cost is not None else db_cost,
                map_price=map_price,
            )
            decisions[t.id] = check_write(ctx.guardrails, t.currency, from_price=t.from_price, to_price=t.to_price, facts=facts,
                                          sent_before=t.sent_before, check_max_change=ctx.check_max_change)
        judged.append((product_gid, targets, decisions, snapshots))
    return judged


def _apply_page(warehouse_url: str, ctx: _RunContext, client: ShopifyAdminClient, page: list[_Target], summary: ApplySummary, *, sleep, retry_delay, after_request) -> None:
    for product_gid, targets, decisions, snapshots in _judge_page(warehouse_url, ctx, client, page, summary):
        _write_product(warehouse_url, ctx, client, product_gid, targets, decisions, snapshots, summary,
                       sleep=sleep, retry_delay=retry_delay, after_request=after_request)


def _write_product(warehouse_url: str, ctx: _RunContext, client: ShopifyAdminClient, product_gid: str, targets: list[_Target],
                   decisions: dict[int, WriteDecision], snapshots, summary: ApplySummary, *, sleep, retry_delay, after_request) -> None:
    """Record one product's write-time decisions, then write the targets still safe to write
    (one request) and record their outcomes. Thread-safe: it only touches this product's rows."""
    to_write = [t for t in targets if decisions[t.id].verdict == "write" and t.attempts < t.max_attempts]
    exhausted = [t for t in targets if decisions[t.id].verdict == "write" and t.attempts >= t.max_attempts]
    with _transaction(warehouse_url, ctx) as session:
        renew_lease(session, ctx.run_id, ctx.owner, ctx.lease_seconds)
        _record_decisions(session, ctx, targets, decisions, snapshots, summary)
        if exhausted:
            _fail(session, ctx, exhausted, summary, error_type_of=lambda t: t.error_code or "unknown",
                  message_of=lambda t: t.error or "write attempts exhausted")
        if to_write:
            session.execute(
                update(RuleTarget).where(RuleTarget.id.in_([t.id for t in to_write]))
                .values(state=TargetState.APPLYING.value, attempts=RuleTarget.attempts + 1, last_attempt_at=utcnow(), next_attempt_at=None)
                .execution_options(synchronize_session=False)
            )
    if not to_write:
        return
    # APPLYING (and the attempt) is committed before the request: a crash from here on is
    # recovered by reading the shop, never by writing blindly.
    write_number = summary.count(write_requests=1)
    updates = [VariantPriceUpdate(variant_gid=t.variant_gid, price=t.to_price) for t in to_write]
    try:
        result = bulk_update_prices(client, product_gid, updates, allow_partial=True, sleep=sleep)
        outcome, failure = {r.variant_gid: r for r in result.results}, None
    except ShopifyAdminError as exc:
        outcome, failure = {}, exc
    with _transaction(warehouse_url, ctx) as session:
        if failure is not None:
            _record_failure(session, ctx, to_write, failure, summary, retry_delay)
        else:
            ok = [t for t in to_write if (r := outcome.get(t.variant_gid)) is not None and r.ok]
            refused = [t for t in to_write if t not in ok]
            _mark_applied(session, ctx, ok, summary, note=None)
            if refused:
                _fail(session, ctx, refused, summary,
                      error_type_of=lambda t: (outcome[t.variant_gid].error_code if t.variant_gid in outcome else None) or "MISSING_RESULT",
                      message_of=lambda t: (outcome[t.variant_gid].error_message if t.variant_gid in outcome else None) or "the shop returned no result for this variant")
    if after_request is not None:
        after_request(write_number)


def _record_decisions(session: Session, ctx: _RunContext, targets: list[_Target], decisions: dict[int, WriteDecision], snapshots, summary: ApplySummary) -> None:
    recovered = [t for t in targets if decisions[t.id].verdict == "already_applied"]
    if recovered:
        _mark_applied(session, ctx, recovered, summary, note="found at the target price when read back (a lost answer or an interrupted apply): audited once, not written again")
        summary.count(recovered=len(recovered))
    skip_state = {"stale": TargetState.SKIPPED_STALE, "guardrail": TargetState.SKIPPED_GUARDRAIL, "superseded": TargetState.SKIPPED_SUPERSEDED}
    skipped = [(t, skip_state[decisions[t.id].verdict]) for t in targets if decisions[t.id].verdict in skip_state]
    if not skipped:
        return
    now = utcnow()
    for t, state in skipped:
        check_target_transition(t.state, state)
        decision = decisions[t.id]
        # One statement per skip: rare by nature, and each carries its own reason.
        session.execute(
            update(RuleTarget).where(RuleTarget.id == t.id).values(state=state.value, error=decision.reason[:2000], error_code=state.value, next_attempt_at=None)
            .execution_options(synchronize_session=False)
        )
        summary.tally("skipped", state.value)
    # The write-time check joins the target's explain trace (read per target, so loaded per skip).
    for t, state in skipped:
        target = session.get(RuleTarget, t.id)
        target.explain = {**(target.explain or {}), "write_time_check": {**decisions[t.id].explain(), "checked_at": now.isoformat()}}
    _resolve_letters(session, [t.id for t, _ in skipped], resolution="skipped")
    record_events(session, "price.skipped", [
        {"tenant_id": ctx.tenant_id, "project_id": ctx.project_id, "run_id": ctx.run_id, "actor": ctx.actor,
         "correlation_id": ctx.correlation_id,
         "payload": {"run_id": ctx.run_id, "target_id": t.id, "sku": t.sku, "state": state.value, "from": str(t.from_price), "to": str(t.to_price),
                     "reason": decisions[t.id].reason, "bound": decisions[t.id].bound}}
        for t, state in skipped
    ])


def audit_write(session: Session, run: RuleRun, target: RuleTarget, *, actor: str, note: str | None = None) -> None:
    """The one audit row (and ``price.applied`` / ``price.reverted`` event) of a write found
    outside the apply loop (reconciliation, revert preview); unique per idempotency key."""
    if session.scalar(select(PriceAudit.id).where(PriceAudit.idempotency_key == target.idempotency_key)) is not None:
        return
    session.add(PriceAudit(
        tenant_id=run.tenant_id, project_id=run.project_id, run_id=run.id, target_id=target.id, variant_id=target.variant_id, sku=target.sku,
        event_type="price.reverted" if run.kind == "revert" else "price.applied", actor=actor, from_price=target.from_price,
        to_price=target.to_price, currency=target.currency, correlation_id=run.correlation_id, idempotency_key=target.idempotency_key, note=note,
    ))
    payload = {"run_id": run.id, "target_id": target.id, "sku": target.sku, "from": str(target.from_price), "to": str(target.to_price),
               "currency": target.currency, "idempotency_key": target.idempotency_key, "note": note}
    where = dict(tenant_id=run.tenant_id, actor=actor, correlation_id=run.correlation_id, project_id=run.project_id, run_id=run.id)
    if run.kind == "revert":
        record_event(session, "price.reverted", payload, **where)
    else:
        record_event(session, "price.applied", payload, **where)


def _resolve_letters(session: Session, target_ids: list[int], *, resolution: str) -> None:
    if target_ids:
        session.execute(
            update(DeadLetter).where(DeadLetter.target_id.in_(target_ids), DeadLetter.resolved_at.is_(None)).values(resolved_at=utcnow(), resolution=resolution)
            .execution_options(synchronize_session=False)
        )


def _mark_applied(session: Session, ctx: _RunContext, targets: list[_Target], summary: ApplySummary, *, note: str | None) -> None:
    """APPLIED with exactly one audit row each (the idempotency key is unique), in one go."""
    if not targets:
        return
    for t in targets:
        check_target_transition(t.state if t.state != TargetState.PENDING.value else TargetState.APPLYING, TargetState.APPLIED)
    now = utcnow()
    ids = [t.id for t in targets]
    keys = {t.id: f"{ctx.run_id}:{t.id}" for t in targets}
    session.execute(
        update(RuleTarget).where(RuleTarget.id.in_(ids)).values(state=TargetState.APPLIED.value, applied_at=now, error=None, error_code=None, next_attempt_at=None)
        .execution_options(synchronize_session=False)
    )
    already = set(session.scalars(select(PriceAudit.idempotency_key).where(PriceAudit.idempotency_key.in_(list(keys.values())))).all())
    fresh = [t for t in targets if keys[t.id] not in already]
    event_type = "price.reverted" if ctx.kind == "revert" else "price.applied"  # the audit row's own column
    if fresh:
        session.execute(PriceAudit.__table__.insert(), [
            {"tenant_id": ctx.tenant_id, "project_id": ctx.project_id, "run_id": ctx.run_id, "target_id": t.id, "variant_id": t.variant_id, "sku": t.sku,
             "event_type": event_type, "actor": ctx.actor, "from_price": t.from_price, "to_price": t.to_price, "currency": t.currency,
             "correlation_id": ctx.correlation_id, "idempotency_key": keys[t.id], "note": note, "created_at": now}
            for t in fresh
        ])
        events = [
            {"tenant_id": ctx.tenant_id, "project_id": ctx.project_id, "run_id": ctx.run_id, "actor": ctx.actor, "correlation_id": ctx.correlation_id,
             "payload": {"run_id": ctx.run_id, "target_id": t.id, "sku": t.sku, "from": str(t.from_price), "to": str(t.to_price), "currency": t.currency,
                         "idempotency_key": keys[t.id], "note": note}}
            for t in fresh
        ]
        if ctx.kind == "revert":
            record_events(session, "price.reverted", events)
        else:
            record_events(session, "price.applied", events)
    # Our catalog mirrors what we wrote until the next sync (one executemany).
    variants = Variant.__table__
    session.execute(
        update(variants).where(variants.c.id == bindparam("b_id")).values(price=bindparam("b_price")),
        [{"b_id": t.variant_id, "b_price": t.to_price} for t in targets],
    )
    _resolve_letters(session, ids, resolution="applied")
    summary.count(applied=len(targets))


def _fail(session: Session, ctx: _RunContext, targets: list[_Target], summary: ApplySummary, *, error_type_of, message_of) -> None:
    """FAILED for good (userError, attempts spent): one dead letter per target, re-opened if it exists."""
    now = utcnow()
    for t in targets:
        error_type, message = error_type_of(t), (message_of(t) or "")[:2000]
        check_target_transition(TargetState.APPLYING if t.state == TargetState.PENDING.value else t.state, TargetState.FAILED)
        session.execute(
            update(RuleTarget).where(RuleTarget.id == t.id).values(state=TargetState.FAILED.value, error=message, error_code=error_type, next_attempt_at=None)
            .execution_options(synchronize_session=False)
        )
        attempts = max(t.attempts, 1)
        letter = session.scalar(select(DeadLetter).where(DeadLetter.target_id == t.id))
        if letter is None:
            session.add(DeadLetter(tenant_id=ctx.tenant_id, run_id=ctx.run_id, target_id=t.id, error_type=error_type, error_message=message, attempts=attempts, created_at=now))
        else:
            letter.error_type, letter.error_message, letter.attempts = error_type, message, attempts
            letter.resolved_at = letter.resolution = None
        summary.count(failed=1)
        summary.tally("errors", error_type)


def _record_failure(session: Session, ctx: _RunContext, targets: list[_Target], failure: ShopifyAdminError, summary: ApplySummary, retry_delay) -> None:
    error_type = getattr(failure.error_class, "value", str(failure.error_class))
    if failure.code == "DATA_WITH_ERRORS":
        error_type = "DATA_WITH_ERRORS"
    summary.tally("errors", error_type, len(targets))
    message = str(failure)[:2000]
    if failure.maybe_written:
        # The write may have landed: stay APPLYING; the next pass reads them back first.
        for t in targets:
            session.execute(
                update(RuleTarget).where(RuleTarget.id == t.id)
                .values(error=message, error_code=error_type, next_attempt_at=utcnow() + timedelta(seconds=retry_delay(t.attempts + 1)))
                .execution_options(synchronize_session=False)
            )
        return
    kind = failure_kind(failure.error_class, failure.code)
    attempted = [_after_attempt(t) for t in targets]
    retryable = kind in (WriteFailureKind.TRANSIENT, WriteFailureKind.THROTTLED)
    again = [t for t in attempted if retryable and t.attempts < t.max_attempts]
    final = [t for t in attempted if t not in again]
    for t in again:
        check_target_transition(TargetState.APPLYING, TargetState.PENDING, attempts=t.attempts, max_attempts=t.max_attempts)
        session.execute(
            update(RuleTarget).where(RuleTarget.id == t.id)
            .values(state=TargetState.PENDING.value, error=message, error_code=error_type, next_attempt_at=utcnow() + timedelta(seconds=retry_delay(t.attempts)))
            .execution_options(synchronize_session=False)
        )
    if final:
        _fail(session, ctx, final, summary, error_type_of=lambda t: error_type, message_of=lambda t: message)


def _after_attempt(t: _Target) -> _Target:
    """The target as it is in the database after the attempt was counted (APPLYING, attempts + 1)."""
    return _Target(t.id, t.variant_id, t.sku, t.variant_gid, t.product_gid, t.from_price, t.to_price, t.currency, TargetState.APPLYING.value,
                   t.attempts + 1, t.max_attempts, t.error, t.error_code)


def _finish(warehouse_url: str, ctx: _RunContext, client: ShopifyAdminClient, summary: ApplySummary, started: float) -> ApplySummary:
    stats = getattr(client, "stats", None)
    summary.throttled = getattr(stats, "throttled", 0)
    summary.retries = getattr(stats, "retries", 0)
    summary.duration_seconds = round(time.monotonic() - started, 3)
    with session_scope(warehouse_url) as session:
        counts = dict(session.execute(
            select(RuleTarget.state, func.count()).where(RuleTarget.run_id == ctx.run_id, RuleTarget.action == "write").group_by(RuleTarget.state)
        ).all())
        outcome = run_outcome(TargetState(s) for s in counts)  # which states occur decides it
        check_run_transition(RunState.APPLYING, outcome)
        now = utcnow()
        first_error = session.scalar(select(RuleTarget.error).where(RuleTarget.run_id == ctx.run_id, RuleTarget.state == TargetState.FAILED.value).limit(1))
        run = get_run(session, ctx.run_id)
        done = session.execute(
            update(RuleRun).where(RuleRun.id == ctx.run_id, RuleRun.lease_owner == ctx.owner, RuleRun.state == RunState.APPLYING.value)
            .values(state=outcome.value, lease_owner=None, lease_expires_at=None,
                    completed_at=None if outcome is RunState.FAILED else now, failed_at=now if outcome is RunState.FAILED else None,
                    error=first_error if outcome is RunState.FAILED else None,
                    run_metadata={**(run.run_metadata or {}), "last_apply": {
                        "write_requests": summary.write_requests, "read_requests": summary.read_requests, "throttled": summary.throttled,
                        "retries": summary.retries, "seconds": summary.duration_seconds, "skipped": summary.skipped}})
            .execution_options(synchronize_session=False)
        ).rowcount
        if done != 1:
            raise LeaseLost(f"run {ctx.run_id}: this writer lost its lease before it could record the outcome")
        applied, failed = counts.get(TargetState.APPLIED.value, 0), counts.get(TargetState.FAILED.value, 0)
        # Skipped targets are in the run's metadata and in their own price.skipped events.
        record_event(session, "automation.run.completed",
                     {"run_id": ctx.run_id, "outcome": outcome.value, "counts": {"applied": applied, "failed": failed, "total": applied + failed},
                      "write_requests": summary.write_requests},
                     tenant_id=ctx.tenant_id, actor=ctx.actor, correlation_id=ctx.correlation_id, project_id=ctx.project_id, run_id=ctx.run_id)
        session.expire_all()
        write_run_metrics(session, ctx.run_id, throttled=summary.throttled, retries=summary.retries, write_requests=summary.write_requests)
        summary.state = outcome.value
    return summary


def write_run_metrics(session: Session, run_id: str, *, throttled: int = 0, retries: int = 0, write_requests: int = 0) -> RuleRunMetrics:
    run = get_run(session, run_id)
    counts = dict(
        session.execute(
            select(RuleTarget.state, func.count()).where(RuleTarget.run_id == run_id, RuleTarget.action == "write").group_by(RuleTarget.state)
        ).all()
    )
    total = session.scalar(select(func.count()).select_from(RuleTarget).where(RuleTarget.run_id == run_id)) or 0
    writes = sum(counts.values())
    applied = counts.get(TargetState.APPLIED.value, 0)
    dlq = session.scalar(select(func.count()).select_from(DeadLetter).where(DeadLetter.run_id == run_id, DeadLetter.resolved_at.is_(None))) or 0
    finished = run.completed_at or run.failed_at
    duration = Decimal(str(round((finished - run.started_at).total_seconds(), 3))) if finished and run.started_at else None
    metrics = session.get(RuleRunMetrics, run_id)
    previous = (metrics.throttled_count, metrics.retry_count, metrics.write_requests) if metrics else (0, 0, 0)
    values = dict(
        tenant_id=run.tenant_id,
        state=run.state,
        targets_total=total,
        targets_write=writes,
        targets_pending=counts.get(TargetState.PENDING.value, 0),
        targets_applying=counts.get(TargetState.APPLYING.value, 0),
        targets_applied=applied,
        targets_failed=counts.get(TargetState.FAILED.value, 0),
        success_rate=(Decimal(applied) / Decimal(writes)).quantize(Decimal("0.0001")) if writes else None,
        duration_seconds=duration,
        dlq_size=dlq,
        throttled_count=previous[0] + throttled,
        retry_count=previous[1] + retries,
        write_requests=previous[2] + write_requests,
        computed_at=utcnow(),
    )
    if metrics is None:
        metrics = RuleRunMetrics(run_id=run_id, **values)
        session.add(metrics)
    else:
        for key, value in values.items():
            setattr(metrics, key, value)
    return metrics

"""Pricing rules and rule runs in the warehouse: store rules, request runs, compute targets.

A *rule run* is one execution of a rule (or a revert of an earlier run). Its targets are
computed by the ``rule_targets`` asset (the preview), applied by ``applied_prices`` and
checked by ``reconciliation_report``. Requesting an apply writes the run row and a
``job.rules.apply`` outbox event in one transaction; a sensor launches the Dagster run.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import String, Text, bindparam, cast, delete, func, literal, select, text, update
from sqlalchemy.orm import Session

from calibr_pipeline import settings
from calibr_pipeline.domain.errors import CalibrError
from calibr_pipeline.domain.rules import (
    CompetitorPriceInput,
    PricingRule as RuleDefinition,
    SkuContext,
    compute_target,
    expand_explain,
    explain_base,
    in_scope,
    is_compact_explain,
    parse_rule,
    rule_to_dict,
)
from calibr_pipeline.domain.state_machine import RunState, TargetState
from calibr_pipeline.warehouse.models import (
    Competitor,
    CompetitorListing,
    NormalizedPriceSnapshot,
    PricingRule,
    Product,
    Project,
    RuleRun,
    RuleTarget,
    Variant,
)
from calibr_pipeline.warehouse.outbox import publish, record_event
from calibr_pipeline.warehouse.tenancy import InvalidInputError, NotFoundError, project_by_slug
from calibr_pipeline.warehouse.types import _QUANTUM, SCALE, utcnow

APPLY_REQUESTED = "job.rules.apply"
MAX_WRITE_ATTEMPTS = 3

# Shopify GraphQL Admin cost budgets (bucket size, restore rate per second) per plan.
RATE_PRESETS: dict[str, tuple[int, int]] = {"standard": (2000, 100), "advanced": (4000, 200), "plus": (10000, 1000)}
BULK_UPDATE_COST = 10
ASSUMED_REQUEST_LATENCY_S = 0.15


def known_competitor_ids(session: Session, project_id: int) -> set[int]:
    return set(session.scalars(select(Competitor.id).where(Competitor.project_id == project_id)).all())


def save_rule(session: Session, *, project_slug: str, definition: dict, actor: str) -> PricingRule:
    """Validate and store a rule (replacing the project's rule of the same name)."""
    project = project_by_slug(session, project_slug)
    rule = parse_rule(definition, currency=project.currency, known_competitor_ids=known_competitor_ids(session, project.id))
    stored = session.scalar(select(PricingRule).where(PricingRule.project_id == project.id, PricingRule.name == rule.name))
    if stored is None:
        stored = PricingRule(project_id=project.id, name=rule.name, definition=rule_to_dict(rule), created_by=actor, active=True)
        session.add(stored)
    else:
        stored.definition, stored.updated_at, stored.active = rule_to_dict(rule), utcnow(), True
    session.flush()
    record_event(session, "rule.saved", {"rule_id": stored.id, "name": rule.name}, tenant_id=project.tenant_id, actor=actor, project_id=project.id)
    return stored


def rule_by_name(session: Session, project: Project, name: str) -> PricingRule:
    rule = session.scalar(select(PricingRule).where(PricingRule.project_id == project.id, PricingRule.name == name))
    if rule is None:
        known = ", ".join(session.scalars(select(PricingRule.name).where(PricingRule.project_id == project.id)).all()) or "none"
        raise NotFoundError(f"unknown rule {name!r} in project {project.slug!r} (rules: {known})")
    return rule


def get_run(session: Session, run_id: str) -> RuleRun:
    run = session.get(RuleRun, run_id)
    if run is None:
        raise NotFoundError(f"unknown rule run {run_id!r}")
    return run


def create_run(
    session: Session,
    *,
    project_slug: str,
    rule_name: str | None = None,
    actor: str,
    kind: str = "apply",
    source_run_id: str | None = None,
    request_apply: bool = False,
) -> RuleRun:
    """A QUEUED run; with ``request_apply`` also its ``job.rules.apply`` outbox event (same transaction)."""
    project = project_by_slug(session, project_slug)
    rule = rule_by_name(session, project, rule_name) if rule_name else None
    if kind == "apply" and rule is None:
        raise InvalidInputError("an apply run needs a rule")
    if kind in ("revert", "reconcile_retry"):
        source = get_run(session, source_run_id or "")
        if source.project_id != project.id:
            raise InvalidInputError(f"run {source_run_id} belongs to another project")
    run = RuleRun(
        id=str(uuid.uuid4()),
        tenant_id=project.tenant_id,
        project_id=project.id,
        rule_id=rule.id if rule else None,
        kind=kind,
        source_run_id=source_run_id,
        state=RunState.QUEUED.value,
        requested_by=actor,
        correlation_id=str(uuid.uuid4()),
        rule_snapshot=rule.definition if rule else None,
        queued_at=utcnow(),
        run_metadata={},
    )
    session.add(run)
    session.flush()
    record_event(session, "automation.run.queued", {"run_id": run.id, "kind": kind, "rule": rule_name}, tenant_id=run.tenant_id, actor=actor, correlation_id=run.correlation_id, project_id=run.project_id, run_id=run.id)
    if request_apply:
        request_apply_of(session, run, actor=actor)
    return run


def request_apply_of(session: Session, run: RuleRun, *, actor: str) -> str:
    """Publish the ``job.rules.apply`` event for an existing run; returns the event id.

    QUEUED, PARTIAL and FAILED runs can be applied, and an APPLYING run whose writer's
    lease expired (a killed apply) is resumed. Refused: a run being applied right now, a
    reverted run's retry, and a QUEUED run whose preview expired.
    """
    from calibr_pipeline.services.price_apply import check_preview_fresh, check_rule_enabled, reverting_run

    now = utcnow()
    if run.state == RunState.APPLYING:
        if run.lease_expires_at is not None and run.lease_expires_at >= now:
            raise InvalidInputError(f"run {run.id} is being applied right now by {run.lease_owner} (lease until {run.lease_expires_at:%Y-%m-%d %H:%M:%S} UTC)")
    elif run.state not in (RunState.QUEUED, RunState.PARTIAL, RunState.FAILED):
        raise InvalidInputError(f"run {run.id} is {run.state}; only QUEUED, PARTIAL or FAILED runs (or an interrupted APPLYING one) can be applied")
    if run.state in (RunState.PARTIAL, RunState.FAILED) and (reverted_by := reverting_run(session, run.id)):
        raise InvalidInputError(f"run {run.id} was reverted by run {reverted_by}; its failed targets are not retried")
    check_preview_fresh(run, now=now)
    check_rule_enabled(session, run)
    event = publish(
        session, APPLY_REQUESTED, {"run_id": run.id, "kind": run.kind}, tenant_id=run.tenant_id, actor=actor, project_id=run.project_id, run_id=run.id
    )
    return event.id


@dataclass(frozen=True)
class TargetStats:
    total: int
    to_write: int
    by_status: dict[str, int]
    products: int
    estimated_apply_seconds: float
    frozen: bool


BULK_WHEN_SYNC_SECONDS_OVER = 900.0  # a sync apply estimated longer than 15 min goes through a bulk mutation


def choose_apply_mode(estimated_sync_seconds: float) -> str:
    """``bulk`` when a synchronous apply would hold the shop's budget for long; else ``sync``."""
    return "bulk" if estimated_sync_seconds > BULK_WHEN_SYNC_SECONDS_OVER else "sync"


def estimate_apply_seconds(products: int, preset: str | None, concurrency: int | None = None) -> float:
    """Rate-limit floor plus latency: each product is one bulk update costing 10 points."""
    bucket, restore = RATE_PRESETS.get((preset or "standard").lower(), RATE_PRESETS["standard"])
    if concurrency is None:
        # The apply keeps this many writes in flight (price_apply.concurrency_for_restore_rate).
        concurrency = max(1, min(10, round(restore / 125)))
    cost = products * BULK_UPDATE_COST
    # The run takes whichever is longer, the rate-limit floor or the round trips (up to
    # ``concurrency`` at once); they overlap, so they do not add up.
    return round(max(max(0, cost - bucket) / restore, products * ASSUMED_REQUEST_LATENCY_S / concurrency), 1)


def _quarantine_reason(trust_score, trust_reasons) -> str:
    signals = ", ".join(r.get("signal", "?") for r in (trust_reasons or []) if isinstance(r, dict))
    return f"trust {trust_score} below threshold ({signals or 'no reasons recorded'})"


def _competitor_inputs(session: Session, project_id: int, variant_ids: Collection[int] | None, now: datetime, max_age_hours: int) -> dict[int, list[CompetitorPriceInput]]:
    """The latest usable-looking snapshot of each active listing, per variant (all of the
    project's variants when ``variant_ids`` is None), in listing order. A newer snapshot that
    has no amount in the project's currency (its FX rate missing or stale) comes along with
    ``amount`` None and its reason, so the explain trace lists it as excluded instead of
    silently pricing on the older one."""
    since = (now - timedelta(hours=max_age_hours + 24)).date()
    S = NormalizedPriceSnapshot
    rows = session.execute(  # columns, not entities: no identity map, no JSON decoding; streamed
        select(S.listing_id, S.variant_id, S.observation_id, S.competitor_id, S.amount_in_project_currency, S.observed_at, S.availability, Competitor.trusted, S.quarantined, S.trust_score, S.id.label("snapshot_id"),
               S.excluded_reason)
        .join(Competitor, Competitor.id == S.competitor_id)
        .join(CompetitorListing, CompetitorListing.id == S.listing_id)
        .where(S.project_id == project_id, S.snapshot_date >= since, CompetitorListing.active.is_(True))
        .order_by(S.listing_id, S.observed_at),
        execution_options={"yield_per": _READ_CHUNK},
    )
    latest = {}
    unconverted = {}  # listing -> its newest snapshot without an amount, newer than any usable one
    for row in rows:  # ordered by time: the last one wins
        if row.amount_in_project_currency is None:
            unconverted[row.listing_id] = row
        else:
            latest[row.listing_id] = row
            unconverted.pop(row.listing_id, None)
    wanted = set(variant_ids) if variant_ids is not None else None
    # Reasons (JSON) only for the few quarantined snapshots, not decoded for every row.
    quarantined_ids = [row.snapshot_id for row in latest.values() if row.quarantined and (wanted is None or row.variant_id in wanted)]
    reasons: dict[int, list | None] = {}
    for start in range(0, len(quarantined_ids), 5000):
        chunk = quarantined_ids[start : start + 5000]
        reasons.update(session.execute(select(S.id, S.trust_reasons).where(S.id.in_(chunk))).all())
    inputs: dict[int, list[CompetitorPriceInput]] = {}
    for row in latest.values():
        if wanted is None or row.variant_id in wanted:
            inputs.setdefault(row.variant_id, []).append(
                CompetitorPriceInput(
                    observation_id=row.observation_id,
                    competitor_id=row.competitor_id,
                    amount=row.amount_in_project_currency,
                    observed_at=row.observed_at,
                    trusted=bool(row.trusted),
                    in_stock=row.availability != "OutOfStock",
                    quarantine_reason=_quarantine_reason(row.trust_score, reasons.get(row.snapshot_id)) if row.quarantined else None,
                )
            )
    for row in unconverted.values():
        if wanted is None or row.variant_id in wanted:
            inputs.setdefault(row.variant_id, []).append(
                CompetitorPriceInput(
                    observation_id=row.observation_id, competitor_id=row.competitor_id, amount=None, observed_at=row.observed_at,
                    trusted=bool(row.trusted), in_stock=row.availability != "OutOfStock", unconverted_reason=row.excluded_reason,
                )
            )
    return inputs


def _sku_contexts(session: Session, project_id: int) -> list[tuple[SkuContext, Variant, Product]]:
    rows = session.execute(
        select(Variant, Product).join(Product, Product.id == Variant.product_id).where(Variant.project_id == project_id).order_by(Variant.sku)
    ).all()
    return [
        (
            SkuContext(
                variant_id=v.id,
                sku=v.sku,
                product_type=p.product_type,
                vendor=p.vendor,
                tags=tuple(p.tags or ()),
                current_price=v.price,
                cost=v.cost,
                map_price=v.map_price,
                currency=v.currency,
            ),
            v,
            p,
        )
        for v, p in rows
    ]


def _add_target(session: Session, run: RuleRun, variant: Variant, product: Product, *, from_price: Decimal, to_price: Decimal, status: str, reason: str | None, explain: dict) -> RuleTarget:
    write = status == "change"
    target = RuleTarget(
        run_id=run.id,
        tenant_id=run.tenant_id,
        variant_id=variant.id,
        sku=variant.sku,
        product_external_id=product.external_id,
        variant_external_id=variant.external_id,
        currency=variant.currency,
        from_price=from_price,
        to_price=to_price,
        action="write" if write else "skip",
        proposal_status=status,
        reason=reason,
        state=TargetState.PENDING.value if write else None,
        attempts=0,
        max_attempts=MAX_WRITE_ATTEMPTS,
        idempotency_key=f"{run.id}:pending:{variant.id}",
        explain=explain,
    )
    session.add(target)
    return target


def targets_frozen(session: Session, run: RuleRun, *, refresh: bool) -> bool:
    """What was previewed is what is applied: targets change only while the run is QUEUED,
    and an existing preview only when ``refresh`` asks for it."""
    if run.state != RunState.QUEUED:
        return True
    has_targets = session.scalar(select(RuleTarget.id).where(RuleTarget.run_id == run.id).limit(1)) is not None
    return has_targets and not refresh


def compute_targets(
    session: Session,
    run_id: str,
    *,
    now: datetime | None = None,
    shop_prices: dict[str, Decimal | None] | None = None,
    preset: str | None = None,
    refresh: bool = False,
) -> TargetStats:
    """Compute a QUEUED run's targets; ``refresh`` recomputes an existing preview.

    Once a run has started, or when it was previewed and ``refresh`` is off, its targets
    are frozen: the apply writes exactly what the preview showed.

    ``shop_prices`` (variant external id -> price in the shop now) is required for revert
    runs: a variant whose shop price is no longer the one we wrote is skipped as stale.
    """
    now = now or utcnow()
    run = get_run(session, run_id)
    if targets_frozen(session, run, refresh=refresh):
        return _stats(session, run, preset, frozen=True)
    # The DELETE also takes SQLite's write lock, which _TargetWriter relies on.
    session.execute(delete(RuleTarget).where(RuleTarget.run_id == run.id))
    counts = None
    if run.kind == "apply":
        counts = _rule_targets(session, run, now)
    else:
        run.explain_base = None  # revert / re-apply traces are whole
        _replay_targets(session, run, shop_prices)
        session.flush()
        # One UPDATE instead of loading every target (and its explain JSON) to rewrite its key.
        session.execute(
            update(RuleTarget).where(RuleTarget.run_id == run.id).values(idempotency_key=literal(f"{run.id}:") + cast(RuleTarget.id, String)),
            execution_options={"synchronize_session": False},
        )
    run.previewed_at = now  # previews expire (services.price_apply.check_preview_fresh)
    return _stats(session, run, preset, frozen=False, counts=counts)


_READ_CHUNK = 10_000  # catalog and snapshot rows fetched at a time (a 1,000,000-SKU preview streams)
_WRITE_CHUNK = 5_000  # targets per executemany


@dataclass
class _Counts:
    """What _stats needs, counted while the targets are written (not read back)."""

    total: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    writes: int = 0
    products: set[str] = field(default_factory=set)


_TARGET_COLUMNS = ("id", "run_id", "tenant_id", "variant_id", "sku", "product_external_id", "variant_external_id", "currency", "from_price",
                   "to_price", "action", "proposal_status", "reason", "state", "attempts", "max_attempts", "idempotency_key", "explain")


class _TargetWriter:
    """Writes a preview's targets in batches, each row once with its final id and idempotency
    key (``<run id>:<target id>``) instead of inserting and then updating every row.

    * SQLite: ids are the next rowids (safe: the preview's DELETE holds the database's write
      lock until commit); rows go through the driver's executemany.
    * PostgreSQL: ids are drawn from the column's sequence (what a plain INSERT would draw);
      rows go in by COPY, several times faster than multi-row INSERTs for a million targets.
      COPY FROM refuses a table under row-level security, which applies to the pipeline's
      role (warehouse/rls.py): then the rows are copied into a temporary table of this
      session and moved with one INSERT … SELECT, which the policies check as any insert.
    * Other backends: a SQLAlchemy executemany with a provisional key, updated at the end.

    Values are the ones the column types would bind: amounts as ``ExactDecimal`` checks and
    writes them, the explain trace as the compact JSON text the engine made (stored as is).
    """

    def __init__(self, connection, run_id: str) -> None:
        self.connection = connection
        self.run_id = run_id
        self.dialect = connection.dialect.name
        self.driver = connection.connection.driver_connection
        self.rows: list[tuple] = []
        self.written = 0
        self.next_id = 0
        self.staged = False
        if self.dialect == "sqlite":
            self.next_id = (connection.execute(select(func.max(RuleTarget.id))).scalar() or 0) + 1
        elif self.dialect == "postgresql":
            self.staged = bool(connection.execute(text("SELECT row_security_active('rule_targets')")).scalar())
            if self.staged:
                connection.execute(text(
                    # Dropped at commit: the next transaction on this pooled connection may act
                    # as another role (the API's), which could not use this role's table.
                    f"CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGE} (LIKE rule_targets INCLUDING DEFAULTS) ON COMMIT DROP"
                ))

    def add(self, row: tuple) -> None:
        """``row``: the _TARGET_COLUMNS after ``id`` and ``run_id`` up to ``max_attempts``, then the explain text."""
        self.rows.append(row)
        if len(self.rows) >= _WRITE_CHUNK:
            self.flush()

    def flush(self) -> None:
        rows, self.rows = self.rows, []
        if not rows:
            return
        self.written += len(rows)
        run_id = self.run_id
        if self.dialect == "sqlite":
            first = self.next_id
            self.next_id += len(rows)
            params = [(first + n, run_id, *r[:6], _amount(r[6]), _amount(r[7]), *r[8:14], f"{run_id}:{first + n}", r[14]) for n, r in enumerate(rows)]
            cursor = self.driver.cursor()
            try:
                cursor.executemany(f"INSERT INTO rule_targets ({', '.join(_TARGET_COLUMNS)}) VALUES ({', '.join('?' * len(_TARGET_COLUMNS))})", params)
            finally:
                cursor.close()
        elif self.dialect == "postgresql":
            cursor = self.driver.cursor()
            try:
                cursor.execute("SELECT nextval(pg_get_serial_sequence('rule_targets', 'id')) FROM generate_series(1, %s)", (len(rows),))
                ids = sorted(i for (i,) in cursor.fetchall())
                run = _csv_text(run_id)
                lines = [
                    ",".join((str(i), run, str(r[0]), str(r[1]), _csv_text(r[2]), _csv_text(r[3]), _csv_text(r[4]), _csv_text(r[5]),
                              _amount(r[6]), _amount(r[7]), r[8], r[9], _csv_text(r[10]), r[11] or "", str(r[12]), str(r[13]),
                              _csv_text(f"{run_id}:{i}"), _csv_text(r[14])))
                    for i, r in zip(ids, rows)
                ]
                lines.append("")
                columns = ", ".join(_TARGET_COLUMNS)
                cursor.copy_expert(f"COPY {_STAGE if self.staged else 'rule_targets'} ({columns}) FROM STDIN WITH (FORMAT csv)",
                                   io.StringIO("\n".join(lines)))
                if self.staged:
                    cursor.execute(f"INSERT INTO rule_targets ({columns}) SELECT {columns} FROM {_STAGE}")
                    cursor.execute(f"DELETE FROM {_STAGE}")
            finally:
                cursor.close()
        else:
            self.connection.execute(_TARGET_INSERT, [self._dict(r, None, f"{run_id}:pending:{r[1]}") for r in rows])

    def finish(self) -> None:
        self.flush()
        if self.dialect not in ("sqlite", "postgresql"):
            self.connection.execute(
                update(RuleTarget).where(RuleTarget.run_id == self.run_id).values(idempotency_key=literal(f"{self.run_id}:") + cast(RuleTarget.id, String)),
                execution_options={"synchronize_session": False},
            )

    def _dict(self, row: tuple, target_id: int | None, key: str) -> dict:
        values = dict(zip(_TARGET_COLUMNS[2:16], row[:14]), run_id=self.run_id, idempotency_key=key, explain_text=row[14])
        if target_id is not None:
            values["id"] = target_id
        return values


# The session's staging table for COPY under row-level security (see _TargetWriter).
_STAGE = "calibr_rule_targets_stage"
_TARGET_INSERT = RuleTarget.__table__.insert().values(explain=bindparam("explain_text", type_=Text()))


def _amount(value: Decimal) -> str:
    """An amount as ExactDecimal writes it (positional text; more than 6 decimals refused)."""
    text = format(value, "f")
    dot = text.find(".")
    if dot >= 0 and len(text) - dot - 1 > SCALE or not value.is_finite():
        if not value.is_finite():
            raise ValueError(f"amount must be finite: {value!r}")
        if value != value.quantize(_QUANTUM):
            raise ValueError(f"{value} has more than {SCALE} decimal places")
    return text


def _csv_text(value: str | None) -> str:
    # COPY's CSV: an unquoted empty field is NULL, a quoted one is text (quotes doubled).
    return "" if value is None else '"' + value.replace('"', '""') + '"'


def _rule_targets(session: Session, run: RuleRun, now: datetime) -> _Counts:
    """Compute and write the targets of an apply run, streaming the catalog in SKU order."""
    rule: RuleDefinition = parse_rule(run.rule_snapshot, currency=session.get(Project, run.project_id).currency, known_competitor_ids=known_competitor_ids(session, run.project_id))
    run.explain_base = explain_base(rule, now)
    # Tags are JSON (decoded per row): read only when the scope looks at them.
    tags_needed = rule.scope.kind == "tag"
    every_sku = rule.scope.kind == "project"
    competitor_prices = _competitor_inputs(session, run.project_id, None, now, rule.guardrails.max_observation_age_hours)
    rows = session.execute(
        select(Variant.id, Variant.sku, Variant.external_id, Variant.price, Variant.cost, Variant.map_price, Variant.currency,
               Product.external_id, Product.product_type, Product.vendor, *((Product.tags,) if tags_needed else ()))
        .join(Product, Product.id == Variant.product_id).where(Variant.project_id == run.project_id).order_by(Variant.sku),
        execution_options={"yield_per": _READ_CHUNK},
    )
    writer = _TargetWriter(session.connection(), run.id)
    counts = _Counts()
    by_status, products = counts.by_status, counts.products
    tenant_id, write_state, attempts = run.tenant_id, TargetState.PENDING.value, 0
    no_prices: tuple = ()
    for partition in rows.partitions():
        for r in partition:
            ctx = SkuContext(variant_id=r[0], sku=r[1], product_type=r[8], vendor=r[9], tags=tuple(r[10] or ()) if tags_needed else (),
                             current_price=r[3], cost=r[4], map_price=r[5], currency=r[6])
            if not every_sku and not in_scope(rule, ctx):
                continue
            proposal = compute_target(rule, ctx, competitor_prices.get(r[0], no_prices), now=now)
            status = proposal.status
            write = status == "change"
            by_status[status] = by_status.get(status, 0) + 1
            if write:
                counts.writes += 1
                products.add(r[7])
            writer.add((tenant_id, r[0], r[1], r[7], r[2], r[6], proposal.from_price, proposal.to_price, "write" if write else "skip",
                        status, proposal.reason, write_state if write else None, attempts, MAX_WRITE_ATTEMPTS, proposal.explain_json))
    writer.finish()
    counts.total = writer.written
    if not counts.total:
        raise CalibrError(f"rule {rule.name!r} matches no SKU in this project; check its scope")
    return counts


def _replay_targets(session: Session, run: RuleRun, shop_prices: dict[str, Decimal | None] | None) -> None:
    """Revert: the source run's applied prices back to what they were. Reconcile-retry: re-apply."""
    source_targets = session.scalars(
        select(RuleTarget).where(RuleTarget.run_id == run.source_run_id, RuleTarget.state == TargetState.APPLIED.value)
    ).all()
    if run.kind == "reconcile_retry":
        mismatched = set(run.run_metadata.get("target_ids", []))
        source_targets = [t for t in source_targets if t.id in mismatched]
    for source in source_targets:
        variant = session.get(Variant, source.variant_id)
        product = session.get(Product, variant.product_id)
        shop_price = (shop_prices or {}).get(source.variant_external_id, source.to_price if shop_prices is None else None)
        if run.kind == "revert":
            from_price, to_price = source.to_price, source.from_price
            stale = shop_price != source.to_price
            status = "stale" if stale else "change"
            reason = (f"shop price is {shop_price}, not the {source.to_price} we wrote: left alone" if stale else f"revert of run {source.run_id}")
        else:
            from_price, to_price = shop_price if shop_price is not None else source.to_price, source.to_price
            status, reason = "change", f"re-apply after reconciliation mismatch in run {source.run_id}"
        _add_target(
            session, run, variant, product, from_price=from_price, to_price=to_price, status=status, reason=reason,
            explain={"kind": run.kind, "source_run_id": source.run_id, "source_target_id": source.id, "shop_price_before": None if shop_price is None else str(shop_price), "final_price": str(to_price), "reason": reason},
        )


def _stats(session: Session, run: RuleRun, preset: str | None, *, frozen: bool, counts: _Counts | None = None) -> TargetStats:
    if counts is None:
        counts = _Counts()
        for t in session.execute(
            select(RuleTarget.proposal_status, RuleTarget.action, RuleTarget.product_external_id).where(RuleTarget.run_id == run.id)
        ):
            counts.total += 1
            counts.by_status[t.proposal_status] = counts.by_status.get(t.proposal_status, 0) + 1
            if t.action == "write":
                counts.writes += 1
                counts.products.add(t.product_external_id)
    by_status, products = counts.by_status, len(counts.products)
    estimate = estimate_apply_seconds(products, preset)
    _, restore = RATE_PRESETS.get((preset or "standard").lower(), RATE_PRESETS["standard"])
    run.run_metadata = {**(run.run_metadata or {}), "targets": counts.total, "to_write": counts.writes, "estimated_apply_seconds": estimate,
                        # How the apply will write: synchronous with this many product writes in flight,
                        # or one bulk mutation when the synchronous estimate is long (CALIBR_APPLY_MODE forces either).
                        "apply_mode": settings.apply_mode() or choose_apply_mode(estimate),
                        "apply_concurrency": settings.apply_concurrency() or max(1, min(10, round(restore / 125)))}
    return TargetStats(counts.total, counts.writes, dict(sorted(by_status.items())), products, estimate, frozen)


def target_explain(session: Session, target: RuleTarget) -> dict:
    """A target's whole explain trace (its stored part completed by its run's shared part)."""
    if not is_compact_explain(target.explain):
        return expand_explain(target.explain, None, variant_id=target.variant_id, sku=target.sku)
    base = session.scalar(select(RuleRun.explain_base).where(RuleRun.id == target.run_id))
    return expand_explain(target.explain, base, variant_id=target.variant_id, sku=target.sku)


def explain_bases(session: Session, run_ids: Collection[str]) -> dict[str, dict | None]:
    """The shared explain parts of several runs (for readers of many targets' traces)."""
    if not run_ids:
        return {}
    return dict(session.execute(select(RuleRun.id, RuleRun.explain_base).where(RuleRun.id.in_(list(set(run_ids))))).all())

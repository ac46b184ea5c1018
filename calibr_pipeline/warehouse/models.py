"""Warehouse tables (SQLAlchemy 2 declarative models).

The schema is created and evolved only by the Alembic migrations in
``warehouse/migrations``; these models are what the code and autogenerate read.
Every table is documented for analysts in ``docs/tables.md``.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from calibr_pipeline.secrets.column import EncryptedSecret
from calibr_pipeline.warehouse.types import ExactDecimal, UTCDateTime, utcnow

# Deterministic constraint names keep migrations identical on SQLite and Postgres.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# BigInteger ids autoincrement on Postgres; SQLite only autoincrements INTEGER PRIMARY KEY.
Id = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    projects: Mapped[list[Project]] = relationship(back_populates="tenant")


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    currency: Mapped[str] = mapped_column(String(3))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Issue 10: snapshots whose trust score is below this are quarantined (None: the default).
    trust_threshold: Mapped[Decimal | None] = mapped_column(ExactDecimal)

    tenant: Mapped[Tenant] = relationship(back_populates="projects")
    shops: Mapped[list[Shop]] = relationship(back_populates="project")


class Shop(Base):
    """A merchant store and how to reach it. ``access_token`` is a secret: never log it."""

    __tablename__ = "shops"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    platform: Mapped[str] = mapped_column(String(32))  # shopify | csv
    admin_endpoint: Mapped[str | None] = mapped_column(String(500))
    api_version: Mapped[str | None] = mapped_column(String(16))
    access_token: Mapped[str | None] = mapped_column(EncryptedSecret)  # encrypted at rest (secrets.vault)
    rate_limit_preset: Mapped[str | None] = mapped_column(String(32))
    catalog_csv_path: Mapped[str | None] = mapped_column(String(1000))
    currency: Mapped[str] = mapped_column(String(3))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    project: Mapped[Project] = relationship(back_populates="shops")

    __table_args__ = (UniqueConstraint("project_id", "name"),)

    def __repr__(self) -> str:
        return f"Shop(id={self.id!r}, name={self.name!r}, platform={self.platform!r}, access_token='***')"


class Product(Base):
    __tablename__ = "products"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id"), index=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    external_id: Mapped[str] = mapped_column(String(200))
    title: Mapped[str] = mapped_column(String(500))
    product_type: Mapped[str | None] = mapped_column(String(200))
    vendor: Mapped[str | None] = mapped_column(String(200))
    tags: Mapped[list] = mapped_column(JSON, default=list)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (UniqueConstraint("shop_id", "external_id"),)


class Variant(Base):
    """A sellable SKU. Prices are exact decimals in the shop currency."""

    __tablename__ = "variants"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), index=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id"), index=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    external_id: Mapped[str] = mapped_column(String(200))
    sku: Mapped[str] = mapped_column(String(200))
    title: Mapped[str | None] = mapped_column(String(500))
    price: Mapped[Decimal] = mapped_column(ExactDecimal)
    compare_at_price: Mapped[Decimal | None] = mapped_column(ExactDecimal)
    cost: Mapped[Decimal | None] = mapped_column(ExactDecimal)
    # Minimum advertised price agreed with the brand; rules never price below it.
    map_price: Mapped[Decimal | None] = mapped_column(ExactDecimal)
    currency: Mapped[str] = mapped_column(String(3))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        UniqueConstraint("shop_id", "external_id"),
        UniqueConstraint("project_id", "sku"),
    )


class Competitor(Base):
    __tablename__ = "competitors"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    domain: Mapped[str] = mapped_column(String(300))
    # The store currency, used when a page does not declare one (Shopify .js endpoints).
    currency: Mapped[str | None] = mapped_column(String(3))
    trusted: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (UniqueConstraint("project_id", "domain"),)


class CompetitorListing(Base):
    """A competitor product page matched to one of our SKUs."""

    __tablename__ = "competitor_listings"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    competitor_id: Mapped[int] = mapped_column(ForeignKey("competitors.id"), index=True)
    variant_id: Mapped[int] = mapped_column(ForeignKey("variants.id"), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    page_kind: Mapped[str] = mapped_column(String(16))  # shopify | html
    variant_hint: Mapped[str | None] = mapped_column(String(200))
    match_type: Mapped[str] = mapped_column(String(16))  # exact | similar | manual
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (UniqueConstraint("variant_id", "url"),)


class CompetitorPriceObservation(Base):
    """Every fetch outcome, successful or not. Failures are data."""

    __tablename__ = "competitor_price_observations"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    listing_id: Mapped[int] = mapped_column(ForeignKey("competitor_listings.id"), index=True)
    observation_date: Mapped[date] = mapped_column(Date)
    dagster_run_id: Mapped[str | None] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(String(2000))
    status: Mapped[str] = mapped_column(String(16))  # ok | error
    http_status: Mapped[int | None] = mapped_column(Integer)
    error_class: Mapped[str | None] = mapped_column(String(32))
    error_message: Mapped[str | None] = mapped_column(Text)
    amount: Mapped[Decimal | None] = mapped_column(ExactDecimal)
    currency: Mapped[str | None] = mapped_column(String(3))
    regular_amount: Mapped[Decimal | None] = mapped_column(ExactDecimal)
    availability: Mapped[str | None] = mapped_column(String(16))
    extraction_source: Mapped[str | None] = mapped_column(String(32))
    extracted: Mapped[dict | None] = mapped_column(JSON)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    elapsed_ms: Mapped[int | None] = mapped_column(Integer)
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_observations_tenant_date", "tenant_id", "observation_date"),)


class FxRate(Base):
    """Reference exchange rates: 1 ``base_currency`` = ``rate`` ``quote_currency``."""

    __tablename__ = "fx_rates"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    rate_date: Mapped[date] = mapped_column(Date)
    base_currency: Mapped[str] = mapped_column(String(3))
    quote_currency: Mapped[str] = mapped_column(String(3))
    rate: Mapped[Decimal] = mapped_column(ExactDecimal)
    source: Mapped[str] = mapped_column(String(100))

    __table_args__ = (UniqueConstraint("rate_date", "base_currency", "quote_currency"),)


class NormalizedPriceSnapshot(Base):
    """One row per listing and day: the day's last good observation, in ISO currency and ours."""

    __tablename__ = "normalized_price_snapshots"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    listing_id: Mapped[int] = mapped_column(ForeignKey("competitor_listings.id"))
    competitor_id: Mapped[int] = mapped_column(ForeignKey("competitors.id"))
    variant_id: Mapped[int] = mapped_column(ForeignKey("variants.id"), index=True)
    # Re-scraping a day replaces its observations; the snapshots derived from them go too
    # (the snapshot asset is then stale and rebuilds them).
    observation_id: Mapped[int] = mapped_column(ForeignKey("competitor_price_observations.id", ondelete="CASCADE"))
    snapshot_date: Mapped[date] = mapped_column(Date)
    amount: Mapped[Decimal] = mapped_column(ExactDecimal)
    currency: Mapped[str] = mapped_column(String(3))
    regular_amount: Mapped[Decimal | None] = mapped_column(ExactDecimal)
    on_sale: Mapped[bool] = mapped_column(Boolean, default=False)
    availability: Mapped[str | None] = mapped_column(String(16))
    project_currency: Mapped[str] = mapped_column(String(3))
    fx_rate: Mapped[Decimal | None] = mapped_column(ExactDecimal)
    amount_in_project_currency: Mapped[Decimal | None] = mapped_column(ExactDecimal)
    observed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Issue 10 / issue 7 item 7: why this snapshot is not compared (no or stale FX rate), and
    # the trust score (calibr_pipeline.domain.trust) with its reasons; quarantined snapshots
    # are never priced on.
    excluded_reason: Mapped[str | None] = mapped_column(String(300))
    trust_score: Mapped[Decimal | None] = mapped_column(ExactDecimal)
    trust_reasons: Mapped[list | None] = mapped_column(JSON)
    quarantined: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    __table_args__ = (
        UniqueConstraint("listing_id", "snapshot_date"),
        Index("ix_snapshots_tenant_date", "tenant_id", "snapshot_date"),
    )


class MarketPosition(Base):
    """Per SKU and day: where our price stands among the competitors' (in our currency)."""

    __tablename__ = "market_positions"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    variant_id: Mapped[int] = mapped_column(ForeignKey("variants.id"), index=True)
    position_date: Mapped[date] = mapped_column(Date)
    our_price: Mapped[Decimal] = mapped_column(ExactDecimal)
    currency: Mapped[str] = mapped_column(String(3))
    competitor_count: Mapped[int] = mapped_column(Integer)
    lowest_price: Mapped[Decimal | None] = mapped_column(ExactDecimal)
    highest_price: Mapped[Decimal | None] = mapped_column(ExactDecimal)
    median_price: Mapped[Decimal | None] = mapped_column(ExactDecimal)
    spread: Mapped[Decimal | None] = mapped_column(ExactDecimal)
    spread_pct: Mapped[Decimal | None] = mapped_column(ExactDecimal)
    position: Mapped[str] = mapped_column(String(16))  # lowest | highest | middle | no_data
    lowest_competitor_id: Mapped[int | None] = mapped_column(ForeignKey("competitors.id"))
    price_index: Mapped[Decimal | None] = mapped_column(ExactDecimal)  # our / median
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        UniqueConstraint("variant_id", "position_date"),
        Index("ix_market_positions_tenant_date", "tenant_id", "position_date"),
    )


class EventLog(Base):
    """Append-only business events (what happened), for audit and analytics."""

    __tablename__ = "event_log"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id"), index=True)
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id"))
    run_id: Mapped[str | None] = mapped_column(String(36), index=True)
    event_type: Mapped[str] = mapped_column(String(100), index=True)
    actor: Mapped[str] = mapped_column(String(200))
    correlation_id: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[dict] = mapped_column(JSON)
    schema_version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")  # events registry version (docs/events.md)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)

    # SQLite reuses the largest rowid once that row is deleted; archival deletes rows, and a
    # reused id would collide with an archived one on restore. AUTOINCREMENT never reuses.
    __table_args__ = {"sqlite_autoincrement": True}


def new_event_id() -> str:
    return str(uuid.uuid4())


class OutboxEvent(Base):
    """Transactional outbox: written in the same transaction as the change it announces.

    Sensors read undispatched rows and launch runs with ``run_key = id``.
    """

    __tablename__ = "outbox"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_event_id)
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id"))
    event_type: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict] = mapped_column(JSON)
    schema_version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")  # events registry version (docs/events.md)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    dispatched_run_key: Mapped[str | None] = mapped_column(String(100))

    __table_args__ = (Index("ix_outbox_pending", "dispatched_at", "created_at"),)


class OutboxDeadLetter(Base):
    """Outbox events a sensor could not turn into a run, with the reason. Nothing is dropped."""

    __tablename__ = "outbox_dead_letters"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    # The tenant of the event (None when the event named none): row-level security on PostgreSQL.
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id"), index=True)
    outbox_id: Mapped[str] = mapped_column(String(36), unique=True)
    event_type: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict | None] = mapped_column(JSON)
    schema_version: Mapped[int | None] = mapped_column(Integer)  # as the event was written
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AlertDelivery(Base):
    """Each alert sent to each destination, and whether it arrived."""

    __tablename__ = "alert_deliveries"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id"))
    severity: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(500))
    source: Mapped[str] = mapped_column(String(300))
    destination: Mapped[str] = mapped_column(String(64))
    ok: Mapped[bool] = mapped_column(Boolean)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# --- pricing automation -----------------------------------------------------------------


class PricingRule(Base):
    """A merchant's pricing rule; ``definition`` is the validated JSON form (domain.rules)."""

    __tablename__ = "pricing_rules"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    definition: Mapped[dict] = mapped_column(JSON)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (UniqueConstraint("project_id", "name"),)


class RuleRun(Base):
    """One execution of a rule (or a revert/retry of an earlier run); a Dagster dynamic partition.

    ``state`` follows domain.state_machine: QUEUED -> APPLYING -> APPLIED | PARTIAL | FAILED.
    """

    __tablename__ = "rule_runs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    rule_id: Mapped[int | None] = mapped_column(ForeignKey("pricing_rules.id"))
    kind: Mapped[str] = mapped_column(String(16))  # apply | revert | reconcile_retry
    source_run_id: Mapped[str | None] = mapped_column(ForeignKey("rule_runs.id"))
    state: Mapped[str] = mapped_column(String(16), index=True)
    requested_by: Mapped[str] = mapped_column(String(200))
    correlation_id: Mapped[str] = mapped_column(String(64))
    rule_snapshot: Mapped[dict | None] = mapped_column(JSON)
    queued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)
    run_metadata: Mapped[dict] = mapped_column("metadata", JSON, default=dict)
    # When the targets were last computed; an apply of an older preview is refused
    # (services.price_apply: previews expire).
    previewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The part of every target's explain trace that the rule and the preview's moment fix
    # (rule name, currency, computed_at, transform, guardrails), stored once per run: each
    # target stores only its own part (domain.rules.expand_explain puts a trace together).
    explain_base: Mapped[dict | None] = mapped_column(JSON)
    # The single writer: a compare-and-set claim (owner + lease the writer renews before
    # every product write). An APPLYING run whose lease expired may be resumed by anyone.
    lease_owner: Mapped[str | None] = mapped_column(String(120))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class RuleTarget(Base):
    """A proposed price for one variant in a run, with its explain trace.

    Only ``action = 'write'`` targets move through the target state machine; ``skip``
    targets (unchanged, kept for lack of data, blocked by guardrails) are kept for the
    explain trace and have no state.
    """

    __tablename__ = "rule_targets"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("rule_runs.id"))
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    variant_id: Mapped[int] = mapped_column(ForeignKey("variants.id"))
    sku: Mapped[str] = mapped_column(String(200))
    product_external_id: Mapped[str] = mapped_column(String(200))
    variant_external_id: Mapped[str] = mapped_column(String(200))
    currency: Mapped[str] = mapped_column(String(3))
    from_price: Mapped[Decimal] = mapped_column(ExactDecimal)
    to_price: Mapped[Decimal] = mapped_column(ExactDecimal)
    action: Mapped[str] = mapped_column(String(8))  # write | skip
    proposal_status: Mapped[str] = mapped_column(String(16))  # change | unchanged | kept | blocked | stale
    reason: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str | None] = mapped_column(String(24))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A PENDING target put back after a failed attempt waits until then (backoff).
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(String(64))
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    idempotency_key: Mapped[str] = mapped_column(String(120), unique=True)
    # This target's part of its explain trace: whole for reverts and runs previewed before
    # 0011, else the compact form completed by the run's explain_base (read it with
    # services.rule_runs.target_explain, not raw).
    explain: Mapped[dict] = mapped_column(JSON)

    __table_args__ = (
        UniqueConstraint("run_id", "variant_id"),
        Index("ix_rule_targets_run_state", "run_id", "state"),
    )


class PriceAudit(Base):
    """Every effective price write, exactly once (unique idempotency key), with who and why."""

    __tablename__ = "price_audit"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    run_id: Mapped[str] = mapped_column(ForeignKey("rule_runs.id"), index=True)
    target_id: Mapped[int] = mapped_column(ForeignKey("rule_targets.id"))
    variant_id: Mapped[int] = mapped_column(ForeignKey("variants.id"))
    sku: Mapped[str] = mapped_column(String(200))
    event_type: Mapped[str] = mapped_column(String(64))  # price.applied | price.reverted
    actor: Mapped[str] = mapped_column(String(200))
    from_price: Mapped[Decimal] = mapped_column(ExactDecimal)
    to_price: Mapped[Decimal] = mapped_column(ExactDecimal)
    currency: Mapped[str] = mapped_column(String(3))
    correlation_id: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str] = mapped_column(String(120), unique=True)
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class DeadLetter(Base):
    """A target that failed for good: what went wrong, how often, and whether it was resolved."""

    __tablename__ = "price_write_dlq"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    run_id: Mapped[str] = mapped_column(ForeignKey("rule_runs.id"), index=True)
    target_id: Mapped[int] = mapped_column(ForeignKey("rule_targets.id"), unique=True)
    error_type: Mapped[str] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolution: Mapped[str | None] = mapped_column(String(64))
    # Drains that retried this letter; the drain gives up at its maximum (never forever).
    retry_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ReconciliationMismatch(Base):
    """A variant whose shop price is not the one we applied, found by reconciliation."""

    __tablename__ = "reconciliation_mismatches"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    run_id: Mapped[str] = mapped_column(ForeignKey("rule_runs.id"), index=True)
    target_id: Mapped[int] = mapped_column(ForeignKey("rule_targets.id"))
    sku: Mapped[str] = mapped_column(String(200))
    expected_price: Mapped[Decimal] = mapped_column(ExactDecimal)
    actual_price: Mapped[Decimal | None] = mapped_column(ExactDecimal)
    difference: Mapped[Decimal | None] = mapped_column(ExactDecimal)
    # lost_write: the shop still shows the price we replaced (our write did not land) and a
    # retry may re-apply it; drift: someone set another price since (never overwritten);
    # missing: the variant no longer exists.
    kind: Mapped[str] = mapped_column(String(16), default="lost_write", server_default="lost_write")
    retry_run_id: Mapped[str | None] = mapped_column(String(36))
    detected_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RuleRunMetrics(Base):
    """Per-run figures kept for monitoring (one row per run, rewritten at the end of each apply)."""

    __tablename__ = "rule_run_metrics"

    run_id: Mapped[str] = mapped_column(ForeignKey("rule_runs.id"), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    state: Mapped[str] = mapped_column(String(16))
    targets_total: Mapped[int] = mapped_column(Integer)
    targets_write: Mapped[int] = mapped_column(Integer)
    targets_pending: Mapped[int] = mapped_column(Integer)
    targets_applying: Mapped[int] = mapped_column(Integer)
    targets_applied: Mapped[int] = mapped_column(Integer)
    targets_failed: Mapped[int] = mapped_column(Integer)
    success_rate: Mapped[Decimal | None] = mapped_column(ExactDecimal)
    duration_seconds: Mapped[Decimal | None] = mapped_column(ExactDecimal)
    dlq_size: Mapped[int] = mapped_column(Integer)
    throttled_count: Mapped[int] = mapped_column(Integer)
    retry_count: Mapped[int] = mapped_column(Integer)
    write_requests: Mapped[int] = mapped_column(Integer)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WarehouseMeta(Base):
    """Small key/value facts about the warehouse itself (e.g. the hash of the installed views)."""

    __tablename__ = "warehouse_meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


# --- operations -------------------------------------------------------------------------


class ProbeResult(Base):
    """One synthetic probe of an endpoint (our /health, the Dagster webserver)."""

    __tablename__ = "probe_results"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    target: Mapped[str] = mapped_column(String(200))
    url: Mapped[str] = mapped_column(String(500))
    ok: Mapped[bool] = mapped_column(Boolean)
    status_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    probed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_probe_results_target_time", "target", "probed_at"),)


class SlaReport(Base):
    """Monthly uptime per probe target against the SLA target (one row per month and target)."""

    __tablename__ = "sla_reports"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    month: Mapped[date] = mapped_column(Date)  # first day of the month
    target: Mapped[str] = mapped_column(String(200))
    probes: Mapped[int] = mapped_column(Integer)
    successes: Mapped[int] = mapped_column(Integer)
    uptime_pct: Mapped[Decimal | None] = mapped_column(ExactDecimal)
    sla_target_pct: Mapped[Decimal] = mapped_column(ExactDecimal)
    met: Mapped[bool | None] = mapped_column(Boolean)
    longest_outage_minutes: Mapped[int] = mapped_column(Integer)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (UniqueConstraint("month", "target"),)


class ConnectorRequestStat(Base):
    """Outbound connector requests aggregated per connector, status class, tenant, Dagster run and minute.

    Written by run processes (monitoring.connector_stats.record: repeated writes add to the
    row), read by ``calibr serve`` into ``calibr_connector_requests_total`` and
    ``calibr_connector_request_duration_seconds``. ``le_*`` are cumulative histogram bucket
    counts (requests that took at most that many seconds); ``count`` is the +Inf bucket.
    ``tenant_id`` 0 / ``dagster_run_id`` '' mean none (NOT NULL keeps the unique key
    working the same way on SQLite and Postgres).
    """

    __tablename__ = "connector_request_stats"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    connector: Mapped[str] = mapped_column(String(32))  # storefront | shopify_admin
    status: Mapped[str] = mapped_column(String(16))  # 2xx | 3xx | 4xx | 5xx | 429 | throttled | error
    tenant_id: Mapped[int] = mapped_column(Id, default=0)
    dagster_run_id: Mapped[str] = mapped_column(String(64), default="")
    minute: Mapped[datetime] = mapped_column(UTCDateTime)
    count: Mapped[int] = mapped_column(Integer, default=0)
    sum_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    le_0_05: Mapped[int] = mapped_column(Integer, default=0)
    le_0_1: Mapped[int] = mapped_column(Integer, default=0)
    le_0_25: Mapped[int] = mapped_column(Integer, default=0)
    le_0_5: Mapped[int] = mapped_column(Integer, default=0)
    le_1: Mapped[int] = mapped_column(Integer, default=0)
    le_2_5: Mapped[int] = mapped_column(Integer, default=0)
    le_5: Mapped[int] = mapped_column(Integer, default=0)
    le_10: Mapped[int] = mapped_column(Integer, default=0)
    le_30: Mapped[int] = mapped_column(Integer, default=0)
    le_60: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        UniqueConstraint("connector", "status", "tenant_id", "dagster_run_id", "minute", name="uq_connector_request_stats_key"),
        Index("ix_connector_request_stats_minute", "minute"),
    )


# --- copilot ----------------------------------------------------------------------------


class CopilotAudit(Base):
    """One copilot call (simulate or propose): who asked what, which tools the model called with
    which raw arguments, the rewritten SQL actually executed, and the outcome. Secrets are
    redacted from the prompt and the answer before they are stored."""

    __tablename__ = "copilot_audit"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id"))
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id"))
    actor: Mapped[str] = mapped_column(String(200))
    entry_point: Mapped[str] = mapped_column(String(16))  # cli | api | demo
    command: Mapped[str] = mapped_column(String(16))  # simulate | propose
    prompt: Mapped[str] = mapped_column(Text)
    backend: Mapped[str] = mapped_column(String(32))  # offline | openai
    model: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))  # ok | refused | error
    answer: Mapped[str | None] = mapped_column(Text)
    tool_calls: Mapped[list] = mapped_column(JSON, default=list)
    executed_sql: Mapped[list] = mapped_column(JSON, default=list)
    row_count: Mapped[int] = mapped_column(Integer, default=0)
    refusal_code: Mapped[str | None] = mapped_column(String(64))
    refusal_reason: Mapped[str | None] = mapped_column(Text)
    rule_id: Mapped[int | None] = mapped_column(ForeignKey("pricing_rules.id"))
    preview_run_id: Mapped[str | None] = mapped_column(String(36))
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_copilot_audit_tenant_time", "tenant_id", "created_at"),)
# --- HTTP API (issue 13) ----------------------------------------------------------------


class ApiToken(Base):
    """A per-tenant API token. Only its SHA-256 hash is stored; the token is shown once at creation.

    ``scope`` is ``read`` or ``write`` (write implies read). ``rate_limit_per_minute`` NULL
    means the server default (``CALIBR_API_RATE_LIMIT``).
    """

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    token_prefix: Mapped[str] = mapped_column(String(16))  # first characters, to recognise a token in lists
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scope: Mapped[str] = mapped_column(String(8))  # read | write
    rate_limit_per_minute: Mapped[int | None] = mapped_column(Integer)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


# A run's targets page by id (API: GET /api/v1/runs/{id}/targets); without it SQLite sorts
# the whole run (100,000 targets) for every page.
Index("ix_rule_targets_run_id_id", RuleTarget.run_id, RuleTarget.id)
# --- events: archival to cold storage (issue 11; docs/events.md, docs/tables.md) ---------


class EventArchive(Base):
    """One archive file of old events (one table x month x tenant x batch) and its manifest.

    The row is committed in the same transaction that deletes the archived rows, so a file
    without a row here is an orphan from an interrupted run (never read, cleaned up by the
    next run) and a row here always means "these rows live in that file, not in the table".
    """

    __tablename__ = "event_archives"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    source_table: Mapped[str] = mapped_column(String(32))  # event_log | outbox
    month: Mapped[str] = mapped_column(String(7))  # YYYY-MM of created_at (UTC)
    tenant_key: Mapped[str] = mapped_column(String(64))  # tenant slug, or "_global" for rows without a tenant
    path: Mapped[str] = mapped_column(String(1000))
    file_format: Mapped[str] = mapped_column(String(16))  # jsonl.gz | parquet
    row_count: Mapped[int] = mapped_column(Integer)
    first_id: Mapped[str] = mapped_column(String(64))
    last_id: Mapped[str] = mapped_column(String(64))
    sha256: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default="archived")  # archived | restored
    archived_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    restored_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("path"),
        Index("ix_event_archives_lookup", "source_table", "month", "tenant_key"),
    )


# --- Stripe connector (issue 11, behind STRIPE_CONNECT_ENABLED; docs/stripe.md) ----------


class StripeAccount(Base):
    """A Stripe Connect Standard account a tenant connected through OAuth. Tokens are sealed
    by the secrets vault (``connectors/stripe/sealing.py``): never logged, never shown."""

    __tablename__ = "stripe_accounts"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    account_id: Mapped[str] = mapped_column(String(64), unique=True)  # acct_...
    access_token_sealed: Mapped[str] = mapped_column(Text)
    refresh_token_sealed: Mapped[str | None] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(String(32))
    livemode: Mapped[bool] = mapped_column(Boolean, default=False)
    connected_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def __repr__(self) -> str:
        return f"StripeAccount(id={self.id!r}, account_id={self.account_id!r}, tokens='***')"


class StripeSyncCursor(Base):
    """Incremental sync position per connected account and object kind: the newest ``created``
    seen (the next sync lists ``created[gte]`` it and skips ids already stored)."""

    __tablename__ = "stripe_sync_cursors"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    account_id: Mapped[str] = mapped_column(String(64))
    object_kind: Mapped[str] = mapped_column(String(32))  # product | price | payment_intent | balance_transaction
    created_cursor: Mapped[int] = mapped_column(BigInteger, default=0)  # unix seconds
    synced_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (UniqueConstraint("account_id", "object_kind"),)


class StripeProductMap(Base):
    """Stripe products/prices of a connected account linked to our variants: by the ``sku``
    metadata of the product or price, or by hand (``match_source='manual'``, never overwritten by a sync)."""

    __tablename__ = "stripe_product_map"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    account_id: Mapped[str] = mapped_column(String(64))
    stripe_product_id: Mapped[str] = mapped_column(String(64))
    stripe_price_id: Mapped[str] = mapped_column(String(64), default="")  # "" for a product without prices
    product_name: Mapped[str | None] = mapped_column(String(500))
    sku: Mapped[str | None] = mapped_column(String(200))
    variant_id: Mapped[int | None] = mapped_column(ForeignKey("variants.id"))
    match_source: Mapped[str] = mapped_column(String(16))  # sku_metadata | manual | unmatched
    unit_amount_minor: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (UniqueConstraint("account_id", "stripe_product_id", "stripe_price_id", name="uq_stripe_product_map_key"),)


class Transaction(Base):
    """Payments (PaymentIntents) and balance movements (BalanceTransactions) of connected Stripe
    accounts, money in minor units with the ISO currency (upper case). One row per Stripe object."""

    __tablename__ = "transactions"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    account_id: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(32))  # payment_intent | balance_transaction
    stripe_id: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(64))  # PaymentIntent status or BalanceTransaction type
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    fee_minor: Mapped[int | None] = mapped_column(BigInteger)
    net_minor: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    occurred_date: Mapped[date] = mapped_column(Date)
    payment_intent_id: Mapped[str | None] = mapped_column(String(64))
    description: Mapped[str | None] = mapped_column(String(500))
    synced_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_transactions_tenant_date", "tenant_id", "occurred_date", "source"),)


class StripeWebhookEvent(Base):
    """Every verified Stripe webhook event, once (the event id is unique: a resend changes nothing)."""

    __tablename__ = "stripe_webhook_events"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    event_type: Mapped[str] = mapped_column(String(100))
    account_id: Mapped[str | None] = mapped_column(String(64))
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id"))
    status: Mapped[str] = mapped_column(String(16))  # queued (outbox event written) | ignored (unknown type or account)
    outbox_id: Mapped[str | None] = mapped_column(String(36))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class StripeWebhookRejection(Base):
    """A webhook request refused before it was trusted (bad signature, stale timestamp, bad body)."""

    __tablename__ = "stripe_webhook_rejections"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    reason: Mapped[str] = mapped_column(String(32))  # signature | timestamp | body
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class StripeSyncRun(Base):
    """One sync of one account and day: how long it took and whether it failed (metrics)."""

    __tablename__ = "stripe_sync_runs"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    account_id: Mapped[str] = mapped_column(String(64))
    sync_date: Mapped[date] = mapped_column(Date)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    seconds: Mapped[float] = mapped_column(Float)
    objects: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
# --- Analytics sources (issue 8): orders, order lines, refunds, rejected order records ---------
#
# Natural primary keys (the platform's ids), no surrogate counters: re-running a
# partition rewrites the very same rows, so a re-run leaves the tables byte-identical.


class SalesOrder(Base):
    """One order as the sales channel reports it (latest state: refunds included)."""

    __tablename__ = "orders"

    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id"), primary_key=True)
    external_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    channel: Mapped[str] = mapped_column(String(32))  # shopify | amazon
    name: Mapped[str] = mapped_column(String(200))
    order_day: Mapped[date] = mapped_column(Date)  # UTC day of created_at
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    currency: Mapped[str] = mapped_column(String(3))
    test: Mapped[bool] = mapped_column(Boolean, default=False)
    source_name: Mapped[str | None] = mapped_column(String(100))
    synced_day: Mapped[date] = mapped_column(Date)  # the partition (updated_at day) that wrote this state

    __table_args__ = (Index("ix_orders_project_day", "project_id", "order_day"),)


class SalesOrderLine(Base):
    """One line item: what was sold, how many, at which unit prices (exact, order currency)."""

    __tablename__ = "order_lines"

    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id"), primary_key=True)
    external_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    order_external_id: Mapped[str] = mapped_column(String(200))
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    channel: Mapped[str] = mapped_column(String(32))
    order_day: Mapped[date] = mapped_column(Date)
    variant_id: Mapped[int | None] = mapped_column(ForeignKey("variants.id"))  # NULL: not in our catalog
    variant_external_id: Mapped[str | None] = mapped_column(String(200))
    sku: Mapped[str | None] = mapped_column(String(200))
    quantity: Mapped[int] = mapped_column(Integer)
    original_unit_price: Mapped[Decimal] = mapped_column(ExactDecimal)
    discounted_unit_price: Mapped[Decimal] = mapped_column(ExactDecimal)
    currency: Mapped[str] = mapped_column(String(3))

    __table_args__ = (
        Index("ix_order_lines_order", "shop_id", "order_external_id"),
        Index("ix_order_lines_project_day", "project_id", "order_day"),
    )


class SalesRefundLine(Base):
    """Units and money given back for one line of one refund."""

    __tablename__ = "order_refund_lines"

    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id"), primary_key=True)
    refund_external_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    line_external_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    order_external_id: Mapped[str] = mapped_column(String(200))
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    refunded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    refund_day: Mapped[date] = mapped_column(Date)
    quantity: Mapped[int] = mapped_column(Integer)
    amount: Mapped[Decimal] = mapped_column(ExactDecimal)
    currency: Mapped[str] = mapped_column(String(3))

    __table_args__ = (Index("ix_order_refund_lines_order", "shop_id", "order_external_id"),)


class OrderSyncError(Base):
    """An order record that failed validation, kept whole with the reason (nothing dropped).

    Keyed by the partition that read it: re-running the partition replaces its rows.
    """

    __tablename__ = "order_sync_errors"

    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    partition_day: Mapped[date] = mapped_column(Date, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)  # order in the API's answer
    channel: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str | None] = mapped_column(String(200))
    field: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    payload: Mapped[str] = mapped_column(Text)  # the record as received (JSON)


class CompetitorTrendFlag(Base):
    """A trend flag raised for one SKU (and competitor listing) as of a day; see domain/trends.py.

    ``size_pct`` is the move, shift, gap or margin drop in percent; ``statistic`` the
    test statistic (Mann–Kendall z, Welch t) when the rule has one.
    """

    __tablename__ = "competitor_trends"

    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    as_of_day: Mapped[date] = mapped_column(Date, primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    variant_id: Mapped[int] = mapped_column(ForeignKey("variants.id"))
    sku: Mapped[str] = mapped_column(String(200))
    competitor_id: Mapped[int | None] = mapped_column(ForeignKey("competitors.id"))
    listing_id: Mapped[int | None] = mapped_column(ForeignKey("competitor_listings.id"))
    flag: Mapped[str] = mapped_column(String(32))
    direction: Mapped[str] = mapped_column(String(8))
    window_days: Mapped[int] = mapped_column(Integer)
    size_pct: Mapped[float] = mapped_column(Float)
    statistic: Mapped[float | None] = mapped_column(Float)
    explanation: Mapped[str] = mapped_column(Text)


class WeeklyDigest(Base):
    """The weekly insight digest of one tenant (ISO week starting ``week_start``)."""

    __tablename__ = "weekly_digests"

    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    week_start: Mapped[date] = mapped_column(Date, primary_key=True)
    markdown: Mapped[str] = mapped_column(Text)
    charts: Mapped[list] = mapped_column(JSON, default=list)  # file names next to the Markdown
    directory: Mapped[str] = mapped_column(String(1000))  # where the Markdown and PNGs were written


class AmazonAccount(Base):
    """SP-API access of an Amazon sales channel (a ``shops`` row with platform ``amazon``).

    ``sealed_credentials`` is the client secret and refresh token, encrypted
    (connectors/amazon_credentials.seal); never log or return it.
    """

    __tablename__ = "amazon_accounts"

    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id"), primary_key=True)
    seller_id: Mapped[str] = mapped_column(String(64))
    marketplace_id: Mapped[str] = mapped_column(String(32))
    token_url: Mapped[str] = mapped_column(String(500))
    client_id: Mapped[str] = mapped_column(String(200))
    sealed_credentials: Mapped[str] = mapped_column(Text)

    def __repr__(self) -> str:
        return f"AmazonAccount(shop_id={self.shop_id!r}, seller_id={self.seller_id!r}, sealed_credentials='***')"


class AmazonSkuMap(Base):
    """Which of our variants an Amazon listing sells: seller SKU and ASIN ↔ variant."""

    __tablename__ = "amazon_sku_map"

    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id"), primary_key=True)
    seller_sku: Mapped[str] = mapped_column(String(200), primary_key=True)
    asin: Mapped[str] = mapped_column(String(20))
    variant_id: Mapped[int] = mapped_column(ForeignKey("variants.id"))


class AmazonCompetitivePrice(Base):
    """getCompetitivePricing per mapped ASIN and day: the buy-box competitive price."""

    __tablename__ = "amazon_competitive_prices"

    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id"), primary_key=True)
    asin: Mapped[str] = mapped_column(String(20), primary_key=True)
    price_day: Mapped[date] = mapped_column(Date, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    variant_id: Mapped[int] = mapped_column(ForeignKey("variants.id"))
    status: Mapped[str] = mapped_column(String(32))  # Success | ClientError | ...
    landed_price: Mapped[Decimal | None] = mapped_column(ExactDecimal)
    listing_price: Mapped[Decimal | None] = mapped_column(ExactDecimal)
    currency: Mapped[str | None] = mapped_column(String(3))


class VariantCostHistory(Base):
    """The unit cost of a variant over time, so a cost change never rewrites past margins.

    One row per (variant, day the cost took effect): ``valid_from`` inclusive, ``valid_to``
    exclusive (NULL for the cost in force now). Catalog syncs add a row when the unit cost
    they read differs from the variant's; a second change on the same day replaces that
    day's row. ``cost`` NULL means the cost was unknown from that day.
    """

    __tablename__ = "variant_cost_history"

    variant_id: Mapped[int] = mapped_column(ForeignKey("variants.id"), primary_key=True)
    valid_from: Mapped[date] = mapped_column(Date, primary_key=True)
    valid_to: Mapped[date | None] = mapped_column(Date)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    cost: Mapped[Decimal | None] = mapped_column(ExactDecimal)
    currency: Mapped[str] = mapped_column(String(3))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

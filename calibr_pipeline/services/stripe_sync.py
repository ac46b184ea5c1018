"""Stripe Connect: connecting accounts, syncing them into the warehouse, receiving webhooks.

* ``connect_account`` exchanges an OAuth code for the account id and tokens and stores the
  tokens sealed (``connectors/stripe/sealing.py``).
* ``sync_catalog`` is incremental: per account and kind (product, price) it lists
  ``created[gte]`` the stored cursor with ``starting_after`` pagination and upserts
  ``stripe_product_map`` (SKU from the price's or product's ``metadata[sku]``; manual
  matches are kept).
* ``sync_transactions_day`` replaces one tenant-day of ``transactions`` (PaymentIntents and
  BalanceTransactions created that UTC day): re-running a partition replaces its rows.
* ``receive_webhook_event`` records a verified event once by id and writes an outbox event
  for the types we act on; everything else is recorded as ignored. It never calls Stripe.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Callable

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from calibr_pipeline.connectors.stripe.client import StripeConnect, StripeConnectorError
from calibr_pipeline.connectors.stripe.sealing import seal_secret
from calibr_pipeline.domain.errors import CalibrError
from calibr_pipeline.warehouse.engine import session_scope
from calibr_pipeline.warehouse.models import (
    Project,
    StripeAccount,
    StripeProductMap,
    StripeSyncCursor,
    StripeSyncRun,
    StripeWebhookEvent,
    StripeWebhookRejection,
    Tenant,
    Transaction,
    Variant,
)
from calibr_pipeline.warehouse.outbox import publish
from calibr_pipeline.warehouse.types import utcnow

WEBHOOK_EVENT = "stripe.webhook.received"
# Webhook event types that make us sync (the rest are recorded and ignored).
HANDLED_TYPES = frozenset({
    "product.created", "product.updated", "product.deleted", "price.created", "price.updated", "price.deleted",
    "payment_intent.succeeded", "payment_intent.payment_failed", "payment_intent.canceled", "charge.refunded",
    "balance.available", "account.application.deauthorized",
})

ClientFactory = Callable[[], StripeConnect]


def connect_account(warehouse_url: str, client: StripeConnect, *, tenant_slug: str, code: str) -> str:
    """OAuth code -> stored connected account (tokens sealed). Returns the account id."""
    connected = client.exchange_code(code)
    with session_scope(warehouse_url) as session:
        tenant = session.scalar(select(Tenant).where(Tenant.slug == tenant_slug))
        if tenant is None:
            raise CalibrError(f"unknown tenant {tenant_slug!r}")
        account = session.scalar(select(StripeAccount).where(StripeAccount.account_id == connected.account_id))
        if account is not None and account.tenant_id != tenant.id:
            raise CalibrError(f"Stripe account {connected.account_id} is already connected to another tenant")
        if account is None:
            account = StripeAccount(tenant_id=tenant.id, account_id=connected.account_id)
            session.add(account)
        account.access_token_sealed = seal_secret(connected.access_token)
        account.refresh_token_sealed = seal_secret(connected.refresh_token) if connected.refresh_token else None
        account.scope, account.livemode, account.connected_at = connected.scope, connected.livemode, utcnow()
    return connected.account_id


def tenant_accounts(session: Session, tenant_slug: str) -> tuple[int, list[str]]:
    tenant = session.scalar(select(Tenant).where(Tenant.slug == tenant_slug))
    if tenant is None:
        raise CalibrError(f"unknown tenant {tenant_slug!r}")
    return tenant.id, list(session.scalars(select(StripeAccount.account_id).where(StripeAccount.tenant_id == tenant.id).order_by(StripeAccount.account_id)))


def _cursor(session: Session, account_id: str, kind: str) -> StripeSyncCursor:
    cursor = session.scalar(select(StripeSyncCursor).where(StripeSyncCursor.account_id == account_id, StripeSyncCursor.object_kind == kind))
    if cursor is None:
        cursor = StripeSyncCursor(account_id=account_id, object_kind=kind, created_cursor=0)
        session.add(cursor)
    return cursor


@dataclass
class SyncReport:
    accounts: int = 0
    products: int = 0
    prices: int = 0
    payment_intents: int = 0
    balance_transactions: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def objects(self) -> int:
        return self.products + self.prices + self.payment_intents + self.balance_transactions


def _minor(value) -> int | None:
    return None if value is None else int(value)


def sync_catalog(warehouse_url: str, client: StripeConnect, *, tenant_slug: str, report: SyncReport | None = None) -> SyncReport:
    """Products and prices created since each account's cursor -> ``stripe_product_map``."""
    report = report or SyncReport()
    with session_scope(warehouse_url) as session:
        tenant_id, accounts = tenant_accounts(session, tenant_slug)
        cursors = {(a, k): _cursor(session, a, k).created_cursor for a in accounts for k in ("product", "price")}
    for account_id in accounts:
        products = list(client.list_objects("product", account_id, created_gte=cursors[(account_id, "product")] or None))
        prices = list(client.list_objects("price", account_id, created_gte=cursors[(account_id, "price")] or None))
        with session_scope(warehouse_url) as session:
            variants = dict(session.execute(
                select(Variant.sku, Variant.id).join(Project, Project.id == Variant.project_id).where(Project.tenant_id == tenant_id)
            ).all())
            known_products = {p["id"]: p for p in products}
            for row in session.scalars(select(StripeProductMap).where(StripeProductMap.account_id == account_id, StripeProductMap.stripe_price_id == "")):
                known_products.setdefault(row.stripe_product_id, {"id": row.stripe_product_id, "name": row.product_name, "metadata": {"sku": row.sku} if row.sku else {}})
            for product in products:
                _upsert_map(session, tenant_id, account_id, product, None, variants)
            for price in prices:
                product = known_products.get(price["product"]) or {"id": price["product"], "name": None, "metadata": {}}
                _upsert_map(session, tenant_id, account_id, product, price, variants)
            for kind, objects in (("product", products), ("price", prices)):
                if objects:
                    cursor = _cursor(session, account_id, kind)
                    cursor.created_cursor = max(cursor.created_cursor, max(o["created"] for o in objects))
                    cursor.synced_at = utcnow()
        report.products += len(products)
        report.prices += len(prices)
    report.accounts = len(accounts)
    return report


def _upsert_map(session: Session, tenant_id: int, account_id: str, product: dict, price: dict | None, variants: dict[str, int]) -> None:
    price_id = price["id"] if price else ""
    row = session.scalar(select(StripeProductMap).where(
        StripeProductMap.account_id == account_id, StripeProductMap.stripe_product_id == product["id"], StripeProductMap.stripe_price_id == price_id))
    if row is None:
        row = StripeProductMap(tenant_id=tenant_id, account_id=account_id, stripe_product_id=product["id"], stripe_price_id=price_id, match_source="unmatched")
        session.add(row)
    row.product_name = product.get("name")
    if price:
        row.unit_amount_minor, row.currency = _minor(price.get("unit_amount")), (price.get("currency") or "").upper() or None
    if row.match_source != "manual":
        sku = ((price or {}).get("metadata") or {}).get("sku") or (product.get("metadata") or {}).get("sku")
        row.sku = sku
        row.variant_id = variants.get(sku) if sku else None
        row.match_source = "sku_metadata" if row.variant_id else "unmatched"
    row.updated_at = utcnow()


def map_manually(warehouse_url: str, *, account_id: str, stripe_product_id: str, stripe_price_id: str = "", sku: str) -> None:
    """Link a Stripe product/price to one of our SKUs by hand (kept by later syncs)."""
    with session_scope(warehouse_url) as session:
        row = session.scalar(select(StripeProductMap).where(StripeProductMap.account_id == account_id, StripeProductMap.stripe_product_id == stripe_product_id,
                                                            StripeProductMap.stripe_price_id == stripe_price_id))
        if row is None:
            raise CalibrError(f"no synced Stripe product {stripe_product_id} {stripe_price_id} on {account_id}: run the sync first")
        variant_id = session.scalar(select(Variant.id).join(Project, Project.id == Variant.project_id).where(Project.tenant_id == row.tenant_id, Variant.sku == sku))
        if variant_id is None:
            raise CalibrError(f"the tenant has no SKU {sku!r}")
        row.sku, row.variant_id, row.match_source, row.updated_at = sku, variant_id, "manual", utcnow()


def _day_bounds(day: date) -> tuple[int, int]:
    start = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
    return int(start.timestamp()), int((start + timedelta(days=1)).timestamp())


def sync_transactions_day(warehouse_url: str, client: StripeConnect, *, tenant_slug: str, day: date, report: SyncReport | None = None) -> SyncReport:
    """Replace the tenant's ``transactions`` of ``day`` with what Stripe lists for that day."""
    report = report or SyncReport()
    start, end = _day_bounds(day)
    with session_scope(warehouse_url) as session:
        tenant_id, accounts = tenant_accounts(session, tenant_slug)
    for account_id in accounts:
        started = time.monotonic()
        error = None
        count = 0
        try:
            intents = list(client.list_objects("payment_intent", account_id, created_gte=start, created_lt=end))
            movements = list(client.list_objects("balance_transaction", account_id, created_gte=start, created_lt=end))
        except StripeConnectorError as exc:
            error = f"{exc.kind}: {exc}"
            intents, movements = [], []
        if error is None:
            with session_scope(warehouse_url) as session:
                session.execute(delete(Transaction).where(Transaction.tenant_id == tenant_id, Transaction.account_id == account_id, Transaction.occurred_date == day))
                rows = [_transaction(tenant_id, account_id, "payment_intent", pi, pi.get("status", "unknown"), pi.get("amount_received") or pi.get("amount"), None, None, pi.get("id")) for pi in intents]
                rows += [_transaction(tenant_id, account_id, "balance_transaction", bt, bt.get("type", "unknown"), bt.get("amount"), bt.get("fee"), bt.get("net"),
                                      bt.get("payment_intent")) for bt in movements]
                session.add_all(rows)
                for kind, objects in (("payment_intent", intents), ("balance_transaction", movements)):
                    cursor = _cursor(session, account_id, kind)
                    if objects:
                        cursor.created_cursor = max(cursor.created_cursor, max(o["created"] for o in objects))
                    cursor.synced_at = utcnow()
                count = len(rows)
            report.payment_intents += len(intents)
            report.balance_transactions += len(movements)
        else:
            report.errors.append(f"{account_id}: {error}")
        with session_scope(warehouse_url) as session:
            session.add(StripeSyncRun(tenant_id=tenant_id, account_id=account_id, sync_date=day, seconds=round(time.monotonic() - started, 4), objects=count, error=error))
    report.accounts = len(accounts)
    return report


def _transaction(tenant_id, account_id, source, obj, kind, amount, fee, net, payment_intent_id) -> Transaction:
    occurred = datetime.fromtimestamp(obj["created"], tz=timezone.utc)
    return Transaction(
        tenant_id=tenant_id, account_id=account_id, source=source, stripe_id=obj["id"], kind=kind, amount_minor=int(amount or 0),
        fee_minor=_minor(fee), net_minor=_minor(net), currency=(obj.get("currency") or "").upper(), occurred_at=occurred,
        occurred_date=occurred.date(), payment_intent_id=payment_intent_id if source == "balance_transaction" else obj["id"],
        description=(obj.get("description") or None),
    )


# --- webhooks -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookOutcome:
    status: str  # queued | ignored | duplicate
    outbox_id: str | None = None


def receive_webhook_event(warehouse_url: str, event: dict) -> WebhookOutcome:
    """Record a verified event once (by id); queue a ``stripe.webhook.received`` outbox event for handled types."""
    event_id, event_type, account_id = event["id"], event.get("type", ""), event.get("account")
    with session_scope(warehouse_url) as session:
        if session.scalar(select(StripeWebhookEvent.id).where(StripeWebhookEvent.event_id == event_id)) is not None:
            return WebhookOutcome("duplicate")
    try:
        with session_scope(warehouse_url) as session:
            tenant_id = session.scalar(select(StripeAccount.tenant_id).where(StripeAccount.account_id == account_id)) if account_id else None
            outbox_id = None
            status = "ignored"
            if event_type in HANDLED_TYPES and tenant_id is not None:
                obj = (event.get("data") or {}).get("object") or {}
                created = int(event.get("created") or time.time())
                outbox = publish(session, WEBHOOK_EVENT, {
                    "stripe_event_id": event_id, "type": event_type, "account_id": account_id, "object_id": obj.get("id"),
                    "object_created": obj.get("created"), "day": datetime.fromtimestamp(int(obj.get("created") or created), tz=timezone.utc).date().isoformat(),
                }, tenant_id=tenant_id, actor="stripe-webhook")
                outbox_id, status = outbox.id, "queued"
            session.add(StripeWebhookEvent(event_id=event_id, event_type=event_type, account_id=account_id, tenant_id=tenant_id, status=status, outbox_id=outbox_id))
    except IntegrityError:  # the same event delivered twice at the same moment: the other one won
        return WebhookOutcome("duplicate")
    return WebhookOutcome(status, outbox_id)


def record_rejection(warehouse_url: str, reason: str) -> None:
    with session_scope(warehouse_url) as session:
        session.add(StripeWebhookRejection(reason=reason))


def webhook_backlog(session: Session) -> int:
    from calibr_pipeline.warehouse.models import OutboxEvent

    return session.scalar(select(func.count()).select_from(OutboxEvent).where(OutboxEvent.event_type == WEBHOOK_EVENT, OutboxEvent.dispatched_at.is_(None))) or 0

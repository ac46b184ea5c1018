from decimal import Decimal as D

import pytest
from sqlalchemy import func, select, text

from calibr_pipeline.domain.catalog import CatalogVariant
from calibr_pipeline.warehouse.catalog_store import CatalogConflictError, upsert_catalog
from calibr_pipeline.warehouse.competitor_store import (
    COMPETITOR_ADDED,
    ObservationRow,
    add_competitor_listing,
    guess_page_kind,
    replace_market_positions,
    replace_observations,
    replace_snapshots,
)
from calibr_pipeline.warehouse.engine import get_engine, session_scope
from calibr_pipeline.warehouse.models import (
    CompetitorListing,
    CompetitorPriceObservation,
    EventLog,
    MarketPosition,
    NormalizedPriceSnapshot,
    OutboxEvent,
    Variant,
)
from calibr_pipeline.warehouse.outbox import dead_letter, pending_events
from calibr_pipeline.warehouse.tenancy import (
    InvalidInputError,
    NotFoundError,
)
from calibr_pipeline.warehouse.views import VIEWS

from calibr_pipeline_tests.conftest import DAY, NOW, variant


def test_catalog_upsert_reports_changes_and_is_idempotent(seeded):
    url, _ = seeded
    with session_scope(url) as session:
        shop_id = session.scalar(select(Variant.shop_id).limit(1))
        from calibr_pipeline.warehouse.models import Shop

        shop = session.get(Shop, shop_id)
        stats = upsert_catalog(session, shop, [variant("A", "10.00"), variant("B", "21.50"), variant("C", "30.00", product="p2")])
    assert (stats.variants_created, stats.variants_updated, stats.variants_unchanged) == (0, 1, 2)
    with session_scope(url) as session:
        assert session.scalar(select(Variant.price).where(Variant.sku == "B")) == D("21.50")


def test_catalog_refuses_duplicate_sku_and_wrong_currency(seeded):
    url, _ = seeded
    from calibr_pipeline.warehouse.models import Shop

    with pytest.raises(CatalogConflictError, match="SKU 'A' is used by two variants"):
        with session_scope(url) as session:
            shop = session.scalars(select(Shop)).first()
            dup = CatalogVariant(**{**variant("A", "1.00").__dict__, "variant_external_id": "gid://shopify/ProductVariant/other"})
            upsert_catalog(session, shop, [dup])
    with pytest.raises(CatalogConflictError, match="priced in EUR"):
        with session_scope(url) as session:
            upsert_catalog(session, session.scalars(select(Shop)).first(), [variant("Z", "1.00", currency="EUR")])
    with session_scope(url) as session:  # nothing of the failed upserts was kept
        assert session.scalar(select(func.count()).select_from(Variant)) == 3


def test_add_listing_writes_listing_event_and_outbox_in_one_transaction(seeded):
    url, tenant_id = seeded
    with session_scope(url) as session:
        added = add_competitor_listing(session, project_slug="acme-store", sku="A", url="https://rival.example/products/tent", currency="EUR")
    assert added.created
    with session_scope(url) as session:
        listing = session.get(CompetitorListing, added.listing_id)
        assert listing.page_kind == "shopify"
        event = session.get(OutboxEvent, added.event_id)
        assert event.event_type == COMPETITOR_ADDED and event.payload["listing_id"] == added.listing_id
        assert event.tenant_id == tenant_id and event.dispatched_at is None
        assert session.scalar(select(EventLog.correlation_id).where(EventLog.event_type == COMPETITOR_ADDED)) == added.event_id
        again = add_competitor_listing(session, project_slug="acme-store", sku="A", url="https://rival.example/products/tent")
    assert not again.created and again.listing_id == added.listing_id
    with session_scope(url) as session:
        assert session.scalar(select(func.count()).select_from(OutboxEvent)) == 1


def test_failed_add_leaves_no_listing_and_no_event(seeded):
    url, _ = seeded
    with pytest.raises(NotFoundError, match="unknown SKU 'NOPE' in project 'acme-store'"):
        with session_scope(url) as session:
            add_competitor_listing(session, project_slug="acme-store", sku="NOPE", url="https://rival.example/p")
    with pytest.raises(NotFoundError, match=r"unknown project 'ghost' \(known projects: acme-store\)"):
        with session_scope(url) as session:
            add_competitor_listing(session, project_slug="ghost", sku="A", url="https://rival.example/p")
    with pytest.raises(InvalidInputError, match="currency 'euro'"):
        with session_scope(url) as session:
            add_competitor_listing(session, project_slug="acme-store", sku="A", url="https://rival.example/p", currency="euro")
    with session_scope(url) as session:
        assert session.scalar(select(func.count()).select_from(CompetitorListing)) == 0
        assert session.scalar(select(func.count()).select_from(OutboxEvent)) == 0


@pytest.mark.parametrize(
    "url, kind",
    [("https://x.example/products/tent", "shopify"), ("https://x.example/en-gb/products/tent/", "shopify"), ("https://x.example/p/tent.html", "html"), ("https://x.example/products/a/b", "html")],
)
def test_guess_page_kind(url, kind):
    assert guess_page_kind(url) == kind


def _obs(listing_id, status="ok", amount=None, currency=None, availability="InStock", error_class=None, at=NOW):
    return ObservationRow(
        listing_id=listing_id, url="https://x", status=status, http_status=200 if status == "ok" else 503,
        error_class=error_class, error_message=None if status == "ok" else "boom",
        amount=D(amount) if amount else None, currency=currency, regular_amount=None,
        availability=availability if status == "ok" else None, extraction_source="json-ld" if status == "ok" else None,
        extracted=None, attempts=1, elapsed_ms=12, fetched_at=at,
    )


def test_partition_pipeline_snapshots_positions_and_views(seeded):
    url, tenant_id = seeded
    with session_scope(url) as session:
        ids = {}
        for sku, site, currency in [("A", "eu.example", "EUR"), ("A", "us.example", "USD"), ("B", "us.example", "USD"), ("C", "jp.example", "JPY")]:
            ids[(sku, site)] = add_competitor_listing(session, project_slug="acme-store", sku=sku, url=f"https://{site}/p/{sku}", currency=currency).listing_id
    rows = [
        _obs(ids[("A", "eu.example")], amount="8.00", currency="EUR"),  # 8.80 USD
        _obs(ids[("A", "us.example")], status="error", error_class="http_5xx"),
        _obs(ids[("A", "us.example")], amount="12.00", currency="USD", at=NOW.replace(hour=7)),
        _obs(ids[("B", "us.example")], amount="15.00", currency="USD", availability="OutOfStock"),
        _obs(ids[("C", "jp.example")], amount="4000", currency="JPY"),  # no JPY rate
    ]
    with session_scope(url) as session:
        assert replace_observations(session, tenant_id=tenant_id, observation_date=DAY, rows=rows, run_id="r1") == 5
        stats = replace_snapshots(session, tenant_id=tenant_id, snapshot_date=DAY)
        assert stats.snapshots == 4 and stats.missing_fx == {"JPY->USD": 1}
        positions = replace_market_positions(session, tenant_id=tenant_id, position_date=DAY)
    assert positions.by_position == {"middle": 1, "no_data": 2}
    with session_scope(url) as session:
        a = session.execute(
            select(MarketPosition).join(Variant, Variant.id == MarketPosition.variant_id).where(Variant.sku == "A")
        ).scalar_one()
        assert (a.lowest_price, a.highest_price, a.median_price, a.competitor_count) == (D("8.80"), D("12.00"), D("10.40"), 2)
        snap = session.scalar(select(NormalizedPriceSnapshot).where(NormalizedPriceSnapshot.listing_id == ids[("A", "eu.example")]))
        assert (snap.amount, snap.currency, snap.fx_rate, snap.amount_in_project_currency) == (D("8.00"), "EUR", D("1.10"), D("8.80"))

    # Re-running one listing replaces only its rows; re-running the partition replaces all.
    with session_scope(url) as session:
        replace_observations(session, tenant_id=tenant_id, observation_date=DAY, rows=[_obs(ids[("B", "us.example")], amount="14.00", currency="USD")], run_id="r2", listing_ids=[ids[("B", "us.example")]])
        assert session.scalar(select(func.count()).select_from(CompetitorPriceObservation)) == 5
        replace_observations(session, tenant_id=tenant_id, observation_date=DAY, rows=rows[:1], run_id="r3")
        assert session.scalar(select(func.count()).select_from(CompetitorPriceObservation)) == 1
        replace_snapshots(session, tenant_id=tenant_id, snapshot_date=DAY)
        assert session.scalar(select(func.count()).select_from(NormalizedPriceSnapshot)) == 1

    with get_engine(url).connect() as connection:
        for name in VIEWS:
            connection.execute(text(f"SELECT * FROM {name}")).fetchall()
        spread = connection.execute(text("SELECT sku, lowest, highest FROM v_price_spread")).all()
        assert [(s, D(str(lo)), D(str(hi))) for s, lo, hi in spread] == [("A", D("8.80"), D("8.80"))]


def test_dead_letter_takes_event_off_the_queue(seeded):
    url, tenant_id = seeded
    with session_scope(url) as session:
        session.add(OutboxEvent(id="evt-1", tenant_id=tenant_id, event_type=COMPETITOR_ADDED, payload={"listing_id": "x"}))
    with session_scope(url) as session:
        (event,) = pending_events(session, COMPETITOR_ADDED)
        dead_letter(session, event, "listing_id must be an integer")
    with session_scope(url) as session:
        assert pending_events(session, COMPETITOR_ADDED) == []
        from calibr_pipeline.warehouse.models import OutboxDeadLetter

        parked = session.scalars(select(OutboxDeadLetter)).one()
        assert parked.outbox_id == "evt-1" and parked.reason == "listing_id must be an integer"
        assert parked.tenant_id == tenant_id  # the event's tenant: row-level security on PostgreSQL


def test_migration_gives_existing_dead_letters_their_events_tenant(seeded):
    """Migration 0013: dead letters parked before it take the tenant of their outbox event
    (and keep NULL when the event had none); downgrading and upgrading again is clean."""
    from alembic import command

    from calibr_pipeline.warehouse.engine import alembic_config, get_engine, upgrade_to_head

    url, tenant_id = seeded
    config = alembic_config(url)
    with get_engine(url).begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0012")
    with get_engine(url).begin() as connection:
        connection.execute(text("INSERT INTO outbox (id, tenant_id, event_type, payload, created_at, schema_version) "
                                "VALUES ('evt-t', :t, 'competitor.added', '{}', CURRENT_TIMESTAMP, 1), "
                                "('evt-none', NULL, 'competitor.added', '{}', CURRENT_TIMESTAMP, 1)"), {"t": tenant_id})
        connection.execute(text("INSERT INTO outbox_dead_letters (outbox_id, event_type, payload, reason, created_at) "
                                "VALUES ('evt-t', 'competitor.added', '{}', 'bad', CURRENT_TIMESTAMP), "
                                "('evt-none', 'competitor.added', '{}', 'bad', CURRENT_TIMESTAMP)"))
    upgrade_to_head(url)
    with get_engine(url).connect() as connection:
        rows = dict(connection.execute(text("SELECT outbox_id, tenant_id FROM outbox_dead_letters")).all())
    assert rows == {"evt-t": tenant_id, "evt-none": None}

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select, text

from calibr_pipeline.warehouse.engine import current_revision, get_engine, session_scope, upgrade_to_head
from calibr_pipeline.warehouse.models import Base, FxRate, Project, Tenant


def test_migrations_match_models_on_each_backend(warehouse_url):
    assert current_revision(warehouse_url) is not None
    with get_engine(warehouse_url).connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == [], f"models and migrations disagree: {diff}"


def test_upgrade_is_idempotent(warehouse_url):
    before = current_revision(warehouse_url)
    upgrade_to_head(warehouse_url)
    assert current_revision(warehouse_url) == before


@pytest.mark.parametrize(
    "amount",
    ["19.99", "0.000001", "8097000", "12345678901234.123456", "1299.5", "100"],
)
def test_money_round_trips_exactly(warehouse_url, amount):
    with session_scope(warehouse_url) as session:
        session.add(FxRate(rate_date=date(2026, 1, 1), base_currency="USD", quote_currency=f"X{len(amount):02d}", rate=Decimal(amount), source="t"))
    with session_scope(warehouse_url) as session:
        stored = session.scalar(select(FxRate.rate))
    assert isinstance(stored, Decimal)
    assert stored == Decimal(amount)
    assert "E" not in str(stored)


def test_sqlite_stores_money_as_text_not_double(sqlite_warehouse_url):
    with session_scope(sqlite_warehouse_url) as session:
        session.add(FxRate(rate_date=date(2026, 1, 1), base_currency="USD", quote_currency="EUR", rate=Decimal("0.1"), source="t"))
    with get_engine(sqlite_warehouse_url).connect() as connection:
        raw, kind = connection.execute(text("SELECT rate, typeof(rate) FROM fx_rates")).one()
    assert (raw, kind) == ("0.1", "text")


def test_floats_are_refused_as_money(sqlite_warehouse_url):
    with pytest.raises(Exception, match="float"):
        with session_scope(sqlite_warehouse_url) as session:
            session.add(FxRate(rate_date=date(2026, 1, 1), base_currency="USD", quote_currency="EUR", rate=0.1, source="t"))


def test_timestamps_come_back_as_aware_utc(warehouse_url):
    moment = datetime(2026, 11, 23, 12, 30, tzinfo=timezone(timedelta(hours=2)))
    with session_scope(warehouse_url) as session:
        session.add(Tenant(slug="acme", name="Acme", created_at=moment))
    with session_scope(warehouse_url) as session:
        created = session.scalar(select(Tenant.created_at))
    assert created == moment and created.tzinfo is not None and created.utcoffset() == timedelta(0)


def test_foreign_keys_are_enforced(warehouse_url):
    with pytest.raises(Exception):
        with session_scope(warehouse_url) as session:
            session.add(Project(tenant_id=999, slug="orphan", name="x", currency="USD"))


def test_views_are_recreated_only_when_their_sql_changes(warehouse_url, monkeypatch):
    from calibr_pipeline.warehouse import views

    with get_engine(warehouse_url).begin() as connection:
        assert views.recreate_views(connection) is False
    monkeypatch.setitem(views.VIEWS, "v_market_position", views.VIEWS["v_market_position"] + "WHERE 1 = 1\n")
    with get_engine(warehouse_url).begin() as connection:
        assert views.recreate_views(connection) is True
        assert connection.execute(text("SELECT COUNT(*) FROM v_market_position")).scalar() == 0


def test_sql_directory_holds_the_current_views():
    from pathlib import Path

    from calibr_pipeline.warehouse.views import VIEWS, render_sql_file

    directory = Path(__file__).resolve().parents[2] / "sql" / "views"
    assert sorted(p.stem for p in directory.glob("*.sql")) == sorted(VIEWS)
    for name in VIEWS:
        assert (directory / f"{name}.sql").read_text() == render_sql_file(name), f"run `make sql` ({name})"

"""Shared fixtures: a fresh warehouse per test, on SQLite and on the real Postgres server."""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from calibr_pipeline.warehouse.engine import get_engine, upgrade_to_head

# One vault key for the whole session, whatever CALIBR_HOME a test picks (secrets.vault).
os.environ.setdefault("CALIBR_SECRETS_KEYS", "Y2FsaWJyLXRlc3QtdmF1bHQta2V5LW5vdC1zZWNyZXQ=")
POSTGRES_ADMIN_URL = os.environ.get("CALIBR_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
REQUIRE_POSTGRES = os.environ.get("CALIBR_REQUIRE_POSTGRES") == "1"


def _postgres_available() -> str | None:
    try:
        engine = create_engine(POSTGRES_ADMIN_URL, pool_pre_ping=True)
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:  # pragma: no cover - environment dependent
        return str(exc).splitlines()[0]


_PG_PROBLEM = _postgres_available()


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    if _PG_PROBLEM:
        if REQUIRE_POSTGRES:
            pytest.fail(f"Postgres is required (CALIBR_REQUIRE_POSTGRES=1) but unreachable: {_PG_PROBLEM}")
        pytest.skip(f"Postgres unreachable: {_PG_PROBLEM}")
    return POSTGRES_ADMIN_URL


def _fresh_postgres_database(admin_url: str) -> tuple[str, callable]:
    name = f"calibr_t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)

    def drop() -> None:
        get_engine(url).dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url, drop


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse_url(request, tmp_path) -> str:
    """An empty warehouse migrated to head, on each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'warehouse.db'}"
        upgrade_to_head(url)
        yield url
        get_engine(url).dispose()
        return
    admin_url = request.getfixturevalue("postgres_admin_url")
    url, drop = _fresh_postgres_database(admin_url)
    upgrade_to_head(url)
    yield url
    drop()


@pytest.fixture
def instance():
    """An ephemeral Dagster instance for in-process runs and sensor ticks."""
    import dagster as dg

    with dg.instance_for_test() as instance:
        yield instance


@pytest.fixture
def sqlite_warehouse_url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    upgrade_to_head(url)
    yield url
    get_engine(url).dispose()


# --- a small seeded tenant shared by store, sensor and asset tests ----------------------

from datetime import date, datetime, timezone  # noqa: E402
from decimal import Decimal as D  # noqa: E402

from calibr_pipeline.domain.catalog import CatalogVariant  # noqa: E402
from calibr_pipeline.warehouse.catalog_store import upsert_catalog  # noqa: E402
from calibr_pipeline.warehouse.competitor_store import upsert_fx_rate  # noqa: E402
from calibr_pipeline.warehouse.engine import session_scope  # noqa: E402
from calibr_pipeline.warehouse.tenancy import get_or_create_project, get_or_create_tenant, upsert_shop  # noqa: E402

DAY = date(2026, 11, 20)
NOW = datetime(2026, 11, 20, 6, 0, tzinfo=timezone.utc)


def variant(sku, price, product="p1", cost="5.00", currency="USD"):
    return CatalogVariant(
        product_external_id=f"gid://shopify/Product/{product}",
        product_title=f"Product {product}",
        product_type="Tents",
        vendor="Acme",
        tags=("outdoor",),
        variant_external_id=f"gid://shopify/ProductVariant/{sku}",
        sku=sku,
        variant_title="Default",
        price=D(price),
        compare_at_price=None,
        cost=D(cost),
        currency=currency,
    )


@pytest.fixture
def seeded(warehouse_url):
    with session_scope(warehouse_url) as session:
        tenant = get_or_create_tenant(session, "acme")
        project = get_or_create_project(session, tenant, "acme-store", currency="USD")
        shop = upsert_shop(session, project, "main", platform="csv", currency="USD")
        upsert_catalog(session, shop, [variant("A", "10.00"), variant("B", "20.00"), variant("C", "30.00", product="p2")])
        upsert_fx_rate(session, date(2026, 11, 1), "EUR", "USD", D("1.10"), "test")
    return warehouse_url, tenant.id



"""Cost history: a unit cost change read by a catalog sync never rewrites past margins.

A costs 6.00 when the first sync runs (03-01); orders on 03-01 and 03-02. The sync of 03-03
reads 7.25 (a second change the same day, from 7.00, replaces that day's row). After a
rebuild the margins of 03-01 and 03-02 are unchanged to the cent and 03-03/03-04 use 7.25.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from decimal import Decimal as D

import dagster as dg
import pytest
from sqlalchemy import text

from calibr_pipeline.definitions import build_definitions
from calibr_pipeline.defs.resources import WarehouseResource
from calibr_pipeline.warehouse import catalog_store
from calibr_pipeline.warehouse.catalog_store import upsert_catalog
from calibr_pipeline.warehouse.engine import get_engine, session_scope, upgrade_to_head
from calibr_pipeline.warehouse.models import SalesOrder, SalesOrderLine, Shop, Variant
from calibr_pipeline.warehouse.tenancy import get_or_create_project, get_or_create_tenant, upsert_shop
from calibr_pipeline_tests.conftest import _fresh_postgres_database, variant

pytestmark = pytest.mark.integration


def at(day: str, hour: int = 12) -> dt.datetime:
    return dt.datetime.fromisoformat(f"{day}T{hour:02d}:00:00+00:00")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'warehouse.db'}"
        drop = lambda: get_engine(url).dispose()  # noqa: E731
    else:
        url, drop = _fresh_postgres_database(request.getfixturevalue("postgres_admin_url"))
    upgrade_to_head(url)
    yield url
    drop()


def sync(url: str, monkeypatch, when: dt.datetime, cost: str) -> None:
    monkeypatch.setattr(catalog_store, "utcnow", lambda: when)
    with session_scope(url) as session:
        shop = session.query(Shop).filter(Shop.name == "main").one()
        upsert_catalog(session, shop, [variant("A", "10.00", cost=cost), variant("B", "20.00", cost="12.50")])


def add_order(url: str, oid: str, day: str, sku: str, qty: int, price: str) -> None:
    with session_scope(url) as session:
        shop = session.query(Shop).filter(Shop.name == "main").one()
        v = session.query(Variant).filter(Variant.sku == sku).one()
        tenant_id = session.execute(text("SELECT tenant_id FROM projects WHERE id = :p"), {"p": v.project_id}).scalar()
        common = {"tenant_id": tenant_id, "project_id": v.project_id}
        session.add(SalesOrder(shop_id=shop.id, external_id=oid, channel="shopify", name=oid, order_day=dt.date.fromisoformat(day),
                               created_at=at(day), updated_at=at(day), cancelled_at=None, currency="USD", test=False,
                               source_name="web", synced_day=dt.date.fromisoformat(day), **common))
        session.add(SalesOrderLine(shop_id=shop.id, external_id=f"{oid}-1", order_external_id=oid, channel="shopify",
                                   order_day=dt.date.fromisoformat(day), variant_id=v.id, variant_external_id=f"v-{sku}", sku=sku,
                                   quantity=qty, original_unit_price=D(price), discounted_unit_price=D(price), currency="USD", **common))


def build(url: str) -> None:
    defs = build_definitions(warehouse=WarehouseResource(url=url))
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("analytics_models").execute_in_process(instance=instance, raise_on_error=False)
    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())


def margins(url: str) -> dict[tuple[str, str], tuple]:
    with session_scope(url) as session:
        return {
            (r[0], str(r[1])[:10]): (r[2], r[3], r[4])
            for r in session.execute(text("SELECT sku, day, revenue_minor, cost_minor, margin_minor FROM sales_daily"))
        }


def history(url: str) -> list[tuple]:
    with session_scope(url) as session:
        return [
            (str(r[0])[:10], None if r[1] is None else str(r[1])[:10], D(str(r[2])))
            for r in session.execute(text(
                "SELECT h.valid_from, h.valid_to, h.cost FROM variant_cost_history h JOIN variants v ON v.id = h.variant_id "
                "WHERE v.sku = 'A' ORDER BY h.valid_from"))
        ]


def test_a_cost_change_keeps_past_margins_and_prices_new_days_with_the_new_cost(url, monkeypatch):
    with session_scope(url) as session:
        tenant = get_or_create_tenant(session, "costs")
        project = get_or_create_project(session, tenant, "cost-store", currency="USD")
        upsert_shop(session, project, "main", platform="csv", currency="USD")
    sync(url, monkeypatch, at("2026-03-01", 6), "6.00")
    add_order(url, "O1", "2026-03-01", "A", 2, "10.00")
    add_order(url, "O2", "2026-03-02", "A", 1, "10.00")
    add_order(url, "O3", "2026-03-02", "B", 1, "20.00")
    build(url)
    before = margins(url)
    assert before == {
        ("A", "2026-03-01"): (2000, 1200, 800),
        ("A", "2026-03-02"): (1000, 600, 400),
        ("B", "2026-03-02"): (2000, 1250, 750),
    }

    # 03-03: the cost rises; a second sync the same day corrects it (one row for the day).
    sync(url, monkeypatch, at("2026-03-03", 6), "7.00")
    sync(url, monkeypatch, at("2026-03-03", 7), "7.25")
    sync(url, monkeypatch, at("2026-03-04", 6), "7.25")  # unchanged: no new row
    assert history(url) == [("2026-03-01", "2026-03-03", D("6.00")), ("2026-03-03", None, D("7.25"))]
    add_order(url, "O4", "2026-03-03", "A", 3, "10.00")
    add_order(url, "O5", "2026-03-04", "A", 1, "9.99")
    build(url)
    after = margins(url)
    assert {k: v for k, v in after.items() if k[1] < "2026-03-03"} == before
    assert after[("A", "2026-03-03")] == (3000, 2175, 825)
    assert after[("A", "2026-03-04")] == (999, 725, 274)

    # The cost becomes unknown on 03-05: earlier days keep their margins, new ones have none.
    sync(url, monkeypatch, at("2026-03-05", 6), "7.25")
    with session_scope(url) as session:
        shop = session.query(Shop).filter(Shop.name == "main").one()
        monkeypatch.setattr(catalog_store, "utcnow", lambda: at("2026-03-05", 8))
        upsert_catalog(session, shop, [replace(variant("A", "10.00"), cost=None), variant("B", "20.00", cost="12.50")])
    add_order(url, "O6", "2026-03-05", "A", 1, "10.00")
    build(url)
    final = margins(url)
    assert {k: v for k, v in final.items() if k[1] < "2026-03-05"} == after
    assert final[("A", "2026-03-05")] == (1000, None, None)

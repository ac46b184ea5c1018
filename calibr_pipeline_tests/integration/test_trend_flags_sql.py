"""The dbt model ``trend_flags`` (portable SQL) raises exactly the flags of the reference
implementation (``domain/trends.py`` through ``services.trends.compute_trends``), on SQLite
and PostgreSQL: same flags, order, direction, window, size, statistic and explanation, for
every as-of day from before the data starts to after its 14-day windows have run out.

Series over 20 days (03-01..03-20; our price 100.00 for every SKU):
A/R1 a steady rise; A/R2 a step down (flat sides: Welch t infinite); B/R1 undercutting from
day 10; B/R2 flat, out of stock on the last 3 days, one day never scraped; C/R1 noise with a
one-day outlier and a day without a price; C/R2 99.99 then 104.99 (inexact decimal sums);
D/R1 a seeded random walk with gaps. A sells one unit a day at 10.00 then 9.00 (cost 6.00):
margin erosion.
"""

from __future__ import annotations

import datetime as dt
import random
import re
from decimal import Decimal as D

import dagster as dg
import pytest
from sqlalchemy import text

from calibr_pipeline.definitions import build_definitions
from calibr_pipeline.defs.resources import WarehouseResource
from calibr_pipeline.services.trends import compute_trends, copy_trend_flags
from calibr_pipeline.warehouse.catalog_store import upsert_catalog
from calibr_pipeline.warehouse.engine import get_engine, session_scope, upgrade_to_head
from calibr_pipeline.warehouse.models import (
    Competitor,
    CompetitorListing,
    CompetitorPriceObservation,
    NormalizedPriceSnapshot,
    SalesOrder,
    SalesOrderLine,
    Variant,
)
from calibr_pipeline.warehouse.tenancy import get_or_create_project, get_or_create_tenant, upsert_shop
from calibr_pipeline_tests.conftest import _fresh_postgres_database, variant

pytestmark = pytest.mark.integration

DAY0 = dt.date(2026, 3, 1)
DAYS = 20


def _walk() -> list:
    rng = random.Random(7)
    price, out = 100.0, []
    for i in range(DAYS):
        price = round(price * (1 + rng.uniform(-0.04, 0.05)), 2)
        out.append(None if i in (3, 11, 12) else f"{price:.2f}")
    return out


SERIES = {  # (sku, competitor): [(amount or None or "gap", availability)] per day
    ("A", "R1"): [(f"{100 + i}.00", "in_stock") for i in range(DAYS)],
    ("A", "R2"): [("100.00" if i < 10 else "90.00", "in_stock") for i in range(DAYS)],
    ("B", "R1"): [("110.00", "in_stock") if i < 10 else (("95.00", "90.00", "95.00", "90.00", "92.50")[i % 5], "in_stock") for i in range(DAYS)],
    ("B", "R2"): [("gap", None) if i == 8 else ("100.00", "out_of_stock" if i >= DAYS - 3 else "in_stock") for i in range(DAYS)],
    ("C", "R1"): [(None if i == 6 else ("500.00" if i == 4 else ("100.00", "101.00", "99.00")[i % 3]), "in_stock") for i in range(DAYS)],
    ("C", "R2"): [("99.99" if i < 9 else "104.99", "in_stock") for i in range(DAYS)],
    ("D", "R1"): [("gap", None) if p is None else (p, "InStock") for p in _walk()],
}


def _seed(url: str) -> int:
    with session_scope(url) as session:
        tenant = get_or_create_tenant(session, "trends")
        project = get_or_create_project(session, tenant, "trend-store", currency="USD")
        shop = upsert_shop(session, project, "main", platform="csv", currency="USD")
        upsert_catalog(session, shop, [variant(s, "100.00", cost="6.00") for s in "ABCD"])
        session.flush()
        ids = {v.sku: v.id for v in session.query(Variant).filter(Variant.project_id == project.id)}
        rivals = {}
        for name in ("R1", "R2"):
            rivals[name] = Competitor(project_id=project.id, name=name, domain=f"{name.lower()}.example", currency="USD")
            session.add(rivals[name])
        session.flush()
        common = {"tenant_id": tenant.id, "project_id": project.id}
        for (sku, rival), points in SERIES.items():
            listing = CompetitorListing(project_id=project.id, competitor_id=rivals[rival].id, variant_id=ids[sku],
                                        url=f"https://{rival.lower()}.example/{sku}", page_kind="html", match_type="exact")
            session.add(listing)
            session.flush()
            for i, (amount, availability) in enumerate(points):
                if amount == "gap":
                    continue
                day = DAY0 + dt.timedelta(days=i)
                at = dt.datetime.combine(day, dt.time(5), dt.UTC)
                obs = CompetitorPriceObservation(listing_id=listing.id, observation_date=day, url=listing.url, status="ok",
                                                 amount=None if amount is None else D(amount), currency="USD", fetched_at=at, **common)
                session.add(obs)
                session.flush()
                session.add(NormalizedPriceSnapshot(
                    listing_id=listing.id, competitor_id=rivals[rival].id, variant_id=ids[sku], observation_id=obs.id, snapshot_date=day,
                    amount=D(amount or "0"), currency="USD", availability=availability, project_currency="USD", fx_rate=D(1),
                    amount_in_project_currency=None if amount is None else D(amount), observed_at=at, **common))
        for i in range(DAYS):
            day = DAY0 + dt.timedelta(days=i)
            at = dt.datetime.combine(day, dt.time(12), dt.UTC)
            price = D("10.00") if i < 7 else D("9.00")
            session.add(SalesOrder(shop_id=shop.id, external_id=f"O{i}", channel="shopify", name=f"O{i}", order_day=day, created_at=at,
                                   updated_at=at, cancelled_at=None, currency="USD", test=False, source_name="web", synced_day=day, **common))
            session.add(SalesOrderLine(shop_id=shop.id, external_id=f"L{i}", order_external_id=f"O{i}", channel="shopify", order_day=day,
                                       variant_id=ids["A"], variant_external_id="v-A", sku="A", quantity=1, original_unit_price=price,
                                       discounted_unit_price=price, currency="USD", **common))
        return tenant.id


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def built(request, tmp_path_factory):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('trends') / 'warehouse.db'}"
        drop = lambda: get_engine(url).dispose()  # noqa: E731
    else:
        url, drop = _fresh_postgres_database(request.getfixturevalue("postgres_admin_url"))
    upgrade_to_head(url)
    tenant_id = _seed(url)
    defs = build_definitions(warehouse=WarehouseResource(url=url))
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("analytics_models").execute_in_process(instance=instance, raise_on_error=False)
    assert result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations() if e.asset_key == dg.AssetKey("trend_flags")}
    assert checks and all(checks.values()), checks
    yield url, tenant_id
    drop()


def _flags(url: str, tenant_id: int, as_of: dt.date, compute) -> list[tuple]:
    with session_scope(url) as session:
        compute(session, tenant_id, as_of)
    with session_scope(url) as session:
        return [tuple(r) for r in session.execute(text(
            "SELECT position, project_id, variant_id, sku, competitor_id, listing_id, flag, direction, window_days, size_pct, statistic, "
            "explanation FROM competitor_trends WHERE tenant_id = :t AND as_of_day = :d ORDER BY position"), {"t": tenant_id, "d": as_of})]


NUMBER = re.compile(r"[-+]?\d+\.\d+")


def _same(sql: tuple, ref: tuple) -> bool:
    """Equal, except that a rounded figure may differ by one unit of its last digit: SQL rounds
    a half up (SQLite's printf/round, PostgreSQL's NUMERIC), Python to even on the binary value,
    and sums of doubles may differ in the last bit."""
    if sql[:9] != ref[:9]:
        return False
    if abs(sql[9] - ref[9]) > 0.0100001 or (sql[10] is None) != (ref[10] is None):
        return False
    if sql[10] is not None and abs(sql[10] - ref[10]) > 0.0100001:
        return False
    a, b = NUMBER.findall(sql[11]), NUMBER.findall(ref[11])
    if NUMBER.sub("#", sql[11]) != NUMBER.sub("#", ref[11]) or len(a) != len(b):
        return False
    return all(abs(float(x) - float(y)) <= 10 ** -len(y.split(".")[1]) * 1.0001 for x, y in zip(a, b))


def test_sql_flags_equal_the_reference_for_every_as_of_day(built):
    url, tenant_id = built
    seen, compared, exact = set(), 0, 0
    for offset in range(-2, DAYS + 15):
        as_of = DAY0 + dt.timedelta(days=offset)
        reference = _flags(url, tenant_id, as_of, compute_trends)
        sql = _flags(url, tenant_id, as_of, copy_trend_flags)
        assert len(sql) == len(reference) and all(_same(a, b) for a, b in zip(sql, reference)), (
            f"as of {as_of}:\nSQL:       {sql}\nreference: {reference}")
        seen |= {r[6] for r in sql}
        compared += len(sql)
        exact += sum(a == b for a, b in zip(sql, reference))
    assert seen == {"sustained_move", "level_shift", "undercutting_streak", "out_of_stock", "margin_erosion"}
    print(f"{compared} flags compared, {exact} identical")
    assert compared > 100 and exact >= 0.95 * compared, (compared, exact)  # rounding ties are rare


def test_the_step_is_flagged_with_an_infinite_t_and_the_hand_computed_size(built):
    url, tenant_id = built
    rows = _flags(url, tenant_id, DAY0 + dt.timedelta(days=19), copy_trend_flags)
    (shift,) = [r for r in rows if r[6] == "level_shift" and r[3] == "A" and r[10] is None]
    # 4 days at 100.00 then 10 at 90.00: median 90, shift -10 / 90 = -11.11 %
    assert (shift[7], shift[8], shift[9]) == ("down", 14, pytest.approx(-11.11))
    assert shift[11] == "price level shifted down 11.1% after 4 of 14 observed days in a 14-day window (Welch t = ∞)"

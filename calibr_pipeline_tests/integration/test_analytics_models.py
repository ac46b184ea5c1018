"""The dbt analytics models on a hand-computed fixture, to the cent, on SQLite and PostgreSQL.

One ``dbt build`` (through the Dagster asset, with its tests as asset checks) per backend;
every assertion below reads the tables that build produced.

Fixture (USD, costs A 6.00, B 12.50, C unknown):

* audited writes: A 10.00 -> 9.00 on 03-03, A 9.00 -> 11.00 on 03-05; B and C never written;
* orders: 03-01 A×2 at 10.00 and B×1 at 20.00 discounted to 18.00 (one order);
  03-03 A×3 at 9.00, and C×1 at 5.00 (two orders); 03-05 B×2 at 20.00, one unit refunded
  (20.00) on 03-06; one cancelled order on 03-05 that must not count;
* market positions 03-05: A 11.00 vs median 10.00 (index 1.1, highest), B 20.00 vs
  median 25.00 (index 0.8, lowest);
* rule runs: one APPLIED on 03-03, one FAILED on 03-05.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal as D

import dagster as dg
import pytest
from sqlalchemy import text

from calibr_pipeline.definitions import build_definitions
from calibr_pipeline.defs.resources import WarehouseResource
from calibr_pipeline.warehouse.catalog_store import upsert_catalog
from calibr_pipeline.warehouse.engine import get_engine, session_scope, upgrade_to_head
from calibr_pipeline.warehouse.models import (
    MarketPosition,
    PriceAudit,
    RuleRun,
    RuleTarget,
    SalesOrder,
    SalesOrderLine,
    SalesRefundLine,
    Variant,
)
from calibr_pipeline.warehouse.tenancy import get_or_create_project, get_or_create_tenant, upsert_shop
from calibr_pipeline_tests.conftest import _fresh_postgres_database, variant
from calibr_pipeline_tests.connectors.test_alerts import receiver, smtp_server  # noqa: F401  (loopback fixtures)

pytestmark = pytest.mark.integration

UTC = dt.UTC


def at(day: str, hour: int = 12) -> dt.datetime:
    return dt.datetime.fromisoformat(f"{day}T{hour:02d}:00:00+00:00")


def _seed(url: str) -> None:
    with session_scope(url) as session:
        tenant = get_or_create_tenant(session, "fixture")
        project = get_or_create_project(session, tenant, "fixture-store", currency="USD")
        shop = upsert_shop(session, project, "main", platform="csv", currency="USD")
        upsert_catalog(session, shop, [variant("A", "11.00", cost="6.00"), variant("B", "20.00", cost="12.50"), variant("C", "5.00", product="p2")])
        session.flush()
        ids = {v.sku: v.id for v in session.query(Variant).filter(Variant.project_id == project.id)}
        session.query(Variant).filter(Variant.sku == "C").update({"cost": None})
        common = {"tenant_id": tenant.id, "project_id": project.id}

        def run(state: str, day: str) -> str:
            run_id = str(uuid.uuid4())
            session.add(RuleRun(id=run_id, kind="apply", state=state, requested_by="test", correlation_id=run_id,
                                completed_at=at(day) if state != "FAILED" else None,
                                failed_at=at(day) if state == "FAILED" else None, **common))
            session.flush()
            return run_id

        def write(run_id: str, sku: str, old: str, new: str, day: str) -> None:
            target = RuleTarget(run_id=run_id, tenant_id=tenant.id, variant_id=ids[sku], sku=sku, product_external_id="p",
                                variant_external_id=f"v-{sku}", currency="USD", from_price=D(old), to_price=D(new), action="write",
                                proposal_status="change", idempotency_key=f"{run_id}:{sku}", explain={})
            session.add(target)
            session.flush()
            session.add(PriceAudit(run_id=run_id, target_id=target.id, variant_id=ids[sku], sku=sku, event_type="price.applied",
                                   actor="test", from_price=D(old), to_price=D(new), currency="USD", correlation_id=run_id,
                                   idempotency_key=f"audit:{run_id}:{sku}", created_at=at(day, 9), **common))

        applied = run("APPLIED", "2026-03-03")
        write(applied, "A", "10.00", "9.00", "2026-03-03")
        write(run("APPLIED", "2026-03-05"), "A", "9.00", "11.00", "2026-03-05")
        run("FAILED", "2026-03-05")

        def order(oid: str, day: str, lines: list[tuple], *, cancelled: bool = False) -> None:
            session.add(SalesOrder(shop_id=shop.id, external_id=oid, channel="shopify", name=oid, order_day=dt.date.fromisoformat(day),
                                   created_at=at(day), updated_at=at(day), cancelled_at=at(day, 13) if cancelled else None,
                                   currency="USD", test=False, source_name="web", synced_day=dt.date.fromisoformat(day), **common))
            for lid, sku, qty, original, discounted in lines:
                session.add(SalesOrderLine(shop_id=shop.id, external_id=lid, order_external_id=oid, channel="shopify",
                                           order_day=dt.date.fromisoformat(day), variant_id=ids[sku], variant_external_id=f"v-{sku}",
                                           sku=sku, quantity=qty, original_unit_price=D(original), discounted_unit_price=D(discounted),
                                           currency="USD", **common))

        order("O1", "2026-03-01", [("L1", "A", 2, "10.00", "10.00"), ("L2", "B", 1, "20.00", "18.00")])
        order("O2", "2026-03-03", [("L3", "A", 3, "9.00", "9.00")])
        order("O3", "2026-03-03", [("L4", "C", 1, "5.00", "5.00")])
        order("O4", "2026-03-05", [("L5", "B", 2, "20.00", "20.00")])
        order("O5", "2026-03-05", [("L6", "A", 7, "11.00", "11.00")], cancelled=True)
        session.add(SalesRefundLine(shop_id=shop.id, refund_external_id="R1", line_external_id="L5", order_external_id="O4",
                                    refunded_at=at("2026-03-06"), refund_day=dt.date(2026, 3, 6), quantity=1, amount=D("20.00"),
                                    currency="USD", **common))
        for sku, ours, median, index, position in (("A", "11.00", "10.00", "1.1", "highest"), ("B", "20.00", "25.00", "0.8", "lowest")):
            session.add(MarketPosition(variant_id=ids[sku], position_date=dt.date(2026, 3, 5), our_price=D(ours), currency="USD",
                                       competitor_count=2, lowest_price=D(median), highest_price=D(median), median_price=D(median),
                                       position=position, price_index=D(index), **common))


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def built(request, tmp_path_factory):
    """The fixture seeded and the analytics models built once per backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('analytics') / 'warehouse.db'}"
        drop = lambda: get_engine(url).dispose()  # noqa: E731
    else:
        url, drop = _fresh_postgres_database(request.getfixturevalue("postgres_admin_url"))
    upgrade_to_head(url)
    _seed(url)
    defs = build_definitions(warehouse=WarehouseResource(url=url))
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("analytics_models").execute_in_process(instance=instance, raise_on_error=False)
    yield url, result
    drop()


def rows(url: str, sql: str) -> list[tuple]:
    with session_scope(url) as session:
        return [tuple(r) for r in session.execute(text(sql))]


def day(value) -> str:
    return value.isoformat() if isinstance(value, dt.date) else str(value)


def test_build_succeeds_and_every_dbt_test_is_a_passing_asset_check(built):
    _url, result = built
    assert result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert len(checks) >= 10 and all(checks.values()), checks
    assert {"margin_is_revenue_minus_cost", "omnibus_low_is_a_past_price"} <= set(checks)


def test_sales_daily_to_the_cent(built):
    url, _ = built
    got = {
        (r[0], day(r[1])): r[2:]
        for r in rows(url, "SELECT sku, day, units, refunded_units, net_units, gross_minor, discounts_minor, refunds_minor, "
                           "revenue_minor, cost_minor, margin_minor FROM sales_daily")
    }
    assert got == {
        ("A", "2026-03-01"): (2, 0, 2, 2000, 0, 0, 2000, 1200, 800),
        ("B", "2026-03-01"): (1, 0, 1, 2000, 200, 0, 1800, 1250, 550),
        ("A", "2026-03-03"): (3, 0, 3, 2700, 0, 0, 2700, 1800, 900),
        ("C", "2026-03-03"): (1, 0, 1, 500, 0, 0, 500, None, None),
        ("B", "2026-03-05"): (2, 1, 1, 4000, 0, 2000, 2000, 1250, 750),
    }


def test_overview_revenue_margin_price_index_changes_and_runs(built):
    url, _ = built
    got = {
        day(r[0]): tuple(None if v is None else (float(v) if isinstance(v, D) else v) for v in r[1:])
        for r in rows(url, "SELECT day, orders, units, revenue_minor, cost_minor, margin_minor, margin_pct, price_index, "
                           "share_lowest_pct, share_middle_pct, share_highest_pct, price_changes, runs_applied, runs_failed "
                           "FROM analytics_overview WHERE project_slug = 'fixture-store'")
    }
    assert got["2026-03-01"] == (1, 3, 3800, 2450, 1350, 35.53, None, None, None, None, 0, 0, 0)
    assert got["2026-03-02"] == (0, 0, 0, None, None, None, None, None, None, None, 0, 0, 0)
    # C has no cost: margin % is over the SKUs with a known cost (900 / 2700).
    assert got["2026-03-03"] == (2, 4, 3200, 1800, 900, 33.33, None, None, None, None, 1, 1, 0)
    assert got["2026-03-05"] == (1, 1, 2000, 1250, 750, 37.5, 0.95, 50.0, 0.0, 50.0, 1, 1, 1)
    assert sorted(got) == [f"2026-03-0{d}" for d in range(1, 7)]


def test_price_history_and_the_omnibus_30_day_low(built):
    url, _ = built
    got = {
        (r[0], day(r[1])): r[2:]
        for r in rows(url, "SELECT sku, day, price_minor, source, changed, omnibus_low_30d_minor FROM price_history")
    }
    assert [got["A", f"2026-03-0{d}"] for d in range(1, 7)] == [
        (1000, "audit", 0, None),  # before the first write: that write's from_price
        (1000, "audit", 0, 1000),
        (900, "audit", 1, 1000),
        (900, "audit", 0, 900),
        (1100, "audit", 1, 900),  # the lowest of the 30 days before is 9.00
        (1100, "audit", 0, 900),
    ]
    assert {got["B", f"2026-03-0{d}"] for d in range(2, 7)} == {(2000, "catalog", 0, 2000)}


def test_price_change_frequency_and_top_skus(built):
    url, _ = built
    (ours,) = rows(url, "SELECT week_start, change_count, mean_abs_change_minor, stddev_change_minor FROM price_change_frequency "
                        "WHERE actor = 'ours' AND sku = 'A'")
    assert (day(ours[0]), ours[1], float(ours[2]), float(ours[3])) == ("2026-03-02", 2, 150.0, 150.0)
    top = rows(url, "SELECT metric, rank, sku, value, previous_value FROM top_skus WHERE week_start = '2026-03-02' ORDER BY metric, rank")
    assert [r for r in top if r[0] == "revenue"] == [("revenue", 1, "A", 2700, 2000), ("revenue", 2, "B", 2000, 1800), ("revenue", 3, "C", 500, 0)]
    assert [r[2:4] for r in top if r[0] == "mover"] == [("A", 700), ("C", 500), ("B", 200)]
    assert [r[2:4] for r in top if r[0] == "margin"] == [("A", 900), ("B", 750)]


def test_trends_then_the_weekly_digest_rendered_stored_and_delivered(built, tmp_path, monkeypatch, receiver, smtp_server):
    from calibr_pipeline.defs.analytics.digest import WEEKLY_TENANT_PARTITIONS  # noqa: F401
    from calibr_pipeline.defs.partitions import TENANT_PARTITIONS, DayTenant
    from calibr_pipeline.defs.resources import AlertsResource

    url, _ = built
    monkeypatch.setenv("CALIBR_ALERT_SLACK_WEBHOOK_URL", receiver.url("/services/T/B/digest"))
    monkeypatch.setenv("CALIBR_ALERT_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("CALIBR_ALERT_SMTP_PORT", str(smtp_server.port))
    monkeypatch.setenv("CALIBR_ALERT_SMTP_FROM", "digest@calibrate.example")
    monkeypatch.setenv("CALIBR_ALERT_SMTP_TO", "owner@fixture.example")
    defs = build_definitions(warehouse=WarehouseResource(url=url), alerts=AlertsResource())
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(TENANT_PARTITIONS.name, ["fixture"])
        trends = defs.resolve_job_def("trend_detection").execute_in_process(
            instance=instance, partition_key=DayTenant(dt.date(2026, 3, 6), "fixture").key
        )
        assert trends.success
        run_config = {"ops": {"weekly_digest": {"config": {"directory": str(tmp_path)}}}}
        key = dg.MultiPartitionKey({"week": "2026-03-02", "tenant": "fixture"})
        first = defs.resolve_job_def("weekly_digest_delivery").execute_in_process(instance=instance, partition_key=key, run_config=run_config)
        assert first.success
        (materialization,) = first.asset_materializations_for_node("weekly_digest")
        markdown = materialization.metadata["digest"].value
        # Week 03-02..03-08 against 02-23..03-01: the fixture's exact figures.
        assert "| Revenue | 52.00 USD | 38.00 USD | +36.8% |" in markdown
        assert "| Gross margin | 16.50 USD | 13.50 USD | +22.2% |" in markdown
        assert "1. `A`: 27.00 USD" in markdown and "Rule runs: 2 applied, 0 partial, 1 failed." in markdown
        folder = tmp_path / "fixture" / "2026-03-02"
        files = {p.name for p in folder.iterdir()}
        assert files == {"digest.md", "revenue_margin.png", "price_index.png", "top_movers.png", "trend_flags.png"}
        assert all((folder / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for f in files if f.endswith(".png"))
        assert (folder / "digest.md").read_text() == markdown
        assert rows(url, "SELECT markdown FROM weekly_digests") == [(markdown,)]

        # Delivered: e-mail with the Markdown and the four charts attached, Slack summary with a link.
        (_sender, recipients, message) = smtp_server.messages[-1]
        assert recipients == ["owner@fixture.example"]
        attached = {part.get_filename(): part.get_content_type() for part in message.walk() if part.get_filename()}
        assert attached == {"digest.md": "text/markdown", **{n: "image/png" for n in files if n.endswith(".png")}}
        (slack,) = receiver.bodies("/services/T/B/digest")
        assert "revenue 52.00 USD (+36.8% w/w)" in slack["text"]
        assert any("Open the full report" in b["text"]["text"] for b in slack["blocks"] if b["type"] == "section")
        pngs = {f: (folder / f).read_bytes() for f in files}

        # Re-running the week rewrites identical files and row.
        again = defs.resolve_job_def("weekly_digest_delivery").execute_in_process(instance=instance, partition_key=key, run_config=run_config)
        assert again.success
        assert {f: (folder / f).read_bytes() for f in files} == pngs
        assert rows(url, "SELECT COUNT(*) FROM weekly_digests") == [(1,)]


def test_overview_api_is_tenant_scoped_exact_and_refuses_strangers(built):
    from dataclasses import dataclass

    from fastapi import FastAPI, Header, HTTPException
    from fastapi.testclient import TestClient

    from calibr_pipeline.api.analytics import build_router

    url, _ = built
    with session_scope(url) as session:
        fixture_id = session.execute(text("SELECT id FROM tenants WHERE slug = 'fixture'")).scalar()
        other = get_or_create_tenant(session, "other-tenant")
        get_or_create_project(session, other, "other-store", currency="EUR")
        session.flush()
        other_id = other.id

    @dataclass
    class Principal:
        tenant_id: int
        tenant_slug: str
        token_id: str
        scope: str

    tokens = {"fixture-token": Principal(fixture_id, "fixture", "t1", "read"), "other-token": Principal(other_id, "other-tenant", "t2", "read")}

    def require_read(authorization: str | None = Header(None)):
        principal = tokens.get((authorization or "").removeprefix("Bearer "))
        if principal is None:
            raise HTTPException(status_code=401, detail="missing or unknown token")
        return principal

    def require_write():  # never used by analytics
        raise HTTPException(status_code=403)

    app = FastAPI()
    app.include_router(build_router(require_read, require_write, warehouse_url=url))
    client = TestClient(app)
    path = "/api/v1/analytics/fixture-store/overview?from=2026-03-01&to=2026-03-06"

    assert client.get(path).status_code == 401
    assert client.get(path, headers={"Authorization": "Bearer forged"}).status_code == 401
    # Another tenant's token: the same 404 as a project that does not exist.
    assert client.get(path, headers={"Authorization": "Bearer other-token"}).status_code == 404
    assert client.get("/api/v1/analytics/nope/overview", headers={"Authorization": "Bearer fixture-token"}).status_code == 404
    hostile = client.get("/api/v1/analytics/x'%20OR%201=1--/overview", headers={"Authorization": "Bearer fixture-token"})
    assert hostile.status_code == 404
    bad_range = client.get("/api/v1/analytics/fixture-store/overview?from=2026-03-06&to=2026-03-01", headers={"Authorization": "Bearer fixture-token"})
    assert bad_range.status_code == 422

    answer = client.get(path, headers={"Authorization": "Bearer fixture-token"})
    assert answer.status_code == 200
    body = answer.json()
    assert body["currency"] == "USD" and body["models_built"] is True
    assert body["totals"] == {"orders": 4, "units": 8, "revenue": "90.00", "gross_margin": "30.00", "price_changes": 2}
    day5 = next(d for d in body["days"] if d["day"] == "2026-03-05")
    assert (day5["revenue"], day5["gross_margin"], day5["margin_pct"], day5["price_index"]) == ("20.00", "7.50", 37.5, 0.95)
    assert day5["runs"] == {"applied": 1, "partial": 0, "failed": 1}
    # The other tenant sees its own (empty) project, never the fixture's numbers.
    theirs = client.get("/api/v1/analytics/other-store/overview?from=2026-03-01&to=2026-03-06", headers={"Authorization": "Bearer other-token"})
    assert theirs.status_code == 200 and theirs.json()["days"] == [] and theirs.json()["totals"]["revenue"] == "0.00"


def test_analytics_gauges_on_metrics_exact(built):
    """`calibr serve` exports the project's revenue, margin %, price index and units of the last
    complete day (03-06, the latest before today) and of the 7 days ending on it (02-28..03-06)."""
    from calibr_pipeline.monitoring.server import MonitoringServer
    from calibr_pipeline_tests.monitoring.conftest import FRESH, scrape

    url, _ = built
    server = MonitoringServer(url, host="127.0.0.1", port=0, thresholds=FRESH).start()
    try:
        m = scrape(server.url)
    finally:
        server.stop()
    assert m.value("calibr_warehouse_up") == 1
    labels = {"tenant": "fixture", "project": "fixture-store"}
    # 03-06 sold nothing (the refund of 03-06 counts on the sale's day, 03-05).
    assert m.value("calibr_analytics_revenue", **labels, currency="USD", window="1d") == 0
    assert m.value("calibr_analytics_units", **labels, window="1d") == 0
    assert m.value("calibr_analytics_gross_margin_percent", **labels, window="1d") is None  # no revenue with a known cost
    assert m.value("calibr_analytics_price_index", **labels, window="1d") is None  # no market data that day
    # 7 days: 38.00 + 32.00 + 20.00; margin 30.00 over the 85.00 of SKUs with a cost (C has none); index of 03-05.
    assert m.value("calibr_analytics_revenue", **labels, currency="USD", window="7d") == 90.0
    assert m.value("calibr_analytics_units", **labels, window="7d") == 8
    assert m.value("calibr_analytics_gross_margin_percent", **labels, window="7d") == 35.29
    assert m.value("calibr_analytics_price_index", **labels, window="7d") == 0.95
    assert m.value("calibr_analytics_last_complete_day_timestamp_seconds", **labels) == dt.datetime(2026, 3, 6, tzinfo=UTC).timestamp()
    assert not any("fernet" in line or "password" in line for line in m.text.splitlines())

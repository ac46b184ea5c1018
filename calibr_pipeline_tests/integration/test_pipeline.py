"""The whole monitoring pipeline in-process against the sandbox, on SQLite and Postgres."""

import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest
from sqlalchemy import func, select

from calibr_pipeline.defs.competitors.sensors import competitor_added_sensor
from calibr_pipeline.defs.resources import ScraperResource, WarehouseResource
from calibr_pipeline.definitions import build_definitions
from calibr_pipeline.demo import register_sandbox_listings, run_job_for_day, seed_fx_rates, seed_tenant_shops
from calibr_pipeline.sandbox.runner import SandboxWorld, TenantSpec
from calibr_pipeline.warehouse.competitor_store import add_competitor_listing
from calibr_pipeline.warehouse.engine import session_scope
from calibr_pipeline.warehouse.models import (
    AlertDelivery,
    CompetitorListing,
    CompetitorPriceObservation,
    MarketPosition,
    NormalizedPriceSnapshot,
    Variant,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def world():
    with SandboxWorld([TenantSpec("shop-one", "USD", 24, n_competitors=3)], seed=11) as world:
        yield world



@pytest.fixture
def pipeline(world, warehouse_url, instance):
    """Warehouse seeded like the demo, catalog synced, listings registered."""
    defs = build_definitions(
        warehouse=WarehouseResource(url=warehouse_url),
        # Fast retries: the sandbox answers in milliseconds and faults are injected on purpose.
        scraper=ScraperResource(allowed_hosts=list(world.allowed_hosts), backoff_base_s=0.01, read_timeout_s=1.0),
    )
    seed_fx_rates(warehouse_url, world.today() - timedelta(days=1))
    seed_tenant_shops(warehouse_url, world)
    assert run_job_for_day(defs, instance, "catalog_sync", ["shop-one"], world.today()) == {"shop-one": True}
    registered = register_sandbox_listings(warehouse_url, world, "shop-one")
    assert registered.created == len(world.listings_for("shop-one")) > 20
    return defs


def _run(defs, instance, world, job="competitor_monitoring"):
    from calibr_pipeline.defs.partitions import DayTenant

    return defs.resolve_job_def(job).execute_in_process(
        instance=instance, partition_key=DayTenant(world.today(), "shop-one").key, raise_on_error=False
    )


def _check_results(result) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_full_pipeline_reads_every_price_right(pipeline, world, warehouse_url, instance):
    result = _run(pipeline, instance, world)
    assert result.success
    checks = _check_results(result)
    assert set(checks) == {"observation_error_rate", "listing_consecutive_failures", "snapshot_expectations", "snapshot_quarantine_rate"}
    assert all(c.passed for c in checks.values()), {k: c.description for k, c in checks.items()}

    expected = {l.url: l for l in world.listings_for("shop-one")}
    with session_scope(warehouse_url) as session:
        rows = session.execute(
            select(CompetitorListing.url, CompetitorPriceObservation)
            .join(CompetitorPriceObservation, CompetitorPriceObservation.listing_id == CompetitorListing.id)
        ).all()
        assert len(rows) == len(expected)
        for url, obs in rows:
            listing = expected[url]
            assert obs.status == "ok", (url, obs.error_class, obs.error_message)
            assert (obs.amount, obs.currency) == (listing.expected_amount, listing.expected_currency), url
            assert (obs.availability == "InStock") == listing.expected_available, url
        assert session.scalar(select(func.count()).select_from(NormalizedPriceSnapshot)) == len(expected)
        listed_skus = {l.our_sku for l in expected.values()}
        positions = session.execute(select(Variant.sku, MarketPosition.position).join(Variant, Variant.id == MarketPosition.variant_id)).all()
        assert {sku for sku, _ in positions} == listed_skus
        assert {p for _, p in positions} <= {"lowest", "middle", "highest", "no_data"}

    metadata = result.asset_materializations_for_node("competitor_price_observations")[0].metadata
    assert metadata["listings"].value == len(expected) and metadata["failed"].value == 0


def test_rerunning_a_partition_replaces_its_rows(pipeline, world, warehouse_url, instance):
    first = _run(pipeline, instance, world)
    second = _run(pipeline, instance, world)
    assert first.success and second.success
    with session_scope(warehouse_url) as session:
        runs = session.scalars(select(CompetitorPriceObservation.dagster_run_id).distinct()).all()
        assert runs == [second.run_id]
        assert session.scalar(select(func.count()).select_from(NormalizedPriceSnapshot)) == len(world.listings_for("shop-one"))


class _Receiver(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802 - stdlib name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook(monkeypatch):
    _Receiver.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("CALIBR_ALERT_WEBHOOK_URL", f"http://127.0.0.1:{server.server_port}/hook")
    yield _Receiver.received
    server.shutdown()


def test_a_failing_competitor_is_recorded_flagged_and_alerted(pipeline, world, warehouse_url, instance, webhook):
    broken = world.tenant("shop-one").competitors[1]
    world.faults.add(shop=broken.slug, path="*", error_rate=1.0, error_status=502)
    result = _run(pipeline, instance, world)
    assert result.success  # failures are data, not a crashed run

    broken_urls = {l.url for l in world.listings_for("shop-one") if l.competitor == broken.slug}
    with session_scope(warehouse_url) as session:
        failed = session.execute(
            select(CompetitorListing.url, CompetitorPriceObservation.error_class, CompetitorPriceObservation.attempts)
            .join(CompetitorPriceObservation, CompetitorPriceObservation.listing_id == CompetitorListing.id)
            .where(CompetitorPriceObservation.status == "error")
        ).all()
        assert {url for url, _, _ in failed} == broken_urls
        assert {(cls, attempts) for _, cls, attempts in failed} == {("http_5xx", 3)}
        deliveries = session.scalars(select(AlertDelivery)).all()

    check = _check_results(result)["observation_error_rate"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert check.metadata["by_error_class"].value == {"http_5xx": len(broken_urls)}
    assert any("error rate" in alert.get("title", "") for alert in webhook)
    assert any(d.destination.startswith("webhook") and d.ok for d in deliveries)


def test_competitor_added_event_scrapes_only_that_listing(pipeline, world, warehouse_url, instance):
    assert _run(pipeline, instance, world).success
    other = next(l for l in world.listings_for("shop-one") if l.kind != "shopify")
    with session_scope(warehouse_url) as session:
        sku = session.scalars(select(Variant.sku).order_by(Variant.sku)).first()
        added = add_competitor_listing(session, project_slug="shop-one", sku=sku, url=other.url + "?ref=new", actor="test")
    context = dg.build_sensor_context(instance=instance, resources={"warehouse": WarehouseResource(url=warehouse_url)})
    (request,) = competitor_added_sensor(context).run_requests
    result = pipeline.resolve_job_def("competitor_listing_scrape").execute_in_process(
        instance=instance, partition_key=request.partition_key, run_config=request.run_config, tags=request.tags
    )
    assert result.success
    with session_scope(warehouse_url) as session:
        by_run = dict(
            session.execute(
                select(CompetitorPriceObservation.dagster_run_id, func.count()).group_by(CompetitorPriceObservation.dagster_run_id)
            ).all()
        )
        new_obs = session.scalar(select(CompetitorPriceObservation).where(CompetitorPriceObservation.listing_id == added.listing_id))
    assert by_run[result.run_id] == 1 and new_obs.status == "ok" and new_obs.amount == other.expected_amount
    assert sum(by_run.values()) == len(world.listings_for("shop-one")) + 1

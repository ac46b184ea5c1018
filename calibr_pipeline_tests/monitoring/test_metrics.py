"""/metrics over a warehouse seeded with the models, on SQLite and Postgres."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select, text

from calibr_pipeline.monitoring.connector_stats import (
    Aggregate,
    connector_request_stats,
    record,
)
from calibr_pipeline.warehouse.engine import get_engine, session_scope
from calibr_pipeline.warehouse.models import (
    Competitor,
    CompetitorListing,
    CompetitorPriceObservation,
    DeadLetter,
    OutboxDeadLetter,
    OutboxEvent,
    ProbeResult,
    Project,
    RuleRun,
    RuleRunMetrics,
    RuleTarget,
    Variant,
)
from calibr_pipeline.warehouse.tenancy import (
    get_or_create_project,
    get_or_create_tenant,
)
from calibr_pipeline.warehouse.types import utcnow

from .conftest import scrape

pytestmark = pytest.mark.integration


def _run(session, tenant_id, project_id, state, *, finished_ago=None, failed=False, duration=None, throttled=0):
    now = utcnow()
    run = RuleRun(
        id=str(uuid.uuid4()), tenant_id=tenant_id, project_id=project_id, kind="apply", state=state,
        requested_by="test", correlation_id=uuid.uuid4().hex, queued_at=now - timedelta(days=3),
    )
    if finished_ago is not None:
        run.started_at = now - finished_ago - timedelta(seconds=float(duration or 1))
        if failed:
            run.failed_at = now - finished_ago
        else:
            run.completed_at = now - finished_ago
    session.add(run)
    session.flush()
    if duration is not None or throttled:
        session.add(RuleRunMetrics(
            run_id=run.id, tenant_id=tenant_id, state=state, targets_total=0, targets_write=0, targets_pending=0,
            targets_applying=0, targets_applied=0, targets_failed=0, success_rate=None,
            duration_seconds=None if duration is None else Decimal(str(duration)), dlq_size=0,
            throttled_count=throttled, retry_count=0, write_requests=0,
        ))
    return run


def _target(session, run, variant, state, *, action="write"):
    target = RuleTarget(
        run_id=run.id, tenant_id=run.tenant_id, variant_id=variant.id, sku=variant.sku,
        product_external_id="gid://shopify/Product/p", variant_external_id=variant.external_id, currency="USD",
        from_price=Decimal(10), to_price=Decimal(11), action=action,
        proposal_status="change" if action == "write" else "unchanged", state=state if action == "write" else None,
        idempotency_key=f"{run.id}:{variant.id}", explain={},
    )
    session.add(target)
    session.flush()
    return target


def _observation(session, listing, *, ago, status="ok", http_status=200, error_class=None, elapsed_ms=100, attempts=1):
    fetched = utcnow() - ago
    session.add(CompetitorPriceObservation(
        tenant_id=listing._tenant_id, project_id=listing.project_id, listing_id=listing.id, observation_date=fetched.date(),
        url=listing.url, status=status, http_status=http_status, error_class=error_class,
        amount=Decimal("9.99") if status == "ok" else None, currency="USD" if status == "ok" else None,
        attempts=attempts, elapsed_ms=elapsed_ms, fetched_at=fetched,
    ))


@pytest.fixture
def monitored(seeded):
    """The seeded tenant with runs, targets, dead letters, observations, outbox rows and probes."""
    url, tenant_id = seeded
    now = utcnow()
    with session_scope(url) as session:
        project = session.scalar(select(Project).where(Project.slug == "acme-store"))
        other = get_or_create_tenant(session, "globex")
        get_or_create_project(session, other, "globex-store", currency="EUR")
        a, b, c = (session.scalar(select(Variant).where(Variant.project_id == project.id, Variant.sku == s)) for s in "ABC")

        partial = _run(session, tenant_id, project.id, "PARTIAL", finished_ago=timedelta(hours=1), duration=12.5, throttled=3)
        _target(session, partial, a, "APPLIED")
        _target(session, partial, b, "APPLIED")
        failed_c = _target(session, partial, c, "FAILED")
        session.add(DeadLetter(tenant_id=tenant_id, run_id=partial.id, target_id=failed_c.id, error_type="http_5xx", attempts=3))
        old = _run(session, tenant_id, project.id, "APPLIED", finished_ago=timedelta(days=2), duration=45, throttled=2)
        _target(session, old, a, "APPLIED")
        queued = _run(session, tenant_id, project.id, "QUEUED")
        _target(session, queued, a, "PENDING")
        _target(session, queued, b, None, action="skip")
        failed = _run(session, tenant_id, project.id, "FAILED", finished_ago=timedelta(minutes=30), failed=True, duration=0.5)
        failed_t = _target(session, failed, c, "FAILED")
        session.add(DeadLetter(tenant_id=tenant_id, run_id=failed.id, target_id=failed_t.id, error_type="http_4xx",
                               attempts=1, resolved_at=now, resolution="manual"))

        competitor = Competitor(project_id=project.id, name="Rival", domain="rival.example", currency="USD")
        session.add(competitor)
        session.flush()
        listings = []
        for variant, active in ((a, True), (b, True), (c, False)):
            listing = CompetitorListing(project_id=project.id, competitor_id=competitor.id, variant_id=variant.id,
                                        url=f"https://rival.example/p/{variant.sku}", page_kind="html", match_type="exact", active=active)
            session.add(listing)
            session.flush()
            listing._tenant_id = tenant_id
            listings.append(listing)
        l1, l2, l3 = listings
        _observation(session, l1, ago=timedelta(days=3), elapsed_ms=120)
        _observation(session, l1, ago=timedelta(days=2), status="error", http_status=503, error_class="http_5xx", elapsed_ms=2500, attempts=3)
        _observation(session, l1, ago=timedelta(days=1), status="error", http_status=None, error_class="timeout", elapsed_ms=10000, attempts=3)
        _observation(session, l2, ago=timedelta(days=5), status="error", http_status=None, error_class="blocked_url", elapsed_ms=0, attempts=0)
        _observation(session, l2, ago=timedelta(days=2), status="error", http_status=404, error_class="http_4xx", elapsed_ms=400)
        _observation(session, l2, ago=timedelta(days=1), elapsed_ms=300)
        _observation(session, l3, ago=timedelta(days=1), status="error", http_status=429, error_class="rate_limited", elapsed_ms=1500, attempts=3)

        session.add_all([
            OutboxEvent(tenant_id=tenant_id, event_type="competitor.listing.added", payload={}, created_at=now - timedelta(minutes=10)),
            OutboxEvent(tenant_id=tenant_id, event_type="competitor.listing.added", payload={}, created_at=now - timedelta(minutes=5)),
            OutboxEvent(tenant_id=tenant_id, event_type="competitor.listing.added", payload={}, created_at=now - timedelta(hours=2),
                        dispatched_at=now - timedelta(hours=2), dispatched_run_key="k1"),
            OutboxEvent(tenant_id=tenant_id, event_type="automation.run.requested", payload={}, created_at=now - timedelta(hours=1),
                        dispatched_at=now - timedelta(hours=1), dispatched_run_key="k2"),
            OutboxDeadLetter(outbox_id=str(uuid.uuid4()), event_type="automation.run.requested", payload={}, reason="bad payload"),
        ])
    return url, tenant_id


def test_metrics_from_seeded_warehouse(monitored, start_server):
    url, _ = monitored
    server = start_server(url)
    m = scrape(server.url)

    assert m.value("calibr_warehouse_up") == 1
    assert m.labelled("calibr_rule_runs", "state") == {"PARTIAL": 1, "APPLIED": 1, "QUEUED": 1, "FAILED": 1}
    assert m.value("calibr_rule_runs", tenant="acme", state="PARTIAL") == 1

    # finished runs with a duration: 12.5 s, 45 s, 0.5 s
    assert m.value("calibr_rule_run_duration_seconds_count", tenant="acme") == 3
    assert m.value("calibr_rule_run_duration_seconds_sum", tenant="acme") == pytest.approx(58.0)
    assert m.value("calibr_rule_run_duration_seconds_bucket", tenant="acme", le="1.0") == 1
    assert m.value("calibr_rule_run_duration_seconds_bucket", tenant="acme", le="10.0") == 1
    assert m.value("calibr_rule_run_duration_seconds_bucket", tenant="acme", le="20.0") == 2
    assert m.value("calibr_rule_run_duration_seconds_bucket", tenant="acme", le="60.0") == 3
    assert m.value("calibr_rule_run_duration_seconds_bucket", tenant="acme", le="+Inf") == 3

    # last 24 h: the PARTIAL run (2 of 3 applied) and the FAILED one (0 of 1); the 2-day-old run is out
    assert m.value("calibr_rule_apply_success_ratio", tenant="acme") == pytest.approx(0.5)
    assert m.value("calibr_rule_apply_success_ratio", tenant="globex") is None

    assert m.labelled("calibr_rule_targets", "state") == {"APPLIED": 3, "FAILED": 2, "PENDING": 1}
    assert m.value("calibr_dlq_size", tenant="acme", project="acme-store") == 1
    assert m.value("calibr_dlq_size", tenant="globex", project="globex-store") == 0

    scrapes = m.series("calibr_competitor_scrapes_total")
    assert {tuple(sorted(k)): v for k, v in scrapes.items()} == {
        (("error_class", ""), ("outcome", "ok"), ("tenant", "acme")): 2,
        (("error_class", "http_5xx"), ("outcome", "error"), ("tenant", "acme")): 1,
        (("error_class", "timeout"), ("outcome", "error"), ("tenant", "acme")): 1,
        (("error_class", "http_4xx"), ("outcome", "error"), ("tenant", "acme")): 1,
        (("error_class", "blocked_url"), ("outcome", "error"), ("tenant", "acme")): 1,
        (("error_class", "rate_limited"), ("outcome", "error"), ("tenant", "acme")): 1,
    }
    assert m.families["calibr_competitor_scrapes"].type == "counter"
    # listing 1 failed twice since its last success; listing 2 recovered; listing 3 is inactive
    failures = m.series("calibr_competitor_listing_consecutive_failures")
    assert len(failures) == 1 and list(failures.values()) == [2]
    assert dict(next(iter(failures)))["tenant"] == "acme"

    # storefront, derived from observations: one request per fetch that sent one
    assert m.labelled("calibr_connector_requests_total", "status") == {"2xx": 2, "5xx": 1, "error": 1, "4xx": 1, "429": 1}
    assert m.value("calibr_connector_request_duration_seconds_count", connector="storefront") == 6
    assert m.value("calibr_connector_request_duration_seconds_sum", connector="storefront") == pytest.approx(14.82)
    assert m.value("calibr_connector_request_duration_seconds_bucket", connector="storefront", le="0.25") == 1
    assert m.value("calibr_connector_request_duration_seconds_bucket", connector="storefront", le="0.5") == 3
    assert m.value("calibr_connector_request_duration_seconds_bucket", connector="storefront", le="2.5") == 5
    assert m.value("calibr_connector_request_duration_seconds_bucket", connector="storefront", le="10.0") == 6

    assert m.value("calibr_shopify_throttled_total", tenant="acme") == 5
    assert m.series("calibr_shopify_rate_limited_total") == {}  # nothing recorded yet

    assert m.value("calibr_outbox_backlog", event_type="competitor.listing.added") == 2
    assert m.value("calibr_outbox_backlog", event_type="automation.run.requested") == 0
    age = m.value("calibr_outbox_oldest_pending_age_seconds", event_type="competitor.listing.added")
    assert 600 <= age < 900
    assert m.value("calibr_outbox_oldest_pending_age_seconds", event_type="automation.run.requested") == 0

    assert m.series("calibr_probe_success") == {}  # no probe recorded yet
    assert m.value("calibr_warehouse_query_duration_seconds_count") >= 1
    # no Dagster instance given: its families are absent
    assert "calibr_dagster_queued_runs" not in m.families


def test_recorded_connector_stats_and_probe_results(monitored, start_server):
    url, tenant_id = monitored
    engine = get_engine(url)
    connector_request_stats.create(engine, checkfirst=True)
    with engine.begin() as connection:
        record(connection, "shopify_admin", "2xx", Aggregate.of([0.2, 0.3, 1.2]), tenant_id=tenant_id, dagster_run_id="r1")
        record(connection, "shopify_admin", "429", Aggregate.of([0.1]), tenant_id=tenant_id, dagster_run_id="r1")
        record(connection, "shopify_admin", "throttled", Aggregate.of([0.1, 0.1]), tenant_id=tenant_id, dagster_run_id="r1")
    with session_scope(url) as session:  # as the synthetic probe job records them
        now = utcnow()
        for target, ok, latency_ms, ago in [("calibr_health", False, 3000, 120), ("calibr_health", True, 250, 60), ("dagster_webserver", False, 5000, 30)]:
            session.add(ProbeResult(target=target, url=f"http://127.0.0.1/{target}", ok=ok, status_code=200 if ok else None,
                                    latency_ms=latency_ms, error=None if ok else "timeout", probed_at=now - timedelta(seconds=ago)))
    server = start_server(url)
    m = scrape(server.url)
    assert m.value("calibr_warehouse_up") == 1
    assert m.value("calibr_connector_requests_total", connector="shopify_admin", status="2xx") == 3
    assert m.value("calibr_connector_requests_total", connector="shopify_admin", status="429") == 1
    assert m.value("calibr_connector_requests_total", connector="shopify_admin", status="throttled") == 2
    assert m.value("calibr_connector_request_duration_seconds_count", connector="shopify_admin") == 6
    assert m.value("calibr_connector_request_duration_seconds_sum", connector="shopify_admin") == pytest.approx(2.0)
    assert m.value("calibr_connector_request_duration_seconds_bucket", connector="shopify_admin", le="0.25") == 4
    assert m.value("calibr_connector_request_duration_seconds_bucket", connector="shopify_admin", le="1.0") == 5
    assert m.value("calibr_connector_request_duration_seconds_bucket", connector="shopify_admin", le="2.5") == 6
    # storefront has no recorded rows: still derived from the observations
    assert m.value("calibr_connector_requests_total", connector="storefront", status="2xx") == 2
    assert m.value("calibr_shopify_rate_limited_total", tenant="acme") == 1

    assert m.labelled("calibr_probe_success", "target") == {"calibr_health": 1, "dagster_webserver": 0}
    assert m.labelled("calibr_probe_duration_seconds", "target") == {"calibr_health": 0.25, "dagster_webserver": 5.0}


def test_a_failing_section_leaves_the_others(seeded, start_server):
    url, _ = seeded
    engine = get_engine(url)
    with engine.begin() as connection:  # views may read it (Postgres refuses without CASCADE)
        connection.execute(text("DROP TABLE rule_run_metrics" + (" CASCADE" if engine.dialect.name == "postgresql" else "")))
    server = start_server(url)
    m = scrape(server.url)
    assert m.value("calibr_warehouse_up") == 0
    assert "calibr_rule_runs" not in m.families  # the pricing section failed as a whole
    assert m.value("calibr_dlq_size", tenant="acme", project="acme-store") == 0  # later sections still report
    assert "calibr_outbox_backlog" in m.families


def test_missing_or_unrecognised_probe_table_is_skipped(sqlite_warehouse_url, start_server):
    url = sqlite_warehouse_url
    with get_engine(url).begin() as connection:
        connection.execute(text("DROP TABLE probe_results"))
    m = scrape(start_server(url).url)
    assert m.value("calibr_warehouse_up") == 1 and "calibr_probe_success" not in m.families
    with get_engine(url).begin() as connection:
        connection.execute(text("CREATE TABLE probe_results (id INTEGER PRIMARY KEY, something VARCHAR(20))"))
    m = scrape(start_server(url).url)
    assert m.value("calibr_warehouse_up") == 1
    assert "calibr_probe_success" not in m.families

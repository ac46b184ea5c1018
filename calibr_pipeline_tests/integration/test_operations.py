"""Synthetic probes, the SLA report and run-failure alerts, with real loopback servers."""

import json
import socket
import threading
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest
from sqlalchemy import select

from calibr_pipeline.definitions import build_definitions
from calibr_pipeline.defs.operations.definitions import run_failure_alerts
from calibr_pipeline.defs.resources import AlertsResource, WarehouseResource
from calibr_pipeline.warehouse.engine import session_scope
from calibr_pipeline.warehouse.models import AlertDelivery, ProbeResult, SlaReport

pytestmark = pytest.mark.integration


class _Handler(BaseHTTPRequestHandler):
    posts: list = []

    def do_GET(self):  # noqa: N802
        self.send_response(200 if self.path == "/health" else 503)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def do_POST(self):  # noqa: N802
        type(self).posts.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    _Handler.posts = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_probes_are_recorded_and_summed_into_the_monthly_sla(server, warehouse_url, instance, monkeypatch):
    monkeypatch.setenv(
        "CALIBR_PROBE_TARGETS", f"health={server}/health,broken={server}/nope,down=http://127.0.0.1:{_dead_port()}/health"
    )
    defs = build_definitions(warehouse=WarehouseResource(url=warehouse_url))
    result = defs.resolve_job_def("synthetic_probes").execute_in_process(instance=instance, run_config={"ops": {"run_probes": {"config": {"timeout_s": 2}}}})
    assert result.success
    with session_scope(warehouse_url) as session:
        rows = {r.target: r for r in session.scalars(select(ProbeResult))}
        assert (rows["health"].ok, rows["health"].status_code) == (True, 200)
        assert (rows["broken"].ok, rows["broken"].error) == (False, "HTTP 503")
        assert rows["down"].ok is False and "ConnectionError" in rows["down"].error
        # A month of history for the SLA: one failure in 1,000 probes of "health" meets 99.9 %.
        start = datetime(2026, 10, 1, tzinfo=timezone.utc)
        for i in range(1000):
            session.add(ProbeResult(target="history", url="x", ok=i != 500, probed_at=start + timedelta(minutes=5 * i)))
            session.add(ProbeResult(target="flaky", url="x", ok=i % 100 != 0, probed_at=start + timedelta(minutes=5 * i)))
    sla = defs.resolve_job_def("sla_monthly").execute_in_process(instance=instance, partition_key="2026-10-01")
    assert sla.success
    with session_scope(warehouse_url) as session:
        reports = {r.target: r for r in session.scalars(select(SlaReport).where(SlaReport.month == datetime(2026, 10, 1).date()))}
    assert (reports["history"].uptime_pct, reports["history"].met, reports["history"].longest_outage_minutes) == (Decimal("99.9"), True, 5)
    assert (reports["flaky"].uptime_pct, reports["flaky"].met) == (Decimal("99"), False)


def test_a_failed_run_is_alerted_through_the_alerts_resource(server, warehouse_url, instance, monkeypatch):
    monkeypatch.setenv("CALIBR_ALERT_WEBHOOK_URL", f"{server}/hook")

    @dg.op
    def explode():
        raise RuntimeError("boom in the pipeline")

    @dg.job
    def doomed():
        explode()

    result = doomed.execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE)
    context = dg.build_run_status_sensor_context(
        sensor_name="run_failure_alerts", dagster_instance=instance, dagster_run=result.dagster_run, dagster_event=failure,
        resources={"alerts": AlertsResource(), "warehouse": WarehouseResource(url=warehouse_url)},
    ).for_run_failure()
    run_failure_alerts(context)
    (alert,) = _Handler.posts
    assert alert["title"] == "Dagster run of doomed failed" and alert["severity"] == "error"
    assert alert["details"]["run_id"] == result.run_id
    with session_scope(warehouse_url) as session:
        (delivery,) = session.scalars(select(AlertDelivery)).all()
        assert delivery.ok and delivery.source == "dagster:doomed"

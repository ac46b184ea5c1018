"""Every Grafana panel has data: a real Prometheus on loopback scrapes `calibr serve` after a
demo run of the pipeline, and each dashboard query returns at least one non-NaN sample.

What runs, in-process against a small sandbox world, on one Dagster instance that the
monitoring server also reads:

1. the "demo run": catalog sync; competitor monitoring of yesterday with one competitor
   answering 502 (error-class series); a rule run previewed then applied with two
   variants rejected (userErrors -> DLQ), one product's write failing all its attempts
   (transient dead letter), a THROTTLED answer and an HTTP 429 (recorded Shopify series);
   the ``daily_reconciliation`` schedule's runs; synthetic probes of the server's own
   ``/health``; yesterday's order sync and the dbt analytics models (revenue, margin,
   price index, units gauges); HTTP traffic on every route plus a 404 and a 405, and a strict health
   check answered 503 because no Dagster daemon has sent a heartbeat yet; then the
   daemon "starts" (heartbeats);
2. Prometheus (the project's scrape jobs and rule files, 1 s intervals) and the blackbox
   exporter (``monitoring/blackbox/blackbox.yml``, probing ``/health``) start;
3. while they scrape, more work happens so counters and histograms move inside the rate
   windows: the ``daily_competitor_monitoring`` schedule's run for today, a second rule
   run (after the ``hourly_dlq_drain`` schedule's run), probes and HTTP requests;
4. every panel query of ``monitoring/grafana/dashboards/*.json`` is evaluated through
   ``/api/v1/query`` until each returns data (or a deadline passes); all failures are
   reported together.

Needs ``prometheus`` and ``prometheus-blackbox-exporter``: skipped without them, failed
when CALIBR_REQUIRE_MONITORING_TOOLS=1.
"""

from __future__ import annotations

import copy
import json
import math
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
import requests
import yaml
from dagster._core.storage.tags import RUN_KEY_TAG, SCHEDULE_NAME_TAG
from sqlalchemy import func, select

from calibr_pipeline.definitions import build_definitions
from calibr_pipeline.defs.pricing.assets import RULE_RUN_PARTITIONS
from calibr_pipeline.defs.resources import (
    ScraperResource,
    ShopifyAdminResource,
    WarehouseResource,
)
from calibr_pipeline.demo import (
    register_sandbox_listings,
    run_job_for_day,
    seed_fx_rates,
    seed_tenant_shops,
)
from calibr_pipeline.monitoring.health import HealthThresholds
from calibr_pipeline.monitoring.metrics import SCHEDULE_NAMES
from calibr_pipeline.monitoring.server import MonitoringServer
from calibr_pipeline.sandbox.runner import SandboxWorld, TenantSpec
from calibr_pipeline.services.rule_runs import (
    create_run,
    get_run,
    request_apply_of,
    save_rule,
)
from calibr_pipeline.services.api_tokens import create_token
from calibr_pipeline.warehouse.engine import session_scope
from calibr_pipeline.warehouse.models import (
    CompetitorPriceObservation,
    DeadLetter,
    RuleTarget,
)
from calibr_pipeline_tests.monitoring_config.dashboards import DASHBOARDS, panel_queries
from calibr_pipeline_tests.monitoring_config.tools import (
    BLACKBOX_DIR,
    PROMETHEUS_DIR,
    background,
    free_port,
    require_tool,
    server_log,
    wait_http_ok,
)

pytestmark = pytest.mark.integration

TENANT = "dash-shop"
RULE = {"name": "Raise 10%", "transform": {"kind": "percent_change", "value": "10"}, "scope": {"kind": "project"}}
SCRAPE_INTERVAL_S = 1
DATA_DEADLINE_S = 30  # after the activity, how long every panel gets to show data


# -- Prometheus and the blackbox exporter --------------------------------------------------------


def prometheus_config(calibr_target: str, blackbox_address: str, health_url: str, api_target: str) -> dict:
    """The project's prometheus.yml with loopback addresses of this test and 1 s intervals.

    The ``calibr`` and ``blackbox-calibr-health`` jobs are taken from the real file (job
    names, paths, params and relabelling as deployed); only their file_sd target files are
    replaced by static targets and the blackbox exporter's address by this test's port.
    """
    deployed = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    jobs = {job["job_name"]: copy.deepcopy(job) for job in deployed["scrape_configs"]}

    calibr = jobs["calibr"]
    calibr.pop("file_sd_configs")
    calibr["static_configs"] = [{"targets": [calibr_target]}]

    api = jobs["calibr-api"]
    api.pop("file_sd_configs")
    api["static_configs"] = [{"targets": [api_target]}]

    probe = jobs["blackbox-calibr-health"]
    probe.pop("file_sd_configs")
    probe["static_configs"] = [{"targets": [health_url]}]
    for rule in probe["relabel_configs"]:
        if rule.get("target_label") == "__address__":
            rule["replacement"] = blackbox_address

    return {
        "global": {
            "scrape_interval": f"{SCRAPE_INTERVAL_S}s",
            "scrape_timeout": f"{SCRAPE_INTERVAL_S}s",
            "evaluation_interval": f"{SCRAPE_INTERVAL_S}s",
        },
        "rule_files": [str(PROMETHEUS_DIR / name) for name in deployed["rule_files"]],
        "scrape_configs": [calibr, api, probe],
    }


def query(base: str, expr: str) -> list[dict]:
    """``data.result`` of an instant query (a scalar answer becomes one sample)."""
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.load(response)
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"HTTP {exc.code} {exc.read()[:300]!r} for {expr}") from exc
    assert body.get("status") == "success", body
    data = body["data"]
    if data["resultType"] == "scalar":
        return [{"metric": {}, "value": data["result"]}]
    return data["result"]


def has_data(result: list[dict]) -> bool:
    """At least one sample that is a number (a histogram quantile over nothing is NaN)."""
    return any(not math.isnan(float(series["value"][1])) for series in result)


def wait_until(predicate, timeout: float, what: str, interval: float = 0.25) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def samples_of(base: str, expr: str) -> float:
    result = query(base, expr)
    return float(result[0]["value"][1]) if result else 0.0


# -- the pipeline ----------------------------------------------------------------------------------


class Pipeline:
    """The project's Dagster definitions on the sandbox world, executed in-process."""

    def __init__(self, world: SandboxWorld, warehouse_url: str, instance: dg.DagsterInstance):
        self.world, self.url, self.instance = world, warehouse_url, instance
        self.defs = build_definitions(
            warehouse=WarehouseResource(url=warehouse_url),
            # The sandbox answers in milliseconds and faults are injected on purpose: fast retries.
            scraper=ScraperResource(allowed_hosts=list(world.allowed_hosts), backoff_base_s=0.01, read_timeout_s=1.0),
            # Shopify write retry waits (2/4/8 s, Retry-After) compressed 1000x.
            shopify_admin=ShopifyAdminResource(write_wait_scale=0.001),
        )

    @property
    def shop(self):
        return self.world.tenant(TENANT).admin_shop

    def execute(self, job: str, **kwargs) -> dg.ExecuteInProcessResult:
        result = self.defs.resolve_job_def(job).execute_in_process(instance=self.instance, raise_on_error=False, **kwargs)
        assert result.success, f"{job} failed: {[e.message for e in result.all_events if e.is_failure]}"
        return result

    def rule_run(self, faults=None) -> str:
        """Save the rule, create a run, preview it, then apply it as the outbox event would."""
        with session_scope(self.url) as session:
            save_rule(session, project_slug=TENANT, definition=RULE, actor="test")
            run_id = create_run(session, project_slug=TENANT, rule_name=RULE["name"], actor="test").id
        self.instance.add_dynamic_partitions(RULE_RUN_PARTITIONS.name, [run_id])
        self.execute("preview_rule", partition_key=run_id)
        if faults is not None:
            faults(run_id)
        with session_scope(self.url) as session:
            event_id = request_apply_of(session, get_run(session, run_id), actor="test")
        self.execute("apply_run", partition_key=run_id, tags={RUN_KEY_TAG: event_id})
        return run_id

    def run_schedule(self, name: str) -> int:
        """Evaluate a schedule now and execute its run requests as the daemon would (tagged with it)."""
        schedule = self.defs.resolve_schedule_def(name)
        context = dg.build_schedule_context(
            instance=self.instance,
            resources={"warehouse": WarehouseResource(url=self.url)},
            repository_def=self.defs.get_repository_def(),
            scheduled_execution_time=datetime.now(UTC),
        )
        run_requests = schedule.evaluate_tick(context).run_requests or []
        assert run_requests, f"schedule {name} requested no run"
        for request in run_requests:
            self.execute(
                schedule.job_name,
                partition_key=request.partition_key,
                run_config=request.run_config or None,
                tags={**request.tags, RUN_KEY_TAG: request.run_key, SCHEDULE_NAME_TAG: name},
            )
        return len(run_requests)


def shopify_faults(pipeline: Pipeline):
    """Two variants rejected (userErrors), the first product's write failing every attempt
    (a transient dead letter for the hourly drain), one THROTTLED answer and one HTTP 429."""

    def inject(run_id: str) -> None:
        with session_scope(pipeline.url) as session:
            gids = session.scalars(select(RuleTarget.variant_external_id).where(RuleTarget.run_id == run_id).order_by(RuleTarget.id)).all()
        shop = pipeline.shop
        shop.faults.fail_variants([gids[-1], gids[-4]], code="INVALID_INPUT", message="Price is invalid")
        shop.faults.throttle(next=1, retry_after="1.5")
        shop.faults.http_429(next=1, retry_after="0.5")
        # The first target's product: every write attempt gets a 503 (reads pass, so each lost
        # answer is read back, found unwritten, and tried again until its 3 attempts are spent).
        shop.faults.fail_mutations(variants=[gids[0]])

    return inject


def http_traffic(base: str) -> None:
    """Every route of the server, plus a 404 and a 405."""
    for path in ("/health", "/health/detailed", "/metrics", "/health", "/no-such-page"):
        requests.get(base + path, timeout=10)
    requests.head(base + "/health", timeout=10)
    requests.post(base + "/health", timeout=10)


class ApiServer:
    """``calibr api``'s app on loopback (uvicorn in a thread), as `calibr api` serves it."""

    def __init__(self, warehouse_url: str):
        import uvicorn

        from calibr_pipeline.api.app import create_app

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(create_app(warehouse_url), host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> "ApiServer":
        self.thread.start()
        wait_until(lambda: _answers(self.url + "/api/health"), 20, "calibr api to start")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).ok
    except requests.RequestException:
        return False


def api_traffic(base: str, token: str) -> None:
    """Reads of the main routes, and the clients' mistakes (401 without a token, 404, 422)."""
    auth = {"Authorization": f"Bearer {token}"}
    for path in ("/api/v1/runs", "/api/v1/audit?limit=20", "/api/v1/price-changes", f"/api/v1/projects/{TENANT}/competitors", "/api/health"):
        assert requests.get(base + path, headers=auth, timeout=10).status_code == 200, path
    assert requests.get(base + "/api/v1/runs", timeout=10).status_code == 401
    assert requests.get(base + "/api/v1/runs/no-such-run", headers=auth, timeout=10).status_code == 404
    assert requests.get(base + "/api/v1/runs?limit=0", headers=auth, timeout=10).status_code == 422


def start_daemon_heartbeats(instance: dg.DagsterInstance) -> None:
    from dagster._daemon.types import DaemonHeartbeat

    kinds = set(instance.get_required_daemon_types()) or {"SCHEDULER", "SENSOR", "QUEUED_RUN_COORDINATOR"}
    for kind in sorted(kinds):
        instance.add_daemon_heartbeat(DaemonHeartbeat(time.time(), kind, "test-daemon", None))


# -- the test --------------------------------------------------------------------------------------


def test_every_dashboard_panel_has_data(sqlite_warehouse_url, instance, tmp_path: Path, monkeypatch):
    prometheus = require_tool("prometheus")
    blackbox = require_tool("blackbox_exporter")
    panels = [(path.name, title, expr) for path in DASHBOARDS for title, expr in panel_queries(path)]
    assert panels, "no dashboard queries found"
    url = sqlite_warehouse_url

    with ExitStack() as stack:
        world = stack.enter_context(SandboxWorld([TenantSpec(TENANT, "USD", 16, n_competitors=3)], seed=31))
        today = world.today()
        yesterday = today - timedelta(days=1)
        pipeline = Pipeline(world, url, instance)
        server = MonitoringServer(
            url, host="127.0.0.1", port=0, instance=instance, thresholds=HealthThresholds(connectors_cache_s=0, shop_timeout_s=2.0)
        ).start()
        stack.callback(server.stop)
        monkeypatch.setenv("CALIBR_PROBE_TARGETS", f"calibr_health={server.url}/health")
        api = ApiServer(url).start()
        stack.callback(api.stop)

        # 1. the demo run --------------------------------------------------------------------
        seed_fx_rates(url, yesterday)
        seed_tenant_shops(url, world)
        assert run_job_for_day(pipeline.defs, instance, "catalog_sync", [TENANT], today) == {TENANT: True}
        assert register_sandbox_listings(url, world, TENANT).created > 10

        broken = world.tenant(TENANT).competitors[1]
        world.faults.add(shop=broken.slug, path="*", error_rate=1.0, error_status=502)  # stays broken all along
        world.set_date(yesterday)
        try:
            assert run_job_for_day(pipeline.defs, instance, "competitor_monitoring", [TENANT], yesterday) == {TENANT: True}
        finally:
            world.set_date(None)

        first_run = pipeline.rule_run(shopify_faults(pipeline))
        with session_scope(url) as session:
            dead = dict(session.execute(select(DeadLetter.error_type, func.count()).where(DeadLetter.run_id == first_run).group_by(DeadLetter.error_type)).all())
            errors = session.scalar(select(func.count()).select_from(CompetitorPriceObservation).where(CompetitorPriceObservation.status == "error"))
        assert dead.get("INVALID_INPUT") == 2 and any(kind != "INVALID_INPUT" for kind in dead), dead
        assert errors > 0
        pipeline.shop.faults.clear()
        # Analytics (issue 8): yesterday's orders, then the dbt models the analytics gauges read.
        assert run_job_for_day(pipeline.defs, instance, "order_sync", [TENANT], yesterday) == {TENANT: True}
        pipeline.execute("analytics_models")
        pipeline.run_schedule("daily_reconciliation")
        pipeline.execute("synthetic_probes")

        http_traffic(server.url)
        with session_scope(url) as session:
            api_token = create_token(session, tenant_slug=TENANT, scope="read", actor="test").token
        api_traffic(api.url, api_token)
        # No daemon heartbeat yet: a strict checker gets 503 (a real 5xx of the server).
        strict = requests.get(f"{server.url}/health/detailed?strict=1", timeout=10)
        assert strict.status_code == 503 and "worker_queue" in strict.json()["failing"], strict.text
        start_daemon_heartbeats(instance)  # the daemon is up from here on

        # 2. Prometheus and the blackbox exporter ---------------------------------------------
        blackbox_port, prometheus_port = free_port(), free_port()
        blackbox_log, prometheus_log = tmp_path / "blackbox.log", tmp_path / "prometheus.log"
        exporter = stack.enter_context(
            background(
                [blackbox, f"--config.file={BLACKBOX_DIR / 'blackbox.yml'}", f"--web.listen-address=127.0.0.1:{blackbox_port}"],
                blackbox_log,
            )
        )
        wait_http_ok(f"http://127.0.0.1:{blackbox_port}/-/healthy", exporter)
        config = tmp_path / "prometheus.yml"
        config.write_text(
            yaml.safe_dump(
                prometheus_config(f"{server.host}:{server.port}", f"127.0.0.1:{blackbox_port}", f"{server.url}/health", f"127.0.0.1:{api.port}"),
                sort_keys=False,
            )
        )
        prom = stack.enter_context(
            background(
                [
                    prometheus,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{prometheus_port}",
                    "--log.level=warn",
                ],
                prometheus_log,
            )
        )
        base = f"http://127.0.0.1:{prometheus_port}"
        try:
            wait_http_ok(f"{base}/-/ready", prom, timeout=30)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{server_log(prometheus_log)}") from None

        def logs() -> str:
            try:
                with urllib.request.urlopen(f"{base}/api/v1/targets", timeout=10) as response:
                    targets = [
                        {k: t.get(k) for k in ("scrapeUrl", "health", "lastError", "lastScrapeDuration")}
                        for t in json.load(response)["data"]["activeTargets"]
                    ]
            except (OSError, ValueError, KeyError) as exc:
                targets = f"cannot list targets: {exc}"
            return (
                f"--- targets\n{json.dumps(targets, indent=1)}\n"
                f"--- prometheus\n{server_log(prometheus_log)}\n--- blackbox\n{server_log(blackbox_log)}"
            )

        def scrapes(job: str) -> float:
            """Successful scrapes of the job so far (a scrape over the 1 s timeout counts as up 0)."""
            return samples_of(base, f'sum(sum_over_time(up{{job="{job}"}}[10m]))')

        try:
            wait_until(lambda: scrapes("calibr") >= 2 and scrapes("calibr-api") >= 2 and scrapes("blackbox-calibr-health") >= 2, 30, "the first scrapes")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{logs()}") from None

        # 3. more work while Prometheus scrapes ------------------------------------------------
        pipeline.run_schedule("daily_competitor_monitoring")  # today's partition: new observations
        # The drain before the next rule run: a newer run that sets the same variants supersedes
        # the first run's dead letters, and the drain would close them instead of retrying.
        pipeline.run_schedule("hourly_dlq_drain")
        pipeline.rule_run()
        pipeline.execute("synthetic_probes")
        http_traffic(server.url)
        api_traffic(api.url, api_token)
        start_daemon_heartbeats(instance)
        assert set(SCHEDULE_NAMES) <= {
            r.dagster_run.tags.get(SCHEDULE_NAME_TAG) for r in instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS]))
        }
        # Two more scrapes see the final totals, so every rate window has moved.
        after_activity = scrapes("calibr")
        try:
            wait_until(lambda: scrapes("calibr") >= after_activity + 2, 30, "scrapes after the activity")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{logs()}") from None

        # 4. every panel has data ---------------------------------------------------------------
        deadline = time.monotonic() + DATA_DEADLINE_S
        while True:
            missing = [(d, t, e) for d, t, e in panels if not has_data(query(base, e))]
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(SCRAPE_INTERVAL_S)
        assert not missing, (
            f"{len(missing)} of {len(panels)} dashboard queries returned no data:\n"
            + "\n".join(f"  {d} / {t}:\n      {e}" for d, t, e in missing)
            + "\n"
            + logs()
        )

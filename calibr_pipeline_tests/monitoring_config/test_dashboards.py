"""Grafana dashboards of monitoring/grafana/: structure, PromQL that parses (promtool), and
PromQL that a real Prometheus evaluates without error (no data yet: a later integration
test feeds metrics and reuses ``panel_queries`` to require data in every panel)."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request

import pytest
import yaml

from calibr_pipeline_tests.monitoring_config.dashboards import DASHBOARDS, load, panel_queries, panels
from calibr_pipeline_tests.monitoring_config.tools import (
    GRAFANA_DIR,
    PROMETHEUS_DIR,
    background,
    free_port,
    require_tool,
    run,
    server_log,
    wait_http_ok,
)

DATASOURCE_UID = "prometheus"
EXPECTED = {"calibr-main.json", "calibr-automation.json"}


def _ids(paths):
    return [p.name for p in paths]


def test_both_dashboards_exist():
    assert {p.name for p in DASHBOARDS} >= EXPECTED


def _uses_calibr_datasource(datasource) -> bool:
    if isinstance(datasource, dict):
        return datasource.get("type") == "prometheus" and datasource.get("uid") in (DATASOURCE_UID, "${DS_PROMETHEUS}")
    return datasource in (DATASOURCE_UID, "${DS_PROMETHEUS}")


@pytest.mark.parametrize("path", DASHBOARDS, ids=_ids(DASHBOARDS))
def test_dashboard_structure(path):
    dashboard = load(path)
    assert dashboard.get("uid") and dashboard.get("title")
    all_ids = [p["id"] for p in dashboard["panels"]] + [c["id"] for p in dashboard["panels"] for c in p.get("panels", [])]
    assert len(all_ids) == len(set(all_ids)), f"duplicate panel ids in {path.name}"
    found = panels(dashboard)
    assert found, "no panels"
    for panel in found:
        title = panel.get("title")
        assert title, f"panel {panel['id']} has no title"
        assert _uses_calibr_datasource(panel.get("datasource")), f"{title}: panel datasource {panel.get('datasource')}"
        targets = panel.get("targets") or []
        assert targets, f"{title}: no targets"
        for target in targets:
            assert (target.get("expr") or "").strip(), f"{title}: target {target.get('refId')} has no expr"
            assert _uses_calibr_datasource(target.get("datasource")), f"{title}: target datasource"
        ref_ids = [t["refId"] for t in targets]
        assert len(ref_ids) == len(set(ref_ids)), f"{title}: duplicate refIds"
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, f"{title}: panel outside the 24-column grid"
    for variable in dashboard.get("templating", {}).get("list", []):
        assert _uses_calibr_datasource(variable.get("datasource")), f"variable {variable['name']}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=_ids(DASHBOARDS))
def test_dashboard_queries_only_use_contract_metrics(path):
    """Every calibr_* name in a query is in the metric contract or a recording rule."""
    contract = {
        "calibr_rule_runs", "calibr_rule_run_duration_seconds", "calibr_rule_apply_success_ratio",
        "calibr_rule_targets", "calibr_dlq_size", "calibr_competitor_scrapes_total",
        "calibr_competitor_listing_consecutive_failures", "calibr_connector_requests_total",
        "calibr_connector_request_duration_seconds", "calibr_shopify_throttled_total",
        "calibr_shopify_rate_limited_total", "calibr_outbox_backlog", "calibr_outbox_oldest_pending_age_seconds",
        "calibr_schedule_last_success_timestamp_seconds", "calibr_dagster_queued_runs",
        "calibr_dagster_daemon_heartbeat_age_seconds", "calibr_http_requests_total",
        "calibr_http_request_duration_seconds", "calibr_probe_success", "calibr_probe_duration_seconds",
        "calibr_warehouse_up", "calibr_warehouse_query_duration_seconds",
        # `calibr api` (issue 13)
        "calibr_api_requests_total", "calibr_api_request_duration_seconds",
        # Stripe connector (issue 11)
        "calibr_stripe_sync_runs_total", "calibr_stripe_sync_duration_seconds", "calibr_stripe_webhook_backlog",
        "calibr_stripe_webhook_signature_failures_total",
        # Merchant analytics (issue 8)
        "calibr_analytics_revenue", "calibr_analytics_gross_margin_percent", "calibr_analytics_price_index",
        "calibr_analytics_units", "calibr_analytics_last_complete_day_timestamp_seconds",
    }
    recorded = {
        rule["record"]
        for group in yaml.safe_load((PROMETHEUS_DIR / "recording.yml").read_text())["groups"]
        for rule in group["rules"]
    }
    unknown = set()
    for _, expr in panel_queries(path):
        for name in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr):
            if name.startswith("calibr_") and ":" not in name:
                base = re.sub(r"_(bucket|count|sum)$", "", name)
                if name not in contract and base not in contract:
                    unknown.add(name)
            elif ":calibr_" in name or name.startswith("calibr_http_5xx:"):
                if name not in recorded:
                    unknown.add(name)
    assert not unknown, f"names outside the metric contract / recording rules: {sorted(unknown)}"


def test_panel_queries_substitutes_grafana_variables():
    queries = dict(panel_queries(GRAFANA_DIR / "dashboards" / "calibr-automation.json"))
    assert all("$" not in expr for expr in queries.values())
    raw = dict(panel_queries(GRAFANA_DIR / "dashboards" / "calibr-automation.json", raw=True))
    assert any('tenant=~"$tenant"' in expr for expr in raw.values())
    assert 'tenant=~"acme"' in "".join(
        dict(panel_queries(GRAFANA_DIR / "dashboards" / "calibr-automation.json", {"tenant": "acme"})).values()
    )


def _all_queries() -> list[tuple[str, str, str]]:
    return [(path.name, title, expr) for path in DASHBOARDS for title, expr in panel_queries(path)]


def test_every_query_parses(tmp_path):
    """promtool has no bare "parse this query" command: each expression becomes a recording
    rule and ``promtool check rules`` parses them all."""
    promtool = require_tool("promtool")
    queries = _all_queries()
    rules = {
        "groups": [
            {
                "name": "dashboard-queries",
                "rules": [{"record": f"dashboard_query_{i}", "expr": expr} for i, (_, _, expr) in enumerate(queries)],
            }
        ]
    }
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    result = run([promtool, "check", "rules", str(path)])
    if result.returncode != 0:
        where = "\n".join(f"rule {i}: {d} / {t}: {e}" for i, (d, t, e) in enumerate(queries))
        pytest.fail(f"promtool rejected a dashboard query:\n{result.stdout}\n{result.stderr}\n{where}")


@pytest.mark.integration
def test_every_query_evaluates_on_a_real_prometheus(tmp_path):
    """A loopback Prometheus with an empty TSDB and the project's rule files evaluates every
    dashboard query without error (empty results are fine here)."""
    prometheus = require_tool("prometheus")
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "15s", "evaluation_interval": "15s"},
                "rule_files": [str(PROMETHEUS_DIR / "alerts.yml"), str(PROMETHEUS_DIR / "recording.yml")],
                "scrape_configs": [],
            }
        )
    )
    log = tmp_path / "prometheus.log"
    args = [
        prometheus,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    with background(args, log) as process:
        base = f"http://127.0.0.1:{port}"
        wait_http_ok(f"{base}/-/ready", process, timeout=20)

        with urllib.request.urlopen(f"{base}/api/v1/rules", timeout=5) as response:
            groups = json.load(response)["data"]["groups"]
        loaded = {rule["name"] for group in groups for rule in group["rules"]}
        assert {"CalibrRuleApplySuccessRateLow", "connector:calibr_connector_requests:success_ratio_rate10m"} <= loaded

        failures = []
        for dashboard, title, expr in _all_queries():
            query = urllib.parse.urlencode({"query": expr})
            try:
                with urllib.request.urlopen(f"{base}/api/v1/query?{query}", timeout=10) as response:
                    body = json.load(response)
                if body.get("status") != "success":
                    failures.append(f"{dashboard} / {title}: {body}")
            except urllib.error.HTTPError as exc:
                failures.append(f"{dashboard} / {title}: HTTP {exc.code} {exc.read()[:300]!r}\n  {expr}")
        assert not failures, "\n".join(failures) + "\n" + server_log(log)

"""The real Dagster webserver on our definitions: list assets and launch a run via its GraphQL API."""

import os
import shutil
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest
import requests
import yaml
from sqlalchemy import func, select

from calibr_pipeline.demo import register_sandbox_listings, run_job_for_day, seed_fx_rates, seed_tenant_shops
from calibr_pipeline.sandbox.runner import SandboxWorld, TenantSpec
from calibr_pipeline.warehouse.engine import session_scope, upgrade_to_head
from calibr_pipeline.warehouse.models import CompetitorPriceObservation, MarketPosition

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]

ASSETS_QUERY = "{ assetNodes { assetKey { path } isPartitioned hasAssetChecks } }"
LOCATION_QUERY = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus locationOrLoadError { __typename ... on PythonError { message stack } } } } } }"
LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidSubsetError { message }
  }
}
"""
RUN_STATUS = "query Run($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(url: str, query: str, variables: dict | None = None) -> dict:
    response = requests.post(f"{url}/graphql", json={"query": query, "variables": variables or {}}, timeout=30)
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body["errors"]
    return body["data"]


@pytest.fixture
def dagster_home(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    # The repository's dagster.yaml, minus the run queue: without a daemon in this test the
    # default coordinator launches the run at once.
    config = yaml.safe_load((REPO / "dagster.yaml").read_text())
    config["run_coordinator"] = {"module": "dagster._core.run_coordinator", "class": "DefaultRunCoordinator"}
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    return home


def test_webserver_lists_assets_and_launches_a_materialization(tmp_path, dagster_home, monkeypatch):
    warehouse_url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    upgrade_to_head(warehouse_url)
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    monkeypatch.setenv("CALIBR_WAREHOUSE_URL", warehouse_url)
    with SandboxWorld([TenantSpec("web-shop", "USD", 12, n_competitors=3)], seed=5) as world:
        monkeypatch.setenv("CALIBR_SANDBOX_ALLOWED_HOSTS", ",".join(world.allowed_hosts))
        seed_fx_rates(warehouse_url, world.today() - timedelta(days=1))
        seed_tenant_shops(warehouse_url, world)
        from calibr_pipeline.definitions import defs

        # Entered, so Dagster's current defs-state storage is this instance's and not one
        # left behind by an earlier test's (closed) instance.
        with dg.DagsterInstance.get() as instance:
            assert run_job_for_day(defs, instance, "catalog_sync", ["web-shop"], world.today()) == {"web-shop": True}
        register_sandbox_listings(warehouse_url, world, "web-shop")

        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [shutil.which("dagster-webserver", path=str(Path(sys.executable).parent)), "-m", "calibr_pipeline.definitions", "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO,
            env=os.environ.copy(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 120
            while True:  # the server answers before the code location has loaded
                try:
                    entries = _graphql(url, LOCATION_QUERY)["workspaceOrError"]["locationEntries"]
                    if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                        assert entries[0]["locationOrLoadError"]["__typename"] == "RepositoryLocation", entries
                        break
                except requests.ConnectionError:
                    pass
                assert server.poll() is None, server.stderr.read().decode()[-3000:]
                assert time.monotonic() < deadline, "webserver did not start"
                time.sleep(0.5)

            assets = {tuple(n["assetKey"]["path"]): n for n in _graphql(url, ASSETS_QUERY)["assetNodes"]}
            partitioned = {
                "shop_catalog", "competitor_price_observations", "normalized_price_snapshots", "market_position",
                "rule_targets", "applied_prices", "reconciliation_report", "dlq_summary", "sla_report",
                "shop_orders", "amazon_orders", "competitor_trends", "weekly_digest",
            }
            # The dbt analytics models are rebuilt whole; warehouse/* are the dbt sources no asset owns.
            dbt_models = {"calendar_days", "price_history", "sales_daily", "analytics_overview", "top_skus", "price_change_frequency", "trend_observed", "trend_flags"}
            dbt_sources = {("warehouse", t) for t in ("projects", "order_lines", "order_refund_lines", "rule_runs", "variant_cost_history")}
            assert set(assets) == {(name,) for name in partitioned | dbt_models} | dbt_sources
            assert all(assets[(name,)]["isPartitioned"] for name in partitioned)
            assert assets[("competitor_price_observations",)]["hasAssetChecks"]

            (location,) = [e["name"] for e in _graphql(url, LOCATION_QUERY)["workspaceOrError"]["locationEntries"]]
            day = world.today().isoformat()
            launched = _graphql(
                url,
                LAUNCH,
                {
                    "params": {
                        "selector": {"repositoryLocationName": location, "repositoryName": "__repository__", "jobName": "competitor_monitoring"},
                        "runConfigData": {},
                        "executionMetadata": {
                            "tags": [
                                {"key": "dagster/partition", "value": f"{day}|web-shop"},
                                {"key": "dagster/partition/date", "value": day},
                                {"key": "dagster/partition/tenant", "value": "web-shop"},
                            ]
                        },
                    }
                },
            )["launchRun"]
            assert launched["__typename"] == "LaunchRunSuccess", launched
            run_id = launched["run"]["runId"]

            deadline = time.monotonic() + 180
            status = None
            while time.monotonic() < deadline:
                status = _graphql(url, RUN_STATUS, {"id": run_id})["runOrError"]["status"]
                if status in ("SUCCESS", "FAILURE", "CANCELED"):
                    break
                time.sleep(1)
            assert status == "SUCCESS", status
        finally:
            server.terminate()
            server.wait(timeout=30)

    with session_scope(warehouse_url) as session:
        assert session.scalar(select(func.count()).select_from(CompetitorPriceObservation).where(CompetitorPriceObservation.dagster_run_id == run_id)) > 0
        assert session.scalar(select(func.count()).select_from(MarketPosition)) > 0

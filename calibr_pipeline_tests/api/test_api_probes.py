"""The synthetic API probes (the seed's list) against a real API server, with the read-only probe token."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from calibr_pipeline.defs.operations.definitions import API_PROBES, api_probe_schedules, synthetic_probes
from calibr_pipeline.defs.resources import WarehouseResource
from calibr_pipeline.warehouse.engine import session_scope
from calibr_pipeline.warehouse.models import ProbeResult

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("api", ["sqlite"], indirect=True)
def test_api_probes_read_with_the_probe_token_and_are_recorded(api, instance, monkeypatch):
    monkeypatch.setenv("CALIBR_API_URL", api.base)
    monkeypatch.setenv("CALIBR_API_PROBE_PROJECT", api.tenants["acme"].project)
    assert {s.cron_schedule for s in api_probe_schedules} == {"* * * * *", "*/5 * * * *", "*/10 * * * *", "*/15 * * * *"}
    names = [name for name, _, _ in API_PROBES]
    config = {"ops": {"run_probes": {"config": {"api_probes": names}}}}
    resources = {"warehouse": WarehouseResource(url=api.url)}

    monkeypatch.delenv("CALIBR_API_PROBE_TOKEN", raising=False)
    assert synthetic_probes.execute_in_process(run_config=config, instance=instance, resources=resources).success
    monkeypatch.setenv("CALIBR_API_PROBE_TOKEN", api.tenants["acme"].read_token)
    assert synthetic_probes.execute_in_process(run_config=config, instance=instance, resources=resources).success
    with session_scope(api.url) as session:
        rows = session.execute(select(ProbeResult.target, ProbeResult.ok, ProbeResult.status_code).order_by(ProbeResult.id)).all()
    without, with_token = rows[:5], rows[5:]
    # /api/health is public; the others need the token.
    assert [(t, s) for t, _, s in without] == [
        ("api_health", 200), ("api_price_changes", 401), ("api_analytics_overview", 401), ("api_competitors", 401), ("api_copilot", 401)]
    assert [(t, ok, s) for t, ok, s in with_token] == [
        ("api_health", True, 200), ("api_price_changes", True, 200), ("api_analytics_overview", True, 200), ("api_competitors", True, 200),
        ("api_copilot", True, 200)]

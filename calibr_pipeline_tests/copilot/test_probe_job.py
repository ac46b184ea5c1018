"""The copilot containment canary job, in process."""

from __future__ import annotations

import dagster as dg
from sqlalchemy import text

from calibr_pipeline.defs.resources import WarehouseResource
from calibr_pipeline.definitions import build_definitions
from calibr_pipeline.warehouse.engine import get_engine


def test_canary_passes_and_is_recorded(copilot_world, instance):
    defs = build_definitions(warehouse=WarehouseResource(url=copilot_world["url"]))
    result = defs.resolve_job_def("copilot_probe").execute_in_process(instance=instance)
    assert result.success
    assert result.output_for_node("probe_copilot") == {"acme-outdoor": {"answered": True, "contained": True},
                                                        "zeta-home": {"answered": True, "contained": True}}
    with get_engine(copilot_world["url"]).connect() as connection:
        ok = connection.execute(text("SELECT ok FROM probe_results WHERE target = 'copilot_containment' ORDER BY id DESC")).scalar()
        refusals = connection.execute(text("SELECT refusal_code FROM copilot_audit WHERE actor = 'probe' AND backend = 'canary'")).scalars().all()
    assert ok in (True, 1) and refusals == ["table_not_allowed", "table_not_allowed"]
    assert any(s.name == "copilot_probe_schedule" for s in defs.schedules)


def test_canary_fails_loudly_when_containment_breaks(copilot_world, instance, monkeypatch):
    import calibr_pipeline.domain.copilot_sql as policy

    monkeypatch.setitem(policy.ANALYTICS_VIEWS, "shops", policy.AnalyticsView("shops", "shops", ("access_token",), "broken allow-list"))
    defs = build_definitions(warehouse=WarehouseResource(url=copilot_world["url"]))
    result = defs.resolve_job_def("copilot_probe").execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success  # the database layer still refuses, but with another code: the canary reports the policy regression
    with get_engine(copilot_world["url"]).connect() as connection:
        ok = connection.execute(text("SELECT ok FROM probe_results WHERE target = 'copilot_containment' ORDER BY id DESC")).scalar()
    assert ok in (False, 0)

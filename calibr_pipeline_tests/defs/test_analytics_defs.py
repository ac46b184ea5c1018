"""Analytics definitions load, and the schedules fire in order with the right partitions."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from calibr_pipeline.definitions import defs
from calibr_pipeline.defs.analytics.schedules import missing_order_days, order_partition_key
from calibr_pipeline.defs.partitions import TENANT_PARTITIONS


def test_the_repository_loads_with_every_analytics_job_and_schedule():
    repository = defs.get_repository_def()
    jobs = {j.name for j in repository.get_all_jobs()}
    assert {"order_sync", "order_freshness", "analytics_models", "trend_detection", "weekly_digest_delivery"} <= jobs
    crons = {s.name: s.cron_schedule for s in repository.schedule_defs}
    # Analytics run after competitor monitoring (05:00), in dependency order.
    assert crons["daily_competitor_monitoring"] == "0 5 * * *"
    assert [crons[n] for n in ("daily_order_sync", "daily_order_freshness", "daily_analytics_models", "daily_competitor_trends")] == [
        "0 6 * * *", "30 6 * * *", "40 6 * * *", "55 6 * * *"
    ]
    assert crons["weekly_digest_schedule"] == "0 7 * * 1"
    graph = defs.resolve_asset_graph()
    assert dg.AssetKey("shop_orders") in graph.get(dg.AssetKey("sales_daily")).parent_keys
    assert graph.get(dg.AssetKey("shop_orders")).freshness_policy is not None


def test_weekly_digest_schedule_asks_for_last_week_per_tenant():
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(TENANT_PARTITIONS.name, ["b-tenant", "a-tenant"])
        schedule = defs.get_repository_def().get_schedule_def("weekly_digest_schedule")
        monday = dt.datetime(2026, 3, 9, 7, 0, tzinfo=dt.UTC)
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=monday, repository_def=defs.get_repository_def())
        requests = schedule.evaluate_tick(context).run_requests
        assert [str(r.partition_key) for r in requests] == ["a-tenant|2026-03-02", "b-tenant|2026-03-02"]


def test_missing_order_days_names_each_gap():
    done = [order_partition_key(dt.date(2026, 3, d), "t") for d in (1, 2, 4)]
    assert missing_order_days(done, ["t", "u"], dt.date(2026, 3, 1), dt.date(2026, 3, 4)) == {
        "t": [dt.date(2026, 3, 3)],
        "u": [dt.date(2026, 3, d) for d in range(1, 5)],
    }

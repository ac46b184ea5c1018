"""Materialize the analytics history for the demo: 60 days of orders, models, trends, digest.

Order history goes through :func:`backfill_orders` (one process, materializations
recorded) so the demo stays quick; the models, trends and the digest are real runs the
UI shows.
"""

from __future__ import annotations

import datetime as dt
import time

import dagster as dg

from calibr_pipeline.defs.analytics.backfill import backfill_orders
from calibr_pipeline.defs.partitions import DayTenant


def materialize_history(defs: dg.Definitions, instance: dg.DagsterInstance, warehouse_url: str, tenants: list[str], today: dt.date, *, days: int = 60) -> dict[str, object]:
    started = time.monotonic()
    yesterday = today - dt.timedelta(days=1)
    history = [yesterday - dt.timedelta(days=i) for i in range(days - 1, -1, -1)]
    orders = backfill_orders(instance, warehouse_url, tenants, history)
    results: dict[str, object] = {"orders": orders}
    results["analytics_models"] = defs.resolve_job_def("analytics_models").execute_in_process(instance=instance, raise_on_error=False).success
    trend_job = defs.resolve_job_def("trend_detection")
    results["trend_detection"] = all(
        trend_job.execute_in_process(instance=instance, partition_key=DayTenant(yesterday, t).key, raise_on_error=False).success for t in tenants
    )
    last_monday = today - dt.timedelta(days=today.weekday() + 7)
    digest_job = defs.resolve_job_def("weekly_digest_delivery")
    results["weekly_digest"] = all(
        digest_job.execute_in_process(
            instance=instance, partition_key=dg.MultiPartitionKey({"week": last_monday.isoformat(), "tenant": t}), raise_on_error=False
        ).success
        for t in tenants
    )
    results["seconds"] = round(time.monotonic() - started, 1)
    return results

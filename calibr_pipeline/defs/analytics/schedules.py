"""Analytics cadence: orders and models daily after competitor monitoring, the digest weekly.

UTC times: competitor monitoring 05:00 → order sync 06:00 (yesterday, plus any missed
day of the last two weeks) → order-freshness check 06:30 → dbt models 06:40 → trend
flags 06:55 → weekly digest Mondays 07:00 (last week).
"""

import datetime as dt
from collections.abc import Iterable

import dagster as dg

from calibr_pipeline.defs.partitions import TENANT_PARTITIONS

ORDERS_ASSET = dg.AssetKey("shop_orders")
CATCH_UP_DAYS = 14


def order_partition_key(day: dt.date, tenant: str) -> str:
    return str(dg.MultiPartitionKey({"date": day.isoformat(), "tenant": tenant}))


def missing_order_days(materialized: Iterable[str], tenants: Iterable[str], first: dt.date, last: dt.date) -> dict[str, list[dt.date]]:
    """Per tenant, the days in ``[first, last]`` whose shop_orders partition never materialized."""
    done = set(materialized)
    days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    gaps = {tenant: [d for d in days if order_partition_key(d, tenant) not in done] for tenant in sorted(tenants)}
    return {tenant: missing for tenant, missing in gaps.items() if missing}


def order_sync_requests(instance: dg.DagsterInstance, today: dt.date) -> list[dg.RunRequest]:
    tenants = sorted(instance.get_dynamic_partitions(TENANT_PARTITIONS.name))
    yesterday = today - dt.timedelta(days=1)
    materialized = instance.get_materialized_partitions(ORDERS_ASSET)
    gaps = missing_order_days(materialized, tenants, yesterday - dt.timedelta(days=CATCH_UP_DAYS - 1), yesterday)
    return [
        dg.RunRequest(run_key=f"orders|{day.isoformat()}|{tenant}", partition_key=dg.MultiPartitionKey({"date": day.isoformat(), "tenant": tenant}))
        for tenant, days in gaps.items()
        for day in days
    ]


@dg.schedule(
    job_name="order_sync",
    cron_schedule="0 6 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="06:00 UTC, after competitor monitoring: yesterday's orders per tenant, and any day of the last two weeks that was missed.",
)
def daily_order_sync(context: dg.ScheduleEvaluationContext):
    requests = order_sync_requests(context.instance, context.scheduled_execution_time.date())
    return requests or dg.SkipReason("every tenant's orders are synced up to yesterday")


@dg.schedule(
    job_name="order_freshness",
    cron_schedule="30 6 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="06:30 UTC: the order_days_complete check (a missed day shows until the catch-up fills it).",
)
def daily_order_freshness(context: dg.ScheduleEvaluationContext):
    return dg.RunRequest(run_key=context.scheduled_execution_time.date().isoformat())


@dg.schedule(
    job_name="analytics_models",
    cron_schedule="40 6 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="06:40 UTC: dbt build of the analytics models and their tests.",
)
def daily_analytics_models(context: dg.ScheduleEvaluationContext):
    return dg.RunRequest(run_key=context.scheduled_execution_time.date().isoformat())


@dg.schedule(
    job_name="trend_detection",
    cron_schedule="55 6 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="06:55 UTC: trend flags as of yesterday, per tenant.",
)
def daily_competitor_trends(context: dg.ScheduleEvaluationContext):
    day = (context.scheduled_execution_time.date() - dt.timedelta(days=1)).isoformat()
    tenants = sorted(context.instance.get_dynamic_partitions(TENANT_PARTITIONS.name))
    if not tenants:
        return dg.SkipReason("no tenant partitions yet")
    return [dg.RunRequest(run_key=f"trends|{day}|{t}", partition_key=dg.MultiPartitionKey({"date": day, "tenant": t})) for t in tenants]


@dg.schedule(
    job_name="weekly_digest_delivery",
    cron_schedule="0 7 * * 1",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Mondays 07:00 UTC: last week's digest per tenant, delivered by e-mail and Slack.",
)
def weekly_digest_schedule(context: dg.ScheduleEvaluationContext):
    week = (context.scheduled_execution_time.date() - dt.timedelta(days=7)).isoformat()
    tenants = sorted(context.instance.get_dynamic_partitions(TENANT_PARTITIONS.name))
    if not tenants:
        return dg.SkipReason("no tenant partitions yet")
    return [dg.RunRequest(run_key=f"digest|{week}|{t}", partition_key=dg.MultiPartitionKey({"week": week, "tenant": t})) for t in tenants]


SCHEDULES = [daily_order_sync, daily_order_freshness, daily_analytics_models, daily_competitor_trends, weekly_digest_schedule]

"""Daily competitor monitoring for every tenant."""


import dagster as dg

from calibr_pipeline.defs.competitors.jobs import competitor_monitoring_job
from calibr_pipeline.defs.partitions import TENANT_PARTITIONS


@dg.schedule(
    job=competitor_monitoring_job,
    cron_schedule="0 5 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="05:00 UTC: one run per tenant for the day's partition.",
)
def daily_competitor_monitoring(context: dg.ScheduleEvaluationContext):
    day = context.scheduled_execution_time.date().isoformat()
    tenants = sorted(context.instance.get_dynamic_partitions(TENANT_PARTITIONS.name))
    if not tenants:
        return dg.SkipReason("no tenant partitions yet (the tenant_partitions_sensor adds them)")
    return [
        dg.RunRequest(
            run_key=f"{day}|{tenant}",
            partition_key=dg.MultiPartitionKey({"date": day, "tenant": tenant}),
        )
        for tenant in tenants
    ]

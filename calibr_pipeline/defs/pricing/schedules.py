"""Daily reconciliation of recently applied runs; hourly drain of transient dead letters."""

from datetime import timedelta

import dagster as dg
from sqlalchemy import select

from calibr_pipeline.defs.pricing.jobs import reconcile_run_job, retry_failed_job
from calibr_pipeline.defs.resources import WarehouseResource
from calibr_pipeline.services.reconciliation import plan_dlq_drain
from calibr_pipeline.warehouse.models import RuleRun


@dg.schedule(
    job=reconcile_run_job,
    cron_schedule="0 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="03:00 UTC: reconcile every run that finished applying in the last 24 hours.",
)
def daily_reconciliation(context: dg.ScheduleEvaluationContext, warehouse: WarehouseResource):
    now = context.scheduled_execution_time
    with warehouse.session() as session:
        run_ids = session.scalars(
            select(RuleRun.id).where(RuleRun.state.in_(["APPLIED", "PARTIAL"]), RuleRun.completed_at >= now - timedelta(days=1)).order_by(RuleRun.id)
        ).all()
    if not run_ids:
        return dg.SkipReason("no run finished applying in the last 24 hours")
    return [dg.RunRequest(run_key=f"reconcile:{run_id}:{now.date()}", partition_key=run_id) for run_id in run_ids]


@dg.schedule(
    job=retry_failed_job,
    cron_schedule="15 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=(
        "Hourly: retry dead-lettered targets whose error was transient (5xx, timeout, rate limit) and whose run is "
        "still the latest decision for the variant (not reverted or superseded), younger than CALIBR_DLQ_MAX_AGE_HOURS "
        "and drained fewer than CALIBR_DLQ_MAX_RETRIES times; always through the write-time checks."
    ),
)
def hourly_dlq_drain(context: dg.ScheduleEvaluationContext, warehouse: WarehouseResource):
    hour = context.scheduled_execution_time.strftime("%Y-%m-%dT%H")
    with warehouse.session() as session:
        plan = plan_dlq_drain(session, now=context.scheduled_execution_time)
    # Letters to close are closed by the run that drains their run (it re-plans first), or
    # by `calibr dlq drain`; a run with nothing to retry needs no Dagster run.
    if not plan.retry:
        return dg.SkipReason(f"no dead letter to retry ({len(plan.close)} no longer eligible; `calibr dlq drain` closes them)")
    return [
        dg.RunRequest(
            run_key=f"drain:{run_id}:{hour}",
            partition_key=run_id,
            run_config={"ops": {"applied_prices": {"config": {"retry_failed": True, "target_ids": target_ids, "drain": True}}}},
            tags={"calibr/actor": "dlq-drain"},
        )
        for run_id, target_ids in plan.retry.items()
    ]

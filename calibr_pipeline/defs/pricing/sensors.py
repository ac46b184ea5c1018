"""``job.rules.apply`` outbox events become apply (or revert) runs, one per event."""

import dagster as dg

from calibr_pipeline.defs.outbox import Dispatch, dispatch_outbox
from calibr_pipeline.defs.pricing.assets import RULE_RUN_PARTITIONS
from calibr_pipeline.defs.pricing.jobs import apply_run_job, revert_run_job
from calibr_pipeline.defs.resources import WarehouseResource
from calibr_pipeline.services.rule_runs import APPLY_REQUESTED
from calibr_pipeline.warehouse.models import RuleRun
from calibr_pipeline.warehouse.outbox import PendingEvent

APPLYABLE_STATES = {"QUEUED", "PARTIAL", "FAILED", "APPLYING"}


def build_apply_dispatch(session, event: PendingEvent) -> Dispatch:
    payload = event.payload
    if not isinstance(payload, dict):
        raise ValueError(f"payload is {type(payload).__name__}, expected a JSON object")
    run_id = payload.get("run_id")
    if not isinstance(run_id, str) or not run_id:
        raise ValueError(f"run_id must be a non-empty string, got {run_id!r}")
    run = session.get(RuleRun, run_id)
    if run is None:
        raise ValueError(f"rule run {run_id} does not exist")
    if event.tenant_id is not None and event.tenant_id != run.tenant_id:
        raise ValueError(f"event tenant {event.tenant_id} does not own run {run_id}")
    if run.state not in APPLYABLE_STATES:
        raise ValueError(f"rule run {run_id} is {run.state}; nothing to apply")
    job = revert_run_job if run.kind == "revert" else apply_run_job
    return Dispatch(
        dg.RunRequest(
            run_key=event.id,
            job_name=job.name,
            partition_key=run_id,
            tags={"calibr/outbox_event": event.id, "calibr/trigger": APPLY_REQUESTED, "calibr/actor": f"sensor:{event.id[:8]}"},
        ),
        partitions={RULE_RUN_PARTITIONS.name: [run_id]},
    )


@dg.sensor(
    jobs=[apply_run_job, revert_run_job],
    minimum_interval_seconds=5,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Reads `job.rules.apply` events from the outbox and launches apply_run (revert_run for "
        "revert runs) on the run's partition; run_key = event id; malformed events are dead-lettered."
    ),
)
def rules_apply_sensor(context: dg.SensorEvaluationContext, warehouse: WarehouseResource) -> dg.SensorResult:
    return dispatch_outbox(context, warehouse, APPLY_REQUESTED, build_apply_dispatch)

"""Rule runs from the outbox, one writer at a time; and the stuck-run watchdog.

``rules_apply_sensor``: ``job.rules.apply`` events become apply (or revert) runs. Several
events for one run collapse into one request; a run that is APPLYING under a live lease,
or already has a Dagster run queued or in progress, gets none (the event is settled into
it). An APPLYING run whose lease expired is resumed (``calibr runs apply RUN``). Each request
carries ``calibr/shop``: the instance's tag concurrency limit lets one write run per shop
execute at a time (the shop's rate limit is per shop anyway), and the run's lease in the
warehouse backs that up for writers outside Dagster (``calibr runs apply --wait``).

``stuck_runs_sensor``: a run APPLYING whose lease expired lost its writer (killed process,
lost machine). It is resumed once; if it is stuck again, an alert goes out instead.
"""

import dagster as dg
from sqlalchemy import or_, select

from calibr_pipeline.connectors.alerts import Alert
from calibr_pipeline.defs.outbox import Dispatch, dispatch_outbox
from calibr_pipeline.defs.pricing.assets import RULE_RUN_PARTITIONS
from calibr_pipeline.defs.pricing.jobs import apply_run_job, revert_run_job
from calibr_pipeline.defs.resources import AlertsResource, WarehouseResource
from calibr_pipeline.domain.state_machine import RunState
from calibr_pipeline.services.rule_runs import APPLY_REQUESTED
from calibr_pipeline.warehouse.models import RuleRun, Shop
from calibr_pipeline.warehouse.outbox import PendingEvent
from calibr_pipeline.warehouse.types import utcnow

APPLYABLE_STATES = {RunState.QUEUED.value, RunState.PARTIAL.value, RunState.FAILED.value}
SHOP_TAG = "calibr/shop"
TENANT_TAG = "calibr/tenant"  # per-tenant run limit (dagster.yaml): one tenant's burst cannot take every slot
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED,
]
AUTO_RESUMES = 1


def in_flight_run(instance: dg.DagsterInstance, run_id: str) -> str | None:
    """A Dagster apply/revert run of this rule run that is queued or running, if any."""
    runs = instance.get_run_records(
        filters=dg.RunsFilter(tags={"dagster/partition": run_id}, statuses=IN_FLIGHT, job_name=None), limit=5
    )
    for record in runs:
        if record.dagster_run.job_name in (apply_run_job.name, revert_run_job.name, "retry_failed"):
            return record.dagster_run.run_id
    return None


def shop_tag(session, run: RuleRun) -> str:
    shop_id = session.scalar(select(Shop.id).where(Shop.project_id == run.project_id, Shop.platform == "shopify").order_by(Shop.id))
    return f"shop-{shop_id if shop_id is not None else f'project-{run.project_id}'}"


def tenant_tag(run: RuleRun) -> str:
    return f"tenant-{run.tenant_id}"


def build_apply_dispatch(session, event: PendingEvent, instance: dg.DagsterInstance | None = None) -> Dispatch:
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
    if run.state == RunState.APPLYING.value and run.lease_expires_at is not None and run.lease_expires_at >= utcnow():
        return Dispatch(None, settled=f"applying:{run_id}")  # its writer is on it
    if run.state not in APPLYABLE_STATES and run.state != RunState.APPLYING.value:
        raise ValueError(f"rule run {run_id} is {run.state}; nothing to apply")
    if instance is not None and (existing := in_flight_run(instance, run_id)):
        return Dispatch(None, settled=f"in-flight:{existing}")
    job = revert_run_job if run.kind == "revert" else apply_run_job
    return Dispatch(
        dg.RunRequest(
            run_key=event.id,
            job_name=job.name,
            partition_key=run_id,
            tags={"calibr/outbox_event": event.id, "calibr/trigger": APPLY_REQUESTED, "calibr/actor": f"sensor:{event.id[:8]}",
                  SHOP_TAG: shop_tag(session, run), TENANT_TAG: tenant_tag(run)},
        ),
        partitions={RULE_RUN_PARTITIONS.name: [run_id]},
        collapse_key=run_id,
    )


@dg.sensor(
    jobs=[apply_run_job, revert_run_job],
    minimum_interval_seconds=5,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Reads `job.rules.apply` events from the outbox and launches apply_run (revert_run for revert runs) on the "
        "run's partition; run_key = event id; several events for one run become one run; runs already APPLYING or "
        "with a queued Dagster run get none; malformed events are dead-lettered."
    ),
)
def rules_apply_sensor(context: dg.SensorEvaluationContext, warehouse: WarehouseResource) -> dg.SensorResult:
    return dispatch_outbox(context, warehouse, APPLY_REQUESTED, lambda session, event: build_apply_dispatch(session, event, context.instance))


@dg.sensor(
    jobs=[apply_run_job, revert_run_job],
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Finds runs APPLYING whose writer's lease expired (a killed or lost apply): resumes each once, and alerts "
        "(severity error) when one is stuck again."
    ),
)
def stuck_runs_sensor(context: dg.SensorEvaluationContext, warehouse: WarehouseResource, alerts: AlertsResource):
    now = utcnow()
    requests: list[dg.RunRequest] = []
    to_alert: list[tuple[str, int, str]] = []
    with warehouse.session() as session:
        stuck = session.scalars(
            select(RuleRun).where(RuleRun.state == RunState.APPLYING.value, or_(RuleRun.lease_expires_at.is_(None), RuleRun.lease_expires_at < now))
        ).all()
        for run in stuck:
            meta = dict(run.run_metadata or {})
            if in_flight_run(context.instance, run.id):
                continue  # a resume is already queued or running
            resumes = int(meta.get("auto_resumes", 0))
            if resumes < AUTO_RESUMES:
                job = revert_run_job if run.kind == "revert" else apply_run_job
                requests.append(dg.RunRequest(
                    run_key=f"resume:{run.id}:{resumes + 1}", job_name=job.name, partition_key=run.id,
                    tags={"calibr/actor": "stuck-run-sensor", SHOP_TAG: shop_tag(session, run), TENANT_TAG: tenant_tag(run)},
                ))
                meta["auto_resumes"] = resumes + 1
                run.run_metadata = meta
            elif not meta.get("stuck_alerted"):
                since = run.lease_expires_at or run.started_at
                to_alert.append((run.id, run.tenant_id, f"run {run.id} is still APPLYING without a writer (lease expired {since:%Y-%m-%d %H:%M:%S} UTC) after {resumes} automatic resume(s)"))
                meta["stuck_alerted"] = now.isoformat()
                run.run_metadata = meta
    for run_id, tenant_id, message in to_alert:
        alerts.send(
            Alert(severity="error", title=f"Rule run {run_id} is stuck in APPLYING", message=message + "; resume it with `calibr runs apply RUN_ID`",
                  source="calibr:stuck_runs_sensor", details={"run_id": run_id}, dedup_key=f"stuck-run:{run_id}"),
            warehouse, tenant_id=tenant_id,
        )
    if not requests:
        return dg.SkipReason(f"no run to resume ({len(to_alert)} alerted)")
    return requests

"""Operations: synthetic probes, the monthly SLA report, run-failure alerts."""

import os
import time
from datetime import date, datetime, timedelta, timezone

import dagster as dg
import requests
from sqlalchemy import delete, select

from calibr_pipeline.connectors.alerts import Alert
from calibr_pipeline.defs.partitions import FIRST_MONTH_START
from calibr_pipeline.defs.resources import AlertsResource, WarehouseResource
from calibr_pipeline.domain.sla import SLA_TARGET_PCT, Probe, uptime
from calibr_pipeline.warehouse.models import ProbeResult, SlaReport

PROBE_TARGETS_ENV = "CALIBR_PROBE_TARGETS"
DEFAULT_PROBE_TARGETS = "calibr_health=http://127.0.0.1:9464/health,dagster_webserver=http://127.0.0.1:3000/server_info"


def probe_targets(environ=None) -> dict[str, str]:
    """``name=url`` pairs from CALIBR_PROBE_TARGETS (comma-separated)."""
    raw = (environ or os.environ).get(PROBE_TARGETS_ENV, DEFAULT_PROBE_TARGETS)
    targets = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        name, sep, url = item.partition("=")
        if not sep or not url.startswith(("http://", "https://")):
            raise dg.Failure(f"{PROBE_TARGETS_ENV} entry {item!r} must look like name=http://host:port/path")
        targets[name.strip()] = url.strip()
    return targets


API_URL_ENV = "CALIBR_API_URL"
API_PROBE_TOKEN_ENV = "CALIBR_API_PROBE_TOKEN"
DEFAULT_API_URL = "http://127.0.0.1:8000"
API_PROBE_PROJECT_ENV = "CALIBR_API_PROBE_PROJECT"
# The seed's API probes: (target name, path, cron). They read with the read-only token in
# CALIBR_API_PROBE_TOKEN (the demo creates one); `{project}` is CALIBR_API_PROBE_PROJECT,
# a project of the probe token's tenant.
API_PROBES: tuple[tuple[str, str, str], ...] = (
    ("api_health", "/api/health", "* * * * *"),
    ("api_price_changes", "/api/v1/price-changes?limit=1", "*/5 * * * *"),
    ("api_analytics_overview", "/api/v1/analytics/{project}/overview", "*/10 * * * *"),
    ("api_competitors", "/api/v1/competitors?limit=1", "*/15 * * * *"),
    ("api_copilot", "/api/v1/copilot", "*/15 * * * *"),
)


def api_probe_targets(names, environ=None) -> dict[str, str]:
    env = environ or os.environ
    base = (env.get(API_URL_ENV) or DEFAULT_API_URL).rstrip("/")
    paths = {name: path for name, path, _ in API_PROBES}
    unknown = sorted(set(names) - set(paths))
    if unknown:
        raise dg.Failure(f"unknown API probe(s) {unknown}; known: {sorted(paths)}")
    project = env.get(API_PROBE_PROJECT_ENV) or "acme-outdoor"  # the demo's first project
    return {name: base + paths[name].replace("{project}", project) for name in names}


class ProbeConfig(dg.Config):
    timeout_s: float = 5.0
    # Probe these API targets (names from API_PROBES) instead of CALIBR_PROBE_TARGETS.
    api_probes: list[str] | None = None


@dg.op(description="Probe each target once (HTTP GET, 2xx = up) and record the result in `probe_results`.")
def run_probes(context: dg.OpExecutionContext, config: ProbeConfig, warehouse: WarehouseResource) -> dict:
    results = {}
    with warehouse.session() as session:
        targets = api_probe_targets(config.api_probes) if config.api_probes else probe_targets()
        token = os.environ.get(API_PROBE_TOKEN_ENV)
        headers = {"Authorization": f"Bearer {token}"} if config.api_probes and token else {}
        for name, url in targets.items():
            started = time.monotonic()
            status, error = None, None
            try:
                response = requests.get(url, timeout=config.timeout_s, headers=headers)
                status = response.status_code
                ok = 200 <= status < 300
                if not ok:
                    error = f"HTTP {status}"
            except requests.RequestException as exc:
                ok, error = False, f"{type(exc).__name__}: {str(exc)[:300]}"
            latency = int((time.monotonic() - started) * 1000)
            session.add(ProbeResult(target=name, url=url, ok=ok, status_code=status, latency_ms=latency, error=error))
            results[name] = {"ok": ok, "status": status, "latency_ms": latency, "error": error}
            (context.log.info if ok else context.log.warning)(f"probe {name} {url}: {'up' if ok else error} in {latency} ms")
    return results


@dg.job(description="Synthetic probes of /health and the Dagster webserver (targets: CALIBR_PROBE_TARGETS).")
def synthetic_probes():
    run_probes()


probe_schedule = dg.ScheduleDefinition(
    name="synthetic_probe_schedule",
    job=synthetic_probes,
    cron_schedule="*/5 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every 5 minutes: probe the endpoints and record the results.",
)

# Running by default only where the API is configured (the demo sets CALIBR_API_URL), so a
# machine without `calibr api` does not record a failed probe every minute.
api_probe_schedules = [
    dg.ScheduleDefinition(
        name=f"{name}_probe_schedule",
        job=synthetic_probes,
        cron_schedule=cron,
        execution_timezone="UTC",
        run_config={"ops": {"run_probes": {"config": {"api_probes": [name]}}}},
        default_status=dg.DefaultScheduleStatus.RUNNING if os.environ.get(API_URL_ENV) else dg.DefaultScheduleStatus.STOPPED,
        description=f"Probe the HTTP API's {path} ({cron}) with the read-only probe token; results in `probe_results`.",
    )
    for name, path, cron in API_PROBES
]

MONTHLY = dg.MonthlyPartitionsDefinition(start_date=FIRST_MONTH_START.isoformat(), timezone="UTC", end_offset=1)


@dg.asset(
    partitions_def=MONTHLY,
    group_name="operations",
    kinds={"sql"},
    description=f"Monthly uptime per probe target from `probe_results`, against the {SLA_TARGET_PCT} % SLA, in `sla_reports`.",
)
def sla_report(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    month = date.fromisoformat(context.partition_key)
    start = datetime(month.year, month.month, 1, tzinfo=timezone.utc)
    end = datetime(month.year + (month.month == 12), month.month % 12 + 1, 1, tzinfo=timezone.utc)
    rows = {}
    with warehouse.session() as session:
        probes: dict[str, list[Probe]] = {}
        for target, at, ok in session.execute(
            select(ProbeResult.target, ProbeResult.probed_at, ProbeResult.ok).where(ProbeResult.probed_at >= start, ProbeResult.probed_at < end)
        ):
            probes.setdefault(target, []).append(Probe(at, ok))
        session.execute(delete(SlaReport).where(SlaReport.month == month))
        for target, samples in sorted(probes.items()):
            result = uptime(samples)
            session.add(
                SlaReport(
                    month=month, target=target, probes=result.probes, successes=result.successes, uptime_pct=result.uptime_pct,
                    sla_target_pct=SLA_TARGET_PCT, met=result.met, longest_outage_minutes=int(result.longest_outage / timedelta(minutes=1)),
                )
            )
            rows[target] = {"uptime_pct": str(result.uptime_pct), "met": result.met, "probes": result.probes}
    table = "| target | uptime % | SLA met | probes |\n|---|---|---|---|\n" + "\n".join(
        f"| {t} | {r['uptime_pct']} | {r['met']} | {r['probes']} |" for t, r in rows.items()
    )
    return dg.MaterializeResult(metadata={"targets": len(rows), "report": dg.MetadataValue.md(table if rows else "no probes this month")})


sla_monthly_job = dg.define_asset_job("sla_monthly", selection=[sla_report], partitions_def=MONTHLY)


@dg.schedule(job=sla_monthly_job, cron_schedule="30 0 * * *", execution_timezone="UTC", default_status=dg.DefaultScheduleStatus.RUNNING,
             description="Daily 00:30 UTC: refresh the current month's SLA report.")
def sla_report_schedule(context: dg.ScheduleEvaluationContext):
    month = context.scheduled_execution_time.date().replace(day=1).isoformat()
    return dg.RunRequest(run_key=f"sla:{context.scheduled_execution_time.date()}", partition_key=month)


@dg.run_failure_sensor(
    name="run_failure_alerts",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every failed Dagster run is delivered through the alerts resource (Slack, webhook, email, PagerDuty).",
)
def run_failure_alerts(context: dg.RunFailureSensorContext, alerts: AlertsResource, warehouse: WarehouseResource) -> None:
    run = context.dagster_run
    message = context.failure_event.message or "run failed"
    partition = run.tags.get("dagster/partition", "")
    alerts.send(
        Alert(
            severity="error",
            title=f"Dagster run of {run.job_name} failed" + (f" ({partition})" if partition else ""),
            message=message[:2000],
            source=f"dagster:{run.job_name}",
            tenant=run.tags.get("dagster/partition/tenant"),
            details={"run_id": run.run_id, "job": run.job_name, "partition": partition, "tags": {k: v for k, v in run.tags.items() if not k.startswith(".")}},
            dedup_key=f"run-failure:{run.job_name}:{partition}",
        ),
        warehouse,
    )


defs = dg.Definitions(
    assets=[sla_report],
    jobs=[synthetic_probes, sla_monthly_job],
    schedules=[probe_schedule, sla_report_schedule, *api_probe_schedules],
    sensors=[run_failure_alerts],
)

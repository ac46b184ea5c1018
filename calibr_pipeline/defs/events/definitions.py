"""Events area: the monthly archival of old events to cold storage (docs/events.md)."""

import dagster as dg

from calibr_pipeline import settings
from calibr_pipeline.defs.resources import WarehouseResource

class ArchiveEventsConfig(dg.Config):
    older_than: str = ""  # e.g. "90d"; empty: $CALIBR_EVENTS_ARCHIVE_OLDER_THAN (default 90d)
    root: str = ""  # folder or fsspec URL; empty: $CALIBR_EVENTS_ARCHIVE_URL or $CALIBR_HOME/archive/events
    file_format: str = ""  # jsonl.gz | parquet; empty: $CALIBR_EVENTS_ARCHIVE_FORMAT

@dg.op(description="Move event_log rows and dispatched outbox rows older than `older_than` to month x tenant archive files.")
def archive_old_events(context: dg.OpExecutionContext, config: ArchiveEventsConfig, warehouse: WarehouseResource) -> dict:
    from calibr_pipeline.events.archive import archive_events, parse_age

    loaded = settings.require_valid_environment()
    warehouse.ensure_schema()
    report = archive_events(
        warehouse.resolved_url,
        root=config.root or loaded.events_archive_url,
        older_than=parse_age(config.older_than or loaded.EVENTS_ARCHIVE_OLDER_THAN),
        file_format=config.file_format or loaded.EVENTS_ARCHIVE_FORMAT,
    )
    for f in report.files:
        context.log.info(f"archived {f.rows} {f.table} row(s) of {f.month} / {f.tenant} to {f.path} (sha256 {f.sha256[:12]}…)")
    summary = {"rows": report.rows, "files": len(report.files), "cutoff": report.cutoff.isoformat()}
    context.add_output_metadata(summary)
    return summary

@dg.job(description="Archive old events to cold storage (calibr events archive); restore with `calibr events restore --month`.")
def archive_events_job():
    archive_old_events()

monthly_event_archive = dg.ScheduleDefinition(
    name="monthly_event_archive",
    job=archive_events_job,
    cron_schedule="0 2 1 * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="02:00 UTC on the 1st of every month: archive events older than CALIBR_EVENTS_ARCHIVE_OLDER_THAN (90d).",
)

defs = dg.Definitions(jobs=[archive_events_job], schedules=[monthly_event_archive])

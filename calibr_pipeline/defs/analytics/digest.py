"""The weekly insight digest asset (week × tenant) and its delivery through the alerts resource."""

import datetime as dt
from datetime import timedelta
from pathlib import Path

import dagster as dg
from sqlalchemy import delete

from calibr_pipeline import settings
from calibr_pipeline.connectors.alerts import Alert, AlertAttachment
from calibr_pipeline.defs.partitions import FIRST_WEEK_START, TENANT_PARTITIONS
from calibr_pipeline.defs.resources import AlertsResource, WarehouseResource
from calibr_pipeline.services.digest import build_digest, write_digest
from calibr_pipeline.warehouse.models import WeeklyDigest
from calibr_pipeline.warehouse.tenancy import tenant_by_slug

# ISO weeks, Monday to Sunday (day_offset=1); a week's partition exists once it is over.
WEEKLY_PARTITIONS = dg.WeeklyPartitionsDefinition(start_date=FIRST_WEEK_START.isoformat(), day_offset=1, timezone="UTC")
WEEKLY_TENANT_PARTITIONS = dg.MultiPartitionsDefinition({"week": WEEKLY_PARTITIONS, "tenant": TENANT_PARTITIONS})


class DigestConfig(dg.Config):
    # Where digest.md and the charts go; empty means $CALIBR_HOME/digests.
    directory: str = ""
    deliver: bool = True


# Sent Mondays 07:00 UTC; last week's digest must exist by 09:00.
DIGEST_FRESHNESS = dg.FreshnessPolicy.cron(deadline_cron="0 9 * * 1", lower_bound_delta=timedelta(hours=3), timezone="UTC")


@dg.asset(
    partitions_def=WEEKLY_TENANT_PARTITIONS,
    freshness_policy=DIGEST_FRESHNESS,
    group_name="analytics",
    kinds={"python", "markdown"},
    deps=[dg.AssetKey("analytics_overview"), dg.AssetKey("top_skus"), dg.AssetKey("competitor_trends")],
    description=(
        "The tenant's weekly insight digest: Markdown (revenue, margin, units, price index, runs, top SKUs, "
        "movers, trend flags) with matplotlib charts, stored in `weekly_digests` and on disk, and delivered "
        "through the alerts resource (e-mail with the charts attached, Slack summary with a link)."
    ),
)
def weekly_digest(
    context: dg.AssetExecutionContext, config: DigestConfig, warehouse: WarehouseResource, alerts: AlertsResource
) -> dg.MaterializeResult:
    keys = context.partition_key.keys_by_dimension
    week_start, slug = dt.date.fromisoformat(keys["week"]), keys["tenant"]
    root = Path(config.directory) if config.directory else settings.calibr_home() / "digests"
    with warehouse.session() as session:
        tenant = tenant_by_slug(session, slug)
        tenant_id = tenant.id
        digest = build_digest(session, tenant_id, slug, week_start)
        folder = write_digest(digest, root)
        session.execute(delete(WeeklyDigest).where(WeeklyDigest.tenant_id == tenant_id, WeeklyDigest.week_start == week_start))
        session.add(
            WeeklyDigest(tenant_id=tenant_id, week_start=week_start, markdown=digest.markdown, charts=sorted(digest.charts), directory=str(folder))
        )
    deliveries = []
    if config.deliver:
        alert = Alert(
            severity="info",
            title=f"Weekly digest, week of {week_start.isoformat()}",
            message=digest.summary,
            source="analytics/weekly_digest",
            tenant=slug,
            dedup_key=f"digest-{slug}-{week_start.isoformat()}",
            attachments=(
                AlertAttachment("digest.md", "text/markdown", digest.markdown.encode("utf-8")),
                *(AlertAttachment(name, "image/png", data) for name, data in sorted(digest.charts.items())),
            ),
            link=(folder / "digest.md").resolve().as_uri(),
        )
        deliveries = [{"destination": r.destination, "ok": r.ok, "error": r.error} for r in alerts.send(alert, warehouse, tenant_id=tenant_id)]
        failed = [d for d in deliveries if not d["ok"]]
        if failed:
            context.log.warning(f"digest delivery failed for {len(failed)} destination(s): {failed}")
    return dg.MaterializeResult(
        metadata={
            "digest": dg.MetadataValue.md(digest.markdown),
            "path": dg.MetadataValue.path(str(folder / "digest.md")),
            "charts": dg.MetadataValue.json(sorted(digest.charts)),
            "headline": dg.MetadataValue.json(digest.headline),
            "deliveries": dg.MetadataValue.json(deliveries),
        }
    )

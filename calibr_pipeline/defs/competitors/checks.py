"""Data checks on competitor monitoring; a failed check also fires the ``alerts`` resource."""


from datetime import timedelta

import dagster as dg
import pandas as pd
from sqlalchemy import select

from calibr_pipeline.connectors.alerts import Alert
from calibr_pipeline.defs.competitors.assets import competitor_price_observations, normalized_price_snapshots
from calibr_pipeline.defs.partitions import DAILY_TENANT_PARTITIONS, day_tenant
from calibr_pipeline.defs.resources import AlertsResource, WarehouseResource
from calibr_pipeline.domain.data_quality import (
    CONSECUTIVE_FAILURES_ERROR,
    CONSECUTIVE_FAILURES_WARN,
    ERROR_RATE_ERROR,
    ERROR_RATE_WARN,
    Verdict,
    consecutive_failure_verdict,
    consecutive_failures,
    evaluate_error_rate,
)
from calibr_pipeline.services.expectations import validate_snapshots
from calibr_pipeline.domain.trust import (
    QUARANTINE_ALERT_DAYS,
    QUARANTINE_RATE_ERROR,
    QUARANTINE_RATE_WARN,
    quarantine_rate_verdict,
    quarantine_streak,
)
from calibr_pipeline.warehouse.competitor_store import (
    observation_error_classes,
    quarantine_history,
    recent_statuses_by_listing,
)
from calibr_pipeline.warehouse.models import NormalizedPriceSnapshot
from calibr_pipeline.warehouse.tenancy import tenant_by_slug

_SEVERITY = {Verdict.WARN: dg.AssetCheckSeverity.WARN, Verdict.ERROR: dg.AssetCheckSeverity.ERROR}
_ALERT_SEVERITY = {Verdict.WARN: "warning", Verdict.ERROR: "error"}


def _result(verdict: str, metadata: dict, description: str) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=verdict == Verdict.PASS,
        severity=_SEVERITY.get(verdict, dg.AssetCheckSeverity.WARN),
        metadata=metadata,
        description=description,
    )


def _alert_if_failed(
    alerts: AlertsResource, warehouse: WarehouseResource, verdict: str, *, check: str, tenant_slug: str, tenant_id: int, title: str, message: str, details: dict
) -> None:
    if verdict == Verdict.PASS:
        return
    alerts.send(
        Alert(
            severity=_ALERT_SEVERITY[verdict],
            title=title,
            message=message,
            source=check,
            tenant=tenant_slug,
            details=details,
            dedup_key=f"{check}:{tenant_slug}",
        ),
        warehouse,
        tenant_id=tenant_id,
    )


@dg.asset_check(
    asset=competitor_price_observations,
    partitions_def=DAILY_TENANT_PARTITIONS,
    description=(
        f"Share of failed fetches in the partition: below {ERROR_RATE_WARN:%} passes, from "
        f"{ERROR_RATE_WARN:%} warns, above {ERROR_RATE_ERROR:%} is an error."
    ),
)
def observation_error_rate(
    context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource, alerts: AlertsResource
) -> dg.AssetCheckResult:
    partition = day_tenant(context)
    with warehouse.session() as session:
        tenant_id = tenant_by_slug(session, partition.tenant_slug).id
        result = evaluate_error_rate(observation_error_classes(session, tenant_id, partition.day))
    description = f"{result.failed} of {result.total} fetches failed ({result.rate:.2%})"
    _alert_if_failed(
        alerts,
        warehouse,
        result.verdict,
        check="observation_error_rate",
        tenant_slug=partition.tenant_slug,
        tenant_id=tenant_id,
        title=f"Competitor scrape error rate {result.rate:.2%} for {partition.tenant_slug} on {partition.day}",
        message=description,
        details={"by_error_class": result.by_error_class, "total": result.total},
    )
    return _result(
        result.verdict,
        {
            "total": result.total,
            "failed": result.failed,
            "error_rate": dg.MetadataValue.float(float(result.rate)),
            "by_error_class": dg.MetadataValue.json(result.by_error_class),
        },
        description,
    )


@dg.asset_check(
    asset=competitor_price_observations,
    partitions_def=DAILY_TENANT_PARTITIONS,
    description=(
        f"Per listing, the latest fetches in a row that failed: {CONSECUTIVE_FAILURES_WARN} warn, "
        f"{CONSECUTIVE_FAILURES_ERROR} are an error."
    ),
)
def listing_consecutive_failures(
    context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource, alerts: AlertsResource
) -> dg.AssetCheckResult:
    partition = day_tenant(context)
    with warehouse.session() as session:
        tenant_id = tenant_by_slug(session, partition.tenant_slug).id
        statuses = recent_statuses_by_listing(
            session, tenant_id, partition.day, depth=CONSECUTIVE_FAILURES_ERROR, since=partition.day - timedelta(days=30)
        )
    streaks = {listing_id: consecutive_failures(s) for listing_id, s in statuses.items()}
    failing = {str(k): v for k, v in sorted(streaks.items()) if v >= CONSECUTIVE_FAILURES_WARN}
    verdict = consecutive_failure_verdict(max(streaks.values(), default=0))
    description = f"{len(failing)} listing(s) failed {CONSECUTIVE_FAILURES_WARN}+ times in a row"
    _alert_if_failed(
        alerts,
        warehouse,
        verdict,
        check="listing_consecutive_failures",
        tenant_slug=partition.tenant_slug,
        tenant_id=tenant_id,
        title=f"{len(failing)} competitor listing(s) keep failing for {partition.tenant_slug}",
        message=description,
        details={"listings_with_streak": failing},
    )
    return _result(
        verdict,
        {"listings_checked": len(streaks), "failing_listings": dg.MetadataValue.json(failing)},
        description,
    )


@dg.asset_check(
    asset=normalized_price_snapshots,
    partitions_def=DAILY_TENANT_PARTITIONS,
    description=(
        "Great Expectations suite on the partition's snapshots: price > 0, ISO 4217 currency, "
        "required columns not null, one row per listing and day."
    ),
)
def snapshot_expectations(
    context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource, alerts: AlertsResource
) -> dg.AssetCheckResult:
    partition = day_tenant(context)
    with warehouse.session() as session:
        tenant_id = tenant_by_slug(session, partition.tenant_slug).id
        rows = session.execute(
            select(
                NormalizedPriceSnapshot.listing_id,
                NormalizedPriceSnapshot.snapshot_date,
                NormalizedPriceSnapshot.amount,
                NormalizedPriceSnapshot.currency,
                NormalizedPriceSnapshot.observed_at,
            ).where(NormalizedPriceSnapshot.tenant_id == tenant_id, NormalizedPriceSnapshot.snapshot_date == partition.day)
        ).all()
    frame = pd.DataFrame(rows, columns=["listing_id", "snapshot_date", "amount", "currency", "observed_at"])
    report = validate_snapshots(frame)
    verdict = Verdict.PASS if report.success else Verdict.ERROR
    _alert_if_failed(
        alerts,
        warehouse,
        verdict,
        check="snapshot_expectations",
        tenant_slug=partition.tenant_slug,
        tenant_id=tenant_id,
        title=f"Price snapshot expectations failed for {partition.tenant_slug} on {partition.day}",
        message="; ".join(report.failures),
        details={"failures": report.failures},
    )
    return _result(
        verdict,
        {
            "rows": len(frame),
            "expectations": report.evaluated,
            "failed_expectations": dg.MetadataValue.json(report.failures),
        },
        f"{report.evaluated - len(report.failures)} of {report.evaluated} expectations met on {len(frame)} rows",
    )


@dg.asset_check(
    asset=normalized_price_snapshots,
    partitions_def=DAILY_TENANT_PARTITIONS,
    description=(
        f"Share of the partition's snapshots in quarantine (trust score under the project's threshold): "
        f"above {QUARANTINE_RATE_WARN:.0%} warns, above {QUARANTINE_RATE_ERROR:.0%} is an error. A listing "
        f"quarantined {QUARANTINE_ALERT_DAYS} snapshot days in a row raises an alert of its own."
    ),
)
def snapshot_quarantine_rate(
    context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource, alerts: AlertsResource
) -> dg.AssetCheckResult:
    partition = day_tenant(context)
    outcome = evaluate_quarantine(warehouse, alerts, partition.tenant_slug, partition.day)
    return _result(
        outcome["verdict"],
        {
            "snapshots": outcome["snapshots"],
            "quarantined": outcome["quarantined"],
            "quarantine_rate": dg.MetadataValue.float(float(outcome["rate"])),
            "listings_quarantined_3_days": dg.MetadataValue.json(outcome["stuck_listings"]),
        },
        outcome["description"],
    )


def evaluate_quarantine(warehouse: WarehouseResource, alerts, tenant_slug: str, day) -> dict:
    """The quarantine-rate verdict of a tenant-day, alerting on a bad rate and on every listing
    quarantined QUARANTINE_ALERT_DAYS snapshot days in a row (the alert hook)."""
    with warehouse.session() as session:
        tenant_id = tenant_by_slug(session, tenant_slug).id
        flags = session.scalars(
            select(NormalizedPriceSnapshot.quarantined).where(
                NormalizedPriceSnapshot.tenant_id == tenant_id, NormalizedPriceSnapshot.snapshot_date == day
            )
        ).all()
        history = quarantine_history(session, tenant_id, day, QUARANTINE_ALERT_DAYS)
    quarantined = sum(1 for f in flags if f)
    verdict, rate = quarantine_rate_verdict(quarantined, len(flags))
    description = f"{quarantined} of {len(flags)} snapshots quarantined ({rate:.2%})"
    _alert_if_failed(
        alerts,
        warehouse,
        verdict,
        check="snapshot_quarantine_rate",
        tenant_slug=tenant_slug,
        tenant_id=tenant_id,
        title=f"Quarantine rate {rate:.2%} for {tenant_slug} on {day}",
        message=description + " (see v_quarantined_observations)",
        details={"quarantined": quarantined, "snapshots": len(flags)},
    )
    stuck = sorted(l for l, h in history.items() if quarantine_streak(h) >= QUARANTINE_ALERT_DAYS)
    for listing_id in stuck:
        alerts.send(
            Alert(
                severity="warning",
                title=f"Competitor listing {listing_id} quarantined {QUARANTINE_ALERT_DAYS} days in a row ({tenant_slug})",
                message=(
                    f"Listing {listing_id}'s price has been below the trust threshold for {QUARANTINE_ALERT_DAYS} "
                    "snapshot days: rules ignore it. Check the page (v_quarantined_observations has the reasons)."
                ),
                source="listing_quarantined",
                tenant=tenant_slug,
                details={"listing_id": listing_id, "days": QUARANTINE_ALERT_DAYS},
                dedup_key=f"listing_quarantined:{tenant_slug}:{listing_id}",
            ),
            warehouse,
            tenant_id=tenant_id,
        )
    return {
        "verdict": verdict,
        "rate": rate,
        "snapshots": len(flags),
        "quarantined": quarantined,
        "stuck_listings": stuck,
        "description": description,
    }

"""Pricing automation assets, one partition per rule run (a dynamic partition)."""

import dagster as dg
from sqlalchemy import select

from calibr_pipeline.connectors.shopify_admin.writes import read_variant_prices
from calibr_pipeline.defs.resources import ShopifyAdminResource, WarehouseResource
from calibr_pipeline.domain.errors import CalibrError
from calibr_pipeline.monitoring.connector_stats import recording_clients
from calibr_pipeline.services import price_apply, reconciliation
from calibr_pipeline.services.rule_runs import compute_targets, get_run, targets_frozen
from calibr_pipeline.warehouse.models import RuleTarget

RULE_RUN_PARTITIONS = dg.DynamicPartitionsDefinition(name="rule_run")
ACTOR = "dagster"


def _actor(context) -> str:
    return context.run.tags.get("calibr/actor", ACTOR)


def _targets_table(targets: list[RuleTarget], total: int) -> str:
    rows = "\n".join(
        f"| {t.sku} | {t.from_price} | {t.to_price} | {t.proposal_status} | {t.state or '-'} | {(t.reason or '').replace('|', '/')[:80]} |"
        for t in targets
    )
    more = f"\n\n… and {total - len(targets)} more (query `rule_targets`)" if total > len(targets) else ""
    return "| SKU | from | to | proposal | state | reason |\n|---|---|---|---|---|---|\n" + rows + more


class PreviewConfig(dg.Config):
    """``refresh`` recomputes targets already previewed (only while the run is QUEUED)."""

    refresh: bool = False


@dg.asset(
    partitions_def=RULE_RUN_PARTITIONS,
    group_name="pricing",
    kinds={"python", "sql"},
    description=(
        "The preview: per-SKU targets of the run with from/to price and an explain trace, in "
        "`rule_targets`; no writes. Computed once while the run is QUEUED (config `refresh` "
        "recomputes it), frozen once it starts: the apply writes what the preview showed. "
        "Revert runs read the shop to skip variants whose price changed since we wrote it."
    ),
)
def rule_targets(
    context: dg.AssetExecutionContext, config: PreviewConfig, warehouse: WarehouseResource, shopify_admin: ShopifyAdminResource
) -> dg.MaterializeResult:
    run_id = context.partition_key
    with warehouse.session() as session:
        run = get_run(session, run_id)
        shop = price_apply.shop_for_run(session, run)
        shop_prices = None
        if run.kind != "apply" and not targets_frozen(session, run, refresh=config.refresh):
            # Revert and re-apply targets start from what the shop shows now.
            gids = session.scalars(select(RuleTarget.variant_external_id).where(RuleTarget.run_id == run.source_run_id)).all()
            with recording_clients(shopify_admin.client_for, warehouse.resolved_url, dagster_run_id=context.run_id) as client_for:
                client = client_for(shop)
                try:
                    shop_prices = read_variant_prices(client, list(gids))
                finally:
                    client.close()
            # A source write whose answer was lost but which landed is confirmed (and audited)
            # first, so that the revert restores it too.
            source = get_run(session, run.source_run_id)
            maybe = [t for t in session.scalars(select(RuleTarget).where(RuleTarget.run_id == source.id)) if reconciliation.maybe_written(t.state, t.error_code)]
            reconciliation.confirm_written(session, source, maybe, shop_prices, actor=_actor(context))
        try:
            stats = compute_targets(session, run_id, shop_prices=shop_prices, preset=shop.rate_limit_preset, refresh=config.refresh)
        except CalibrError as exc:
            raise dg.Failure(str(exc)) from exc
        # Only what the UI shows: 25 rows (writes first) and one explain trace, not every target.
        shown = session.scalars(
            select(RuleTarget).where(RuleTarget.run_id == run_id).order_by(RuleTarget.action.desc(), RuleTarget.sku).limit(25)
        ).all()
        sample = shown[0].explain if shown else {}
        table = _targets_table(list(shown), total=stats.total)
    return dg.MaterializeResult(
        metadata={
            # A snapshot taken when the preview was computed (usually QUEUED): the apply's
            # state is on applied_prices, and an observation of this partition after the apply.
            "run_state_at_preview": run.state,
            "frozen": stats.frozen,
            "targets": stats.total,
            "to_write": stats.to_write,
            "by_proposal": dg.MetadataValue.json(stats.by_status),
            "products": stats.products,
            "estimated_apply_seconds": dg.MetadataValue.float(stats.estimated_apply_seconds),
            "targets_preview": dg.MetadataValue.md(table),
            "explain_example": dg.MetadataValue.json(sample),
        }
    )


class ApplyConfig(dg.Config):
    """``retry_failed`` moves FAILED targets (all, or ``target_ids``) back to APPLYING first."""

    retry_failed: bool = False
    target_ids: list[int] | None = None
    drain: bool = False  # a DLQ drain: re-check eligibility and count the retry first


@dg.asset(
    partitions_def=RULE_RUN_PARTITIONS,
    deps=[rule_targets],
    group_name="pricing",
    kinds={"shopify", "sql"},
    description=(
        "Writes the run's targets to Shopify with productVariantsBulkUpdate (one request per "
        "product, partial updates allowed), rate-limit aware, retried, idempotent and audited "
        "in `price_audit`; failures end in `price_write_dlq`."
    ),
)
def applied_prices(context: dg.AssetExecutionContext, config: ApplyConfig, warehouse: WarehouseResource, shopify_admin: ShopifyAdminResource) -> dg.MaterializeResult:
    run_id = context.partition_key
    if config.retry_failed:
        with warehouse.session() as session:
            target_ids = config.target_ids
            if config.drain:
                target_ids = reconciliation.prepare_drain_retry(session, run_id, list(config.target_ids or []), actor=_actor(context))
        if config.drain and not target_ids:
            return dg.MaterializeResult(metadata={"run_state": "unchanged", "drained": 0, "write_requests": 0})
        with warehouse.session() as session:
            retried = price_apply.retry_failed(session, run_id, target_ids=target_ids, actor=_actor(context))
        context.log.info(f"{retried} failed target(s) queued for retry")
    try:
        with recording_clients(shopify_admin.client_for, warehouse.resolved_url, dagster_run_id=context.run_id) as client_for:
            summary = price_apply.apply_run(warehouse.resolved_url, run_id, client_for, actor=_actor(context), sleep=shopify_admin.sleep)
    except price_apply.RunTaken as exc:
        # Another writer owns the run (a duplicate launch): this one stops cleanly, writing nothing.
        context.log.warning(str(exc))
        return dg.MaterializeResult(metadata={"run_state": "APPLYING", "taken_by_another_writer": str(exc), "write_requests": 0})
    except CalibrError as exc:
        raise dg.Failure(str(exc)) from exc
    with warehouse.session() as session:
        audit = session.execute(
            select(RuleTarget.sku, RuleTarget.from_price, RuleTarget.to_price, RuleTarget.state)
            .where(RuleTarget.run_id == run_id, RuleTarget.action == "write")
            .order_by(RuleTarget.sku)
            .limit(25)
        ).all()
    table = "| SKU | from | to | state |\n|---|---|---|---|\n" + "\n".join(f"| {s} | {f} | {t} | {st} |" for s, f, t, st in audit)
    # The preview's page keeps the state it was computed in; this observation puts the run's
    # state after the apply next to it, so the rule_targets partition never reads QUEUED for
    # a run that has been applied.
    context.log_event(dg.AssetObservation(asset_key=rule_targets.key, partition=run_id, metadata={"run_state": summary.state}))
    return dg.MaterializeResult(
        metadata={
            "run_state": summary.state,
            "applied": summary.applied,
            "failed": summary.failed,
            "recovered_without_write": summary.recovered,
            "skipped_at_write_time": dg.MetadataValue.json(summary.skipped),
            "write_requests": summary.write_requests,
            "read_requests": summary.read_requests,
            "throttled": summary.throttled,
            "retries": summary.retries,
            "errors": dg.MetadataValue.json(summary.errors),
            "seconds": dg.MetadataValue.float(summary.duration_seconds),
            "audit_preview": dg.MetadataValue.md(table),
        }
    )


class ReconcileConfig(dg.Config):
    schedule_retry: bool = False


@dg.asset(
    partitions_def=RULE_RUN_PARTITIONS,
    deps=[applied_prices],
    group_name="pricing",
    kinds={"shopify", "sql"},
    description=(
        "Reads the applied prices back from the shop; every mismatch is a row in "
        "`reconciliation_mismatches` and an `automation.reconciliation.mismatch` event "
        "(config `schedule_retry` queues a run that writes them again)."
    ),
)
def reconciliation_report(context: dg.AssetExecutionContext, config: ReconcileConfig, warehouse: WarehouseResource, shopify_admin: ShopifyAdminResource) -> dg.MaterializeResult:
    with recording_clients(shopify_admin.client_for, warehouse.resolved_url, dagster_run_id=context.run_id) as client_for:
        report = reconciliation.reconcile_run(
            warehouse.resolved_url, context.partition_key, client_for, actor=_actor(context), schedule_retry=config.schedule_retry
        )
    return dg.MaterializeResult(
        metadata={
            "checked": report.checked,
            "matched": report.matched,
            "mismatched": len(report.mismatches),
            "mismatches": dg.MetadataValue.json(
                [{"sku": m.sku, "expected": str(m.expected), "actual": None if m.actual is None else str(m.actual)} for m in report.mismatches[:50]]
            ),
            "retry_run_id": report.retry_run_id or "",
        }
    )


@dg.asset_check(asset=reconciliation_report, partitions_def=RULE_RUN_PARTITIONS, description="Every applied price is what the shop shows.")
def shop_matches_applied_prices(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
    from calibr_pipeline.warehouse.models import ReconciliationMismatch

    with warehouse.session() as session:
        count = len(session.scalars(select(ReconciliationMismatch.id).where(ReconciliationMismatch.run_id == context.partition_key)).all())
    return dg.AssetCheckResult(passed=count == 0, severity=dg.AssetCheckSeverity.WARN, metadata={"mismatches": count})


@dg.asset(
    partitions_def=RULE_RUN_PARTITIONS,
    deps=[applied_prices],
    group_name="pricing",
    kinds={"sql"},
    description="The run's unresolved dead letters grouped by error type, with recommendations (event `automation.dlq.report`).",
)
def dlq_summary(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    groups = reconciliation.dlq_summary(warehouse.resolved_url, context.partition_key, actor=_actor(context))
    table = "| error type | count | recommendation |\n|---|---|---|\n" + "\n".join(
        f"| {g.error_type} | {g.count} | {g.recommendation} |" for g in groups
    )
    return dg.MaterializeResult(
        metadata={
            "dlq_size": sum(g.count for g in groups),
            "groups": dg.MetadataValue.md(table if groups else "DLQ is empty"),
        }
    )

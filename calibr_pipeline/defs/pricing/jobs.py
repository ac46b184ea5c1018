"""Jobs over the pricing assets; each runs on one rule-run partition."""

import dagster as dg

from calibr_pipeline.defs.pricing.assets import RULE_RUN_PARTITIONS

# A rule run's steps are short and sequential; one process per step would spend more time
# starting Python than applying prices.
IN_PROCESS = dg.in_process_executor

preview_rule_job = dg.define_asset_job(
    "preview_rule",
    selection=dg.AssetSelection.assets("rule_targets"),
    partitions_def=RULE_RUN_PARTITIONS,
    executor_def=IN_PROCESS,
    config={"ops": {"rule_targets": {"config": {"refresh": True}}}},
    description="Compute (or refresh) the run's targets with explain traces; writes nothing to the shop.",
)

apply_run_job = dg.define_asset_job(
    "apply_run",
    selection=dg.AssetSelection.assets("rule_targets", "applied_prices", "dlq_summary"),
    partitions_def=RULE_RUN_PARTITIONS,
    executor_def=IN_PROCESS,
    description="Apply the run: targets (as previewed), writes to Shopify, DLQ summary.",
)

revert_run_job = dg.define_asset_job(
    "revert_run",
    selection=dg.AssetSelection.assets("rule_targets", "applied_prices", "dlq_summary"),
    partitions_def=RULE_RUN_PARTITIONS,
    executor_def=IN_PROCESS,
    description="On a revert run's partition: restore the source run's previous prices, skipping stale variants.",
)

reconcile_run_job = dg.define_asset_job(
    "reconcile_run",
    selection=dg.AssetSelection.assets("reconciliation_report"),
    partitions_def=RULE_RUN_PARTITIONS,
    executor_def=IN_PROCESS,
    description="Read the applied prices back from the shop and report mismatches.",
)

retry_failed_job = dg.define_asset_job(
    "retry_failed",
    selection=dg.AssetSelection.assets("applied_prices", "dlq_summary"),
    partitions_def=RULE_RUN_PARTITIONS,
    executor_def=IN_PROCESS,
    config={"ops": {"applied_prices": {"config": {"retry_failed": True, "target_ids": None}}}},
    description="Retry the run's FAILED targets (all, or config `target_ids`), attempts reset.",
)

PRICING_JOBS = [preview_rule_job, apply_run_job, revert_run_job, reconcile_run_job, retry_failed_job]

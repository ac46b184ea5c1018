import dagster as dg

from calibr_pipeline.defs.pricing.assets import applied_prices, dlq_summary, reconciliation_report, rule_targets, shop_matches_applied_prices
from calibr_pipeline.defs.pricing.jobs import PRICING_JOBS
from calibr_pipeline.defs.pricing.schedules import daily_reconciliation, hourly_dlq_drain
from calibr_pipeline.defs.pricing.sensors import rules_apply_sensor, stuck_runs_sensor

defs = dg.Definitions(
    assets=[rule_targets, applied_prices, reconciliation_report, dlq_summary],
    asset_checks=[shop_matches_applied_prices],
    jobs=PRICING_JOBS,
    schedules=[daily_reconciliation, hourly_dlq_drain],
    sensors=[rules_apply_sensor, stuck_runs_sensor],
)

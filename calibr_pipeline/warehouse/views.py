"""Analyst views, recreated on every upgrade (engine.upgrade_to_head) and copied to ``sql/views/`` (``make sql``).

Portable SQL for SQLite and Postgres. Money columns are exact decimals; on SQLite they are
stored as text, hence ``CAST(... AS NUMERIC)`` wherever a view does arithmetic or sorting.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

VIEWS: dict[str, str] = {
    "v_market_position": """
SELECT
    t.slug AS tenant,
    p.slug AS project,
    mp.position_date,
    v.sku,
    pr.title AS product_title,
    pr.product_type,
    pr.vendor,
    mp.currency,
    CAST(mp.our_price AS NUMERIC) AS our_price,
    CAST(v.cost AS NUMERIC) AS cost,
    mp.competitor_count,
    CAST(mp.lowest_price AS NUMERIC) AS lowest_price,
    CAST(mp.median_price AS NUMERIC) AS median_price,
    CAST(mp.highest_price AS NUMERIC) AS highest_price,
    CAST(mp.spread AS NUMERIC) AS spread,
    CAST(mp.spread_pct AS NUMERIC) AS spread_pct,
    CAST(mp.price_index AS NUMERIC) AS price_index,
    mp.position,
    c.name AS lowest_competitor
FROM market_positions mp
JOIN tenants t ON t.id = mp.tenant_id
JOIN projects p ON p.id = mp.project_id
JOIN variants v ON v.id = mp.variant_id
JOIN products pr ON pr.id = v.product_id
LEFT JOIN competitors c ON c.id = mp.lowest_competitor_id
""",
    "v_price_spread": """
SELECT
    t.slug AS tenant,
    p.slug AS project,
    s.snapshot_date,
    v.sku,
    s.project_currency AS currency,
    COUNT(*) AS competitor_prices,
    SUM(CASE WHEN s.on_sale THEN 1 ELSE 0 END) AS on_sale_prices,
    SUM(CASE WHEN s.availability = 'OutOfStock' THEN 1 ELSE 0 END) AS out_of_stock,
    MIN(CAST(s.amount_in_project_currency AS NUMERIC)) AS lowest,
    MAX(CAST(s.amount_in_project_currency AS NUMERIC)) AS highest,
    MAX(CAST(s.amount_in_project_currency AS NUMERIC)) - MIN(CAST(s.amount_in_project_currency AS NUMERIC)) AS spread,
    AVG(CAST(s.amount_in_project_currency AS NUMERIC)) AS average,
    CAST(v.price AS NUMERIC) AS our_price
FROM normalized_price_snapshots s
JOIN tenants t ON t.id = s.tenant_id
JOIN projects p ON p.id = s.project_id
JOIN variants v ON v.id = s.variant_id
WHERE s.amount_in_project_currency IS NOT NULL
GROUP BY t.slug, p.slug, s.snapshot_date, v.sku, s.project_currency, v.price
""",
    "v_scrape_health": """
SELECT
    t.slug AS tenant,
    p.slug AS project,
    o.observation_date,
    c.name AS competitor,
    c.domain,
    COUNT(*) AS fetches,
    SUM(CASE WHEN o.status = 'ok' THEN 1 ELSE 0 END) AS ok,
    SUM(CASE WHEN o.status <> 'ok' THEN 1 ELSE 0 END) AS failed,
    1.0 * SUM(CASE WHEN o.status <> 'ok' THEN 1 ELSE 0 END) / COUNT(*) AS error_rate,
    SUM(CASE WHEN o.error_class IN ('dns', 'connection', 'timeout', 'tls') THEN 1 ELSE 0 END) AS transport_errors,
    SUM(CASE WHEN o.error_class IN ('http_4xx', 'http_5xx', 'rate_limited') THEN 1 ELSE 0 END) AS http_errors,
    SUM(CASE WHEN o.error_class LIKE 'parse_%' OR o.error_class IN ('currency_unknown', 'malformed_body', 'variant_not_found') THEN 1 ELSE 0 END) AS extraction_errors,
    SUM(CASE WHEN o.error_class IN ('invalid_url', 'blocked_url') THEN 1 ELSE 0 END) AS policy_errors,
    SUM(CASE WHEN o.attempts > 1 THEN 1 ELSE 0 END) AS retried,
    AVG(o.elapsed_ms) AS avg_elapsed_ms,
    MAX(o.fetched_at) AS last_fetched_at
FROM competitor_price_observations o
JOIN tenants t ON t.id = o.tenant_id
JOIN projects p ON p.id = o.project_id
JOIN competitor_listings l ON l.id = o.listing_id
JOIN competitors c ON c.id = l.competitor_id
GROUP BY t.slug, p.slug, o.observation_date, c.name, c.domain
""",
    "v_competitor_observations": """
SELECT
    o.id AS observation_id,
    t.slug AS tenant,
    p.slug AS project,
    o.observation_date,
    o.fetched_at,
    v.sku,
    c.name AS competitor,
    o.url,
    o.status,
    o.http_status,
    o.error_class,
    o.error_message,
    CAST(o.amount AS NUMERIC) AS amount,
    o.currency,
    CAST(o.regular_amount AS NUMERIC) AS regular_amount,
    o.availability,
    o.extraction_source,
    o.attempts,
    o.elapsed_ms
FROM competitor_price_observations o
JOIN tenants t ON t.id = o.tenant_id
JOIN projects p ON p.id = o.project_id
JOIN competitor_listings l ON l.id = o.listing_id
JOIN competitors c ON c.id = l.competitor_id
JOIN variants v ON v.id = l.variant_id
""",
    "v_audit": """
SELECT
    e.id AS event_id,
    e.created_at,
    t.slug AS tenant,
    p.slug AS project,
    e.run_id,
    e.event_type,
    e.actor,
    e.correlation_id,
    e.payload
FROM event_log e
LEFT JOIN tenants t ON t.id = e.tenant_id
LEFT JOIN projects p ON p.id = e.project_id
""",
    "v_price_audit": """
SELECT
    a.id AS audit_id,
    a.created_at,
    t.slug AS tenant,
    p.slug AS project,
    a.run_id,
    r.kind AS run_kind,
    a.target_id,
    a.sku,
    a.event_type,
    a.actor,
    CAST(a.from_price AS NUMERIC) AS from_price,
    CAST(a.to_price AS NUMERIC) AS to_price,
    a.currency,
    a.correlation_id,
    a.idempotency_key,
    a.note,
    rt.explain,
    r.explain_base
FROM price_audit a
JOIN tenants t ON t.id = a.tenant_id
JOIN projects p ON p.id = a.project_id
JOIN rule_runs r ON r.id = a.run_id
JOIN rule_targets rt ON rt.id = a.target_id
""",
    "v_rule_runs": """
SELECT
    r.id AS run_id,
    t.slug AS tenant,
    p.slug AS project,
    pr.name AS rule,
    r.kind,
    r.state,
    r.requested_by,
    r.queued_at,
    r.started_at,
    r.completed_at,
    r.failed_at,
    m.targets_total,
    m.targets_write,
    m.targets_applied,
    m.targets_failed,
    CAST(m.success_rate AS NUMERIC) AS success_rate,
    CAST(m.duration_seconds AS NUMERIC) AS duration_seconds,
    m.dlq_size,
    m.throttled_count,
    m.retry_count,
    m.write_requests
FROM rule_runs r
JOIN tenants t ON t.id = r.tenant_id
JOIN projects p ON p.id = r.project_id
LEFT JOIN pricing_rules pr ON pr.id = r.rule_id
LEFT JOIN rule_run_metrics m ON m.run_id = r.id
""",
    "v_sla_monthly": """
SELECT
    s.month,
    s.target,
    s.probes,
    s.successes,
    CAST(s.uptime_pct AS NUMERIC) AS uptime_pct,
    CAST(s.sla_target_pct AS NUMERIC) AS sla_target_pct,
    s.met,
    s.longest_outage_minutes,
    s.computed_at
FROM sla_reports s
""",
}

# Issue 10: competitor observations the trust score put in quarantine (rules never price on them).
VIEWS["v_quarantined_observations"] = """
SELECT
    t.slug AS tenant,
    p.slug AS project,
    s.snapshot_date,
    s.listing_id,
    s.observation_id,
    v.sku,
    c.name AS competitor,
    l.url,
    CAST(s.amount AS NUMERIC) AS amount,
    s.currency,
    CAST(s.amount_in_project_currency AS NUMERIC) AS amount_in_project_currency,
    CAST(s.trust_score AS NUMERIC) AS trust_score,
    s.trust_reasons AS reasons,
    s.observed_at
FROM normalized_price_snapshots s
JOIN tenants t ON t.id = s.tenant_id
JOIN projects p ON p.id = s.project_id
JOIN variants v ON v.id = s.variant_id
JOIN competitors c ON c.id = s.competitor_id
JOIN competitor_listings l ON l.id = s.listing_id
WHERE s.quarantined
"""


# --- Analytics sources (issue 8). The dbt models (price_history, sales_daily,
# analytics_overview, top_skus, price_change_frequency) are tables analysts query
# directly; these views read the raw order tables, which exist from the first migration.
VIEWS["v_order_lines"] = """
SELECT
    t.slug AS tenant,
    p.slug AS project,
    o.channel,
    o.name AS order_name,
    o.order_day,
    o.created_at,
    ol.sku,
    ol.quantity,
    CAST(ol.original_unit_price AS NUMERIC) AS original_unit_price,
    CAST(ol.discounted_unit_price AS NUMERIC) AS discounted_unit_price,
    ol.currency,
    COALESCE((SELECT SUM(r.quantity) FROM order_refund_lines r
              WHERE r.shop_id = ol.shop_id AND r.line_external_id = ol.external_id), 0) AS refunded_quantity,
    ol.variant_id IS NULL AS unmapped,
    o.cancelled_at IS NOT NULL AS cancelled
FROM order_lines ol
JOIN orders o ON o.shop_id = ol.shop_id AND o.external_id = ol.order_external_id
JOIN tenants t ON t.id = o.tenant_id
JOIN projects p ON p.id = o.project_id
"""
VIEWS["v_order_sync_errors"] = """
SELECT
    t.slug AS tenant,
    s.name AS shop,
    e.partition_day,
    e.channel,
    e.external_id,
    e.field,
    e.reason,
    e.payload
FROM order_sync_errors e
JOIN tenants t ON t.id = e.tenant_id
JOIN shops s ON s.id = e.shop_id
"""
VIEWS["v_trend_flags"] = """
SELECT
    t.slug AS tenant,
    p.slug AS project,
    f.as_of_day,
    f.sku,
    c.name AS competitor,
    f.flag,
    f.direction,
    f.window_days,
    f.size_pct,
    f.statistic,
    f.explanation
FROM competitor_trends f
JOIN tenants t ON t.id = f.tenant_id
JOIN projects p ON p.id = f.project_id
LEFT JOIN competitors c ON c.id = f.competitor_id
"""

def create_statement(name: str) -> str:
    return f"CREATE VIEW {name} AS{VIEWS[name].rstrip()}"


VIEWS_HASH_KEY = "views_sha256"


def views_hash() -> str:
    return hashlib.sha256("\n".join(create_statement(n) for n in sorted(VIEWS)).encode()).hexdigest()


def recreate_views(connection) -> bool:
    """Drop and create every view on ``connection`` unless the installed set is current.

    The hash check keeps concurrent runs, which all call this at start-up, from taking
    exclusive locks on views analysts are reading.
    """
    from sqlalchemy import text

    desired = views_hash()
    installed = connection.execute(
        text("SELECT value FROM warehouse_meta WHERE key = :key"), {"key": VIEWS_HASH_KEY}
    ).scalar()
    if installed == desired:
        return False
    for name in VIEWS:
        connection.execute(text(f"DROP VIEW IF EXISTS {name}"))
        connection.execute(text(create_statement(name)))
    connection.execute(text("DELETE FROM warehouse_meta WHERE key = :key"), {"key": VIEWS_HASH_KEY})
    connection.execute(text("INSERT INTO warehouse_meta (key, value) VALUES (:key, :value)"), {"key": VIEWS_HASH_KEY, "value": desired})
    return True


def render_sql_file(name: str) -> str:
    return (
        f"-- {name}: generated from calibr_pipeline/warehouse/views.py by `make sql`; "
        "`calibr db upgrade` recreates it in the warehouse.\n"
        f"{create_statement(name)};\n"
    )


def write_sql_files(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name in VIEWS:
        path = directory / f"{name}.sql"
        path.write_text(render_sql_file(name), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write_sql_files(Path(__file__).resolve().parents[2] / "sql" / "views"):
        print(path)

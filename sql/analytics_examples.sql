-- Analytics example queries (docs/analytics.md). SQLite and PostgreSQL alike.
-- Money in the analytics models is in integer minor units: divide by 100 (1 for JPY).

-- Revenue, margin % and price index per project over the last 30 days of data.
SELECT project_slug, currency,
       SUM(revenue_minor) / 100.0 AS revenue,
       ROUND(100.0 * SUM(margin_minor) / NULLIF(SUM(revenue_minor), 0), 1) AS margin_pct,
       AVG(price_index) AS avg_price_index,
       SUM(price_changes) AS price_changes
FROM analytics_overview
WHERE day >= (SELECT MAX(day) FROM calendar_days) - 29   -- SQLite: DATE((SELECT MAX(day) FROM calendar_days), '-29 days')
GROUP BY project_slug, currency;

-- The EU Omnibus reference price for every SKU today: announce a discount against this.
SELECT sku, currency, price_minor / 100.0 AS price, omnibus_low_30d_minor / 100.0 AS lowest_price_prior_30_days
FROM price_history
WHERE day = (SELECT MAX(day) FROM calendar_days)
ORDER BY sku;

-- Last week's biggest movers.
SELECT project_id, sku, value / 100.0 AS revenue_change, previous_value / 100.0 AS revenue_last_week
FROM top_skus
WHERE metric = 'mover' AND week_start = (SELECT MAX(week_start) FROM top_skus)
ORDER BY rank;

-- Who changes prices most: competitors with the most changes per SKU-week.
SELECT competitor_id, COUNT(*) AS sku_weeks, AVG(change_count) AS changes_per_sku_week,
       AVG(mean_abs_change_minor) / 100.0 AS avg_abs_change
FROM price_change_frequency
WHERE actor = 'competitor'
GROUP BY competitor_id
ORDER BY changes_per_sku_week DESC;

-- Today's trend flags, with their explanations.
SELECT tenant, project, sku, competitor, flag, size_pct, statistic, explanation
FROM v_trend_flags
WHERE as_of_day = (SELECT MAX(as_of_day) FROM competitor_trends)
ORDER BY flag, size_pct;

-- Order records that failed validation, and why.
SELECT tenant, shop, partition_day, external_id, field, reason FROM v_order_sync_errors ORDER BY partition_day DESC;

-- Units sold vs our price per SKU and day (did the repricing move demand?).
SELECT s.sku, s.day, s.net_units, h.price_minor / 100.0 AS our_price, s.margin_minor / 100.0 AS margin
FROM sales_daily s
JOIN price_history h ON h.variant_id = s.variant_id AND h.day = s.day
ORDER BY s.sku, s.day;

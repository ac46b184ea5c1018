-- v_market_position: generated from calibr_pipeline/warehouse/views.py by `make sql`; `calibr db upgrade` recreates it in the warehouse.
CREATE VIEW v_market_position AS
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
LEFT JOIN competitors c ON c.id = mp.lowest_competitor_id;

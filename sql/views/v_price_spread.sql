-- v_price_spread: generated from calibr_pipeline/warehouse/views.py by `make sql`; `calibr db upgrade` recreates it in the warehouse.
CREATE VIEW v_price_spread AS
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
GROUP BY t.slug, p.slug, s.snapshot_date, v.sku, s.project_currency, v.price;

-- v_trend_flags: generated from calibr_pipeline/warehouse/views.py by `make sql`; `calibr db upgrade` recreates it in the warehouse.
CREATE VIEW v_trend_flags AS
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
LEFT JOIN competitors c ON c.id = f.competitor_id;

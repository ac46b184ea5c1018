-- v_competitor_observations: generated from calibr_pipeline/warehouse/views.py by `make sql`; `calibr db upgrade` recreates it in the warehouse.
CREATE VIEW v_competitor_observations AS
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
JOIN variants v ON v.id = l.variant_id;

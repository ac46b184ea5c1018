-- v_quarantined_observations: generated from calibr_pipeline/warehouse/views.py by `make sql`; `calibr db upgrade` recreates it in the warehouse.
CREATE VIEW v_quarantined_observations AS
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
WHERE s.quarantined;

-- v_scrape_health: generated from calibr_pipeline/warehouse/views.py by `make sql`; `calibr db upgrade` recreates it in the warehouse.
CREATE VIEW v_scrape_health AS
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
GROUP BY t.slug, p.slug, o.observation_date, c.name, c.domain;

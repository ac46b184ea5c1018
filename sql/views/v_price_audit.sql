-- v_price_audit: generated from calibr_pipeline/warehouse/views.py by `make sql`; `calibr db upgrade` recreates it in the warehouse.
CREATE VIEW v_price_audit AS
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
JOIN rule_targets rt ON rt.id = a.target_id;

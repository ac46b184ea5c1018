-- v_audit: generated from calibr_pipeline/warehouse/views.py by `make sql`; `calibr db upgrade` recreates it in the warehouse.
CREATE VIEW v_audit AS
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
LEFT JOIN projects p ON p.id = e.project_id;

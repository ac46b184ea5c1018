-- v_rule_runs: generated from calibr_pipeline/warehouse/views.py by `make sql`; `calibr db upgrade` recreates it in the warehouse.
CREATE VIEW v_rule_runs AS
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
LEFT JOIN rule_run_metrics m ON m.run_id = r.id;

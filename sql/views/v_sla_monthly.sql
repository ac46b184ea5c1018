-- v_sla_monthly: generated from calibr_pipeline/warehouse/views.py by `make sql`; `calibr db upgrade` recreates it in the warehouse.
CREATE VIEW v_sla_monthly AS
SELECT
    s.month,
    s.target,
    s.probes,
    s.successes,
    CAST(s.uptime_pct AS NUMERIC) AS uptime_pct,
    CAST(s.sla_target_pct AS NUMERIC) AS sla_target_pct,
    s.met,
    s.longest_outage_minutes,
    s.computed_at
FROM sla_reports s;

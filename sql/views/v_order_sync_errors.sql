-- v_order_sync_errors: generated from calibr_pipeline/warehouse/views.py by `make sql`; `calibr db upgrade` recreates it in the warehouse.
CREATE VIEW v_order_sync_errors AS
SELECT
    t.slug AS tenant,
    s.name AS shop,
    e.partition_day,
    e.channel,
    e.external_id,
    e.field,
    e.reason,
    e.payload
FROM order_sync_errors e
JOIN tenants t ON t.id = e.tenant_id
JOIN shops s ON s.id = e.shop_id;

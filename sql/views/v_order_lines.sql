-- v_order_lines: generated from calibr_pipeline/warehouse/views.py by `make sql`; `calibr db upgrade` recreates it in the warehouse.
CREATE VIEW v_order_lines AS
SELECT
    t.slug AS tenant,
    p.slug AS project,
    o.channel,
    o.name AS order_name,
    o.order_day,
    o.created_at,
    ol.sku,
    ol.quantity,
    CAST(ol.original_unit_price AS NUMERIC) AS original_unit_price,
    CAST(ol.discounted_unit_price AS NUMERIC) AS discounted_unit_price,
    ol.currency,
    COALESCE((SELECT SUM(r.quantity) FROM order_refund_lines r
              WHERE r.shop_id = ol.shop_id AND r.line_external_id = ol.external_id), 0) AS refunded_quantity,
    ol.variant_id IS NULL AS unmapped,
    o.cancelled_at IS NOT NULL AS cancelled
FROM order_lines ol
JOIN orders o ON o.shop_id = ol.shop_id AND o.external_id = ol.order_external_id
JOIN tenants t ON t.id = o.tenant_id
JOIN projects p ON p.id = o.project_id;

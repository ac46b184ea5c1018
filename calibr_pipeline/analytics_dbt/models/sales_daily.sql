-- Units, revenue, cost and gross margin per variant, channel and day (money in integer
-- minor units of `currency`: cents, or whole yen).
--   gross_minor      list price × units (original unit price)
--   discounts_minor  what discounts took off
--   refunds_minor    money given back for these units (counted on the sale's day)
--   revenue_minor    gross - discounts - refunds
--   cost_minor       unit cost × units kept (NULL when the variant has no cost)
--   margin_minor     revenue - cost (NULL when the cost is unknown)
select
    tenant_id,
    project_id,
    variant_id,
    sku,
    channel,
    order_day as day,
    currency,
    count(distinct order_external_id) as orders,
    sum(units) as units,
    sum(refunded_units) as refunded_units,
    sum(units) - sum(refunded_units) as net_units,
    sum(gross_minor) as gross_minor,
    sum(gross_minor) - sum(net_sales_minor) as discounts_minor,
    sum(refunded_minor) as refunds_minor,
    sum(net_sales_minor) - sum(refunded_minor) as revenue_minor,
    case when count(cost_minor) = count(*) then sum(cost_minor) end as cost_minor,
    case when count(cost_minor) = count(*) then sum(net_sales_minor) - sum(refunded_minor) - sum(cost_minor) end as margin_minor
from {{ ref('stg_order_lines') }}
group by tenant_id, project_id, variant_id, sku, channel, order_day, currency

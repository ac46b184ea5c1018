-- One row per order line with its refunds folded in, money in integer minor units.
-- Refunds count against the day of the sale (so a day's margin is the margin of the
-- goods sold that day), and refunded units are assumed restocked (no cost).
--
-- The unit cost is the cost valid on the order's day (variant_cost_history, fed by catalog
-- syncs), so a later cost change never rewrites a past day's margin. Before a variant's
-- first recorded cost that first cost applies; the period still open (valid_to NULL) uses
-- the variant's current cost, which that row mirrors; a variant without history uses its
-- current cost. NULL cost = unknown (no margin).
with cost_periods as (
    select variant_id, valid_from, valid_to, cost,
           row_number() over (partition by variant_id order by valid_from) as period
    from {{ source('warehouse', 'variant_cost_history') }}
),
refunds as (
    select shop_id, line_external_id,
           sum(quantity) as refunded_units,
           sum({{ minor_units('amount', 'currency') }}) as refunded_minor
    from {{ source('warehouse', 'order_refund_lines') }}
    group by shop_id, line_external_id
)
select
    l.tenant_id,
    l.project_id,
    l.shop_id,
    l.channel,
    l.order_day,
    l.order_external_id,
    l.external_id as line_external_id,
    l.variant_id,
    coalesce(v.sku, l.sku) as sku,
    l.currency,
    l.quantity as units,
    coalesce(r.refunded_units, 0) as refunded_units,
    {{ minor_units('l.original_unit_price', 'l.currency') }} * l.quantity as gross_minor,
    {{ minor_units('l.discounted_unit_price', 'l.currency') }} * l.quantity as net_sales_minor,
    coalesce(r.refunded_minor, 0) as refunded_minor,
    {{ minor_units("case when h.valid_to is not null then h.cost else v.cost end", 'l.currency') }}
        * (l.quantity - coalesce(r.refunded_units, 0)) as cost_minor
from {{ source('warehouse', 'order_lines') }} l
join {{ source('warehouse', 'orders') }} o
  on o.shop_id = l.shop_id and o.external_id = l.order_external_id
left join {{ source('warehouse', 'variants') }} v on v.id = l.variant_id
left join cost_periods h
  on h.variant_id = l.variant_id
 and (h.valid_from <= l.order_day or h.period = 1)
 and (h.valid_to is null or l.order_day < h.valid_to)
left join refunds r on r.shop_id = l.shop_id and r.line_external_id = l.external_id
where o.cancelled_at is null and o.test = {{ 'FALSE' if target.type == 'postgres' else '0' }}

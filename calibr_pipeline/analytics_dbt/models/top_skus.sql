-- The ten best SKUs per project and ISO week (weeks start on Monday) by revenue, by
-- margin and by units, and the ten biggest movers: the largest revenue change against
-- the previous week, up or down. `value` is minor units for revenue/margin/mover,
-- units for units; `previous_value` is last week's figure.
with weekly as (
    select project_id, tenant_id, variant_id, sku, currency,
           {{ week_start('day') }} as week_start,
           sum(revenue_minor) as revenue_minor,
           sum(margin_minor) as margin_minor,
           sum(net_units) as units
    from {{ ref('sales_daily') }}
    group by project_id, tenant_id, variant_id, sku, currency, {{ week_start('day') }}
),
with_previous as (
    select w.*, coalesce(prev.revenue_minor, 0) as previous_revenue_minor,
           prev.margin_minor as previous_margin_minor, coalesce(prev.units, 0) as previous_units
    from weekly w
    left join weekly prev
      on prev.variant_id = w.variant_id and prev.sku = w.sku and prev.project_id = w.project_id
     and prev.week_start = {{ add_days('w.week_start', -7) }}
),
metrics as (
    select project_id, tenant_id, variant_id, sku, currency, week_start, 'revenue' as metric,
           revenue_minor as value, previous_revenue_minor as previous_value from with_previous
    union all
    select project_id, tenant_id, variant_id, sku, currency, week_start, 'margin',
           margin_minor, previous_margin_minor from with_previous where margin_minor is not null
    union all
    select project_id, tenant_id, variant_id, sku, currency, week_start, 'units',
           units, previous_units from with_previous
    union all
    select project_id, tenant_id, variant_id, sku, currency, week_start, 'mover',
           revenue_minor - previous_revenue_minor, previous_revenue_minor from with_previous
),
ranked as (
    select metrics.*,
           row_number() over (
               partition by project_id, week_start, metric
               order by case when metric = 'mover' then abs(value) else value end desc, sku
           ) as rank
    from metrics
)
select tenant_id, project_id, week_start, metric, rank, variant_id, sku, currency, value, previous_value
from ranked
where rank <= 10

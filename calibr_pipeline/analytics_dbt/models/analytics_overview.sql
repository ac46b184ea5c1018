-- One row per project and day: what the merchant sold and where its prices stood.
--   margin_pct          margin ÷ revenue over the SKUs with a known cost
--   price_index         mean over SKUs of our price ÷ median competitor price (1.00 = at
--                       the market; below 1 = cheaper), from market_positions
--   share_*_pct         share of SKUs with competitor data where we are the lowest /
--                       in the middle / the highest
--   price_changes       our price changes that day (price_history.changed)
--   runs_*              rule runs finishing that day, by outcome
with sales as (
    select project_id, day,
           sum(net_units) as units,
           sum(revenue_minor) as revenue_minor,
           sum(cost_minor) as cost_minor,
           sum(margin_minor) as margin_minor,
           sum(case when margin_minor is not null then revenue_minor end) as revenue_with_cost_minor
    from {{ ref('sales_daily') }}
    group by project_id, day
),
orders as (
    select project_id, order_day as day, count(distinct order_external_id) as orders
    from {{ ref('stg_order_lines') }}
    group by project_id, order_day
),
market as (
    select project_id, position_date as day,
           count(*) as skus_with_market,
           avg(case when price_index is not null then {{ as_number('price_index') }} end) as price_index,
           sum(case when position = 'lowest' then 1 else 0 end) as lowest,
           sum(case when position = 'middle' then 1 else 0 end) as middle,
           sum(case when position = 'highest' then 1 else 0 end) as highest
    from {{ source('warehouse', 'market_positions') }}
    where position <> 'no_data'
    group by project_id, position_date
),
changes as (
    select project_id, day, sum(changed) as price_changes
    from {{ ref('price_history') }}
    group by project_id, day
),
runs as (
    select project_id, {{ to_day('coalesce(completed_at, failed_at)') }} as day,
           sum(case when state = 'APPLIED' then 1 else 0 end) as runs_applied,
           sum(case when state = 'PARTIAL' then 1 else 0 end) as runs_partial,
           sum(case when state = 'FAILED' then 1 else 0 end) as runs_failed
    from {{ source('warehouse', 'rule_runs') }}
    where coalesce(completed_at, failed_at) is not null
    group by project_id, {{ to_day('coalesce(completed_at, failed_at)') }}
)
select
    p.tenant_id,
    p.id as project_id,
    p.slug as project_slug,
    p.currency,
    c.day,
    coalesce(o.orders, 0) as orders,
    coalesce(s.units, 0) as units,
    coalesce(s.revenue_minor, 0) as revenue_minor,
    s.cost_minor,
    s.margin_minor,
    {{ pct('s.margin_minor', 's.revenue_with_cost_minor') }} as margin_pct,
    case when m.price_index is null then null else ROUND({{ as_number('m.price_index') }}, 4) end as price_index,
    coalesce(m.skus_with_market, 0) as skus_with_market,
    {{ pct('m.lowest', 'm.skus_with_market') }} as share_lowest_pct,
    {{ pct('m.middle', 'm.skus_with_market') }} as share_middle_pct,
    {{ pct('m.highest', 'm.skus_with_market') }} as share_highest_pct,
    coalesce(ch.price_changes, 0) as price_changes,
    coalesce(r.runs_applied, 0) as runs_applied,
    coalesce(r.runs_partial, 0) as runs_partial,
    coalesce(r.runs_failed, 0) as runs_failed
from {{ source('warehouse', 'projects') }} p
cross join {{ ref('calendar_days') }} c
left join sales s on s.project_id = p.id and s.day = c.day
left join orders o on o.project_id = p.id and o.day = c.day
left join market m on m.project_id = p.id and m.day = c.day
left join changes ch on ch.project_id = p.id and ch.day = c.day
left join runs r on r.project_id = p.id and r.day = c.day

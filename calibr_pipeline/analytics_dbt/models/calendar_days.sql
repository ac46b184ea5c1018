-- Every day from the first to the last day with any analytics input (orders, refunds,
-- market positions, audited price writes), one row each: the spine the daily models fill.
with recursive bounds as (
    select min(day) as first_day, max(day) as last_day from (
        select min(order_day) as day from {{ source('warehouse', 'orders') }}
        union all select max(order_day) from {{ source('warehouse', 'orders') }}
        union all select max(refund_day) from {{ source('warehouse', 'order_refund_lines') }}
        union all select min(position_date) from {{ source('warehouse', 'market_positions') }}
        union all select max(position_date) from {{ source('warehouse', 'market_positions') }}
        union all select min({{ to_day('created_at') }}) from {{ source('warehouse', 'price_audit') }}
        union all select max({{ to_day('created_at') }}) from {{ source('warehouse', 'price_audit') }}
    ) d
),
days (day) as (
    select first_day from bounds where first_day is not null
    union all
    select {{ add_days('day', 1) }} from days, bounds where day < bounds.last_day
)
select {{ as_date("day") }} as day from days

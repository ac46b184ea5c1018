-- Our price per variant per day, and the EU Omnibus reference price.
--
-- price: the price in force at the end of the day: the last audited write on or before
--   that day; before the first audited write, that write's from_price; a variant never
--   written by Calibrate has its catalog price (source = 'catalog').
-- omnibus_low_30d: the lowest price of the 30 days before this day (Directive
--   98/6/EC art. 6a, as amended by the Omnibus Directive 2019/2161: a price reduction
--   must be announced against the lowest price applied in the prior 30 days); NULL
--   when there is no earlier day in the history.
with base as (
    select
        v.id as variant_id,
        v.project_id,
        p.tenant_id,
        v.sku,
        v.currency,
        c.day,
        (select a.to_price from {{ source('warehouse', 'price_audit') }} a
          where a.variant_id = v.id and {{ to_day('a.created_at') }} <= c.day
          order by a.created_at desc, a.id desc limit 1) as written_price,
        (select a.from_price from {{ source('warehouse', 'price_audit') }} a
          where a.variant_id = v.id and {{ to_day('a.created_at') }} > c.day
          order by a.created_at asc, a.id asc limit 1) as price_before_first_write,
        v.price as catalog_price
    from {{ source('warehouse', 'variants') }} v
    join {{ source('warehouse', 'projects') }} p on p.id = v.project_id
    cross join {{ ref('calendar_days') }} c
),
priced as (
    select
        variant_id, project_id, tenant_id, sku, currency, day,
        coalesce(written_price, price_before_first_write, catalog_price) as price,
        case when written_price is not null or price_before_first_write is not null then 'audit' else 'catalog' end as source
    from base
),
with_minor as (
    select priced.*, {{ minor_units('price', 'currency') }} as price_minor from priced
),
with_previous as (
    select
        with_minor.*,
        lag(price_minor) over (partition by variant_id order by day) as previous_price_minor,
        min(price_minor) over (partition by variant_id order by day rows between 30 preceding and 1 preceding) as omnibus_low_30d_minor
    from with_minor
)
select
    tenant_id,
    project_id,
    variant_id,
    sku,
    day,
    currency,
    price,
    price_minor,
    source,
    previous_price_minor,
    case when previous_price_minor is not null and previous_price_minor <> price_minor then 1 else 0 end as changed,
    omnibus_low_30d_minor
from with_previous

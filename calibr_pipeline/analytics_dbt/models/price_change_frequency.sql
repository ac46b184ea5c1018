-- How often and how much prices move, per project, SKU, ISO week and actor: 'ours' or
-- a competitor (competitor_id). Changes are day-over-day differences of our price
-- (price_history) or of a listing's price in our currency (normalized_price_snapshots),
-- in minor units. volatility: change_count, mean_abs_change_minor and the population
-- standard deviation of the changes (stddev_change_minor), over the changes only.
with ours as (
    select project_id, tenant_id, variant_id, sku, day,
           'ours' as actor, cast(null as integer) as competitor_id,
           price_minor - previous_price_minor as change_minor
    from {{ ref('price_history') }}
    where changed = 1
),
competitor_days as (
    select s.project_id, s.tenant_id, s.variant_id, v.sku, s.snapshot_date as day, s.competitor_id, s.listing_id,
           {{ minor_units('s.amount_in_project_currency', 's.project_currency') }} as price_minor
    from {{ source('warehouse', 'normalized_price_snapshots') }} s
    join {{ source('warehouse', 'variants') }} v on v.id = s.variant_id
    where s.amount_in_project_currency is not null
),
competitor_changes as (
    select project_id, tenant_id, variant_id, sku, day, 'competitor' as actor, competitor_id,
           price_minor - lag(price_minor) over (partition by listing_id order by day) as change_minor
    from competitor_days
),
changes as (
    select * from ours
    union all
    select * from competitor_changes where change_minor is not null and change_minor <> 0
)
select
    tenant_id, project_id, variant_id, sku,
    {{ week_start('day') }} as week_start,
    actor,
    competitor_id,
    count(*) as change_count,
    ROUND({{ as_number('avg(abs(change_minor))') }}, 2) as mean_abs_change_minor,
    ROUND({{ as_number('sqrt(abs(avg(1.0 * change_minor * change_minor) - avg(1.0 * change_minor) * avg(1.0 * change_minor)))') }}, 2) as stddev_change_minor
from changes
group by tenant_id, project_id, variant_id, sku, {{ week_start('day') }}, actor, competitor_id

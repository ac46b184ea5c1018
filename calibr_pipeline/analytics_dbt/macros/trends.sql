-- CTE bodies the trend models share (trend_observed, trend_flags).

-- 0 .. window-1: the day offsets of a trailing window.
{% macro trend_window_offsets(window) -%}
    {% for k in range(window) %}select {{ k }} as k{% if not loop.last %} union all {% endif %}{% endfor %}
{%- endmacro %}

-- Every normalized snapshot with its SKU, day, price in the project's currency (null when
-- it could not be converted) and an out-of-stock flag.
{% macro trend_snapshots() -%}
    select s.tenant_id, s.project_id, s.variant_id, v.sku, s.competitor_id, s.listing_id,
           {{ as_date('s.snapshot_date') }} as day,
           case when s.amount_in_project_currency is null then null
                else {{ as_float('s.amount_in_project_currency') }} end as price,
           case when s.availability is not null
                 and lower(s.availability) in ('out_of_stock', 'outofstock', 'soldout', 'sold_out') then 1 else 0 end as out_of_stock
    from {{ source('warehouse', 'normalized_price_snapshots') }} s
    join {{ source('warehouse', 'variants') }} v on v.id = s.variant_id
{%- endmacro %}

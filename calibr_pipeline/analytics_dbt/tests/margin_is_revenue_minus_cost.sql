-- Gross margin is exactly revenue minus cost wherever both are known.
select * from {{ ref('sales_daily') }}
where margin_minor is not null and margin_minor <> revenue_minor - cost_minor

-- The Omnibus 30-day low can be no higher than yesterday's price (one of the 30 days)
-- and no lower than the variant's lowest price ever. Linear in the table size (a
-- correlated search for the exact day would be quadratic on 90 days × 10,000 SKUs);
-- the hand-computed fixture test checks the exact values.
with bounds as (
    select variant_id, min(price_minor) as lowest
    from {{ ref('price_history') }}
    group by variant_id
)
select h.variant_id, h.day
from {{ ref('price_history') }} h
join bounds b on b.variant_id = h.variant_id
where h.omnibus_low_30d_minor is not null
  and (h.omnibus_low_30d_minor > h.previous_price_minor or h.omnibus_low_30d_minor < b.lowest)

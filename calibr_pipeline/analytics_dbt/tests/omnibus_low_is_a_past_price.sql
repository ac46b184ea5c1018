-- The Omnibus 30-day low is one of the prices of the 30 days before.
select h.variant_id, h.day
from {{ ref('price_history') }} h
where h.omnibus_low_30d_minor is not null
  and not exists (
    select 1 from {{ ref('price_history') }} p
    where p.variant_id = h.variant_id and p.price_minor = h.omnibus_low_30d_minor
      and p.day < h.day and p.day >= {{ add_days('h.day', -30) }}
  )

-- Trend flags per competitor listing (and per SKU for margin erosion) for every as-of day
-- whose 14-day window holds data. The `competitor_trends` asset copies one (tenant, day)
-- of these rows into the `competitor_trends` table. Method (docs/analytics.md#the-trend-method;
-- the reference implementation the tests compare against is domain/trends.py):
--
--   sustained_move       Theil–Sen slope (median of the pairwise slopes between observed
--                        prices, x = position among the observed days) × (observed − 1)
--                        ÷ median price ≥ 5 %, and Mann–Kendall |z| ≥ 1.96 (tie-corrected)
--   level_shift          the split into before/after (≥ 3 observed days each) with the
--                        largest |Welch t|; flagged when |t| ≥ 3 and the means differ by ≥ 3 %
--                        of the median (t infinite, statistic NULL, when both sides are flat)
--   undercutting_streak  below our price on each of the last ≥ 3 days (gaps and islands
--                        over the window's days, newest first); size = mean gap in %
--   out_of_stock         out of stock on each of the last ≥ 2 days
--   margin_erosion       gross margin % of the last 7 days ≥ 5 points below the 7 before
--
-- Statistics are computed in double precision; explanation says window, size and
-- significance in a sentence. flag_order orders a listing's flags as listed above.
{% set window = 14 %}
with offsets as (
    {% for k in range(window) %}select {{ k }} as k{% if not loop.last %} union all {% endif %}{% endfor %}
),
snapshots as (
    select s.tenant_id, s.project_id, s.variant_id, v.sku, s.competitor_id, s.listing_id,
           {{ as_date('s.snapshot_date') }} as day,
           case when s.amount_in_project_currency is null then null
                else {{ as_float('s.amount_in_project_currency') }} end as price,
           case when s.availability is not null
                 and lower(s.availability) in ('out_of_stock', 'outofstock', 'soldout', 'sold_out') then 1 else 0 end as out_of_stock
    from {{ source('warehouse', 'normalized_price_snapshots') }} s
    join {{ source('warehouse', 'variants') }} v on v.id = s.variant_id
),
-- every (listing, as-of day) whose window [as_of − 13, as_of] holds at least one snapshot
series_days as (
    select distinct s.tenant_id, s.project_id, s.variant_id, s.sku, s.competitor_id, s.listing_id,
           {{ add_days('s.day', 'o.k') }} as as_of_day
    from snapshots s cross join offsets o
),
-- the observed prices of each window; idx = position by day, price_rank = position by price
observed as (
    select d.listing_id, d.as_of_day, s.day, s.price,
           row_number() over (partition by d.listing_id, d.as_of_day order by s.day) as idx,
           row_number() over (partition by d.listing_id, d.as_of_day order by s.price, s.day) as price_rank,
           count(*) over (partition by d.listing_id, d.as_of_day) as n
    from series_days d
    join snapshots s
      on s.listing_id = d.listing_id
     and s.day between {{ add_days('d.as_of_day', -(window - 1)) }} and d.as_of_day
    where s.price is not null
),
medians as (
    select listing_id, as_of_day, max(n) as n, avg(price) as median_price
    from observed
    where n >= 5 and price_rank in ((n + 1) / 2, (n + 2) / 2)
    group by listing_id, as_of_day
),
-- every pair of observed days i < j: the slope and the sign of the change
pairs as (
    select a.listing_id, a.as_of_day,
           (b.price - a.price) / (b.idx - a.idx) as slope,
           case when b.price > a.price then 1 when b.price < a.price then -1 else 0 end as sign
    from observed a
    join observed b on b.listing_id = a.listing_id and b.as_of_day = a.as_of_day and b.idx > a.idx
    where a.n >= 5
),
ranked_slopes as (
    select listing_id, as_of_day, slope,
           row_number() over (partition by listing_id, as_of_day order by slope) as r,
           count(*) over (partition by listing_id, as_of_day) as m
    from pairs
),
theil_sen as (
    select listing_id, as_of_day, avg(slope) as slope
    from ranked_slopes
    where r in ((m + 1) / 2, (m + 2) / 2)
    group by listing_id, as_of_day
),
tie_groups as (
    select listing_id, as_of_day, count(*) as t
    from observed
    where n >= 5
    group by listing_id, as_of_day, price
),
mann_kendall as (
    select m.listing_id, m.as_of_day, m.n, s.s,
           {{ as_float('m.n * (m.n - 1) * (2 * m.n + 5) - tg.tie_term') }} / 18 as variance
    from medians m
    join (select listing_id, as_of_day, sum(sign) as s from pairs group by listing_id, as_of_day) s
      on s.listing_id = m.listing_id and s.as_of_day = m.as_of_day
    join (select listing_id, as_of_day, sum(t * (t - 1) * (2 * t + 5)) as tie_term from tie_groups group by listing_id, as_of_day) tg
      on tg.listing_id = m.listing_id and tg.as_of_day = m.as_of_day
),
trend as (
    select md.listing_id, md.as_of_day, md.n, md.median_price, ts.slope,
           case when md.median_price = 0 then 0.0 else 100 * ts.slope * (md.n - 1) / md.median_price end as move_pct,
           case when mk.variance <= 0 then 0.0
                when mk.s > 0 then (mk.s - 1) / sqrt(mk.variance)
                when mk.s < 0 then (mk.s + 1) / sqrt(mk.variance)
                else 0.0 end as z
    from medians md
    join theil_sen ts on ts.listing_id = md.listing_id and ts.as_of_day = md.as_of_day
    join mann_kendall mk on mk.listing_id = md.listing_id and mk.as_of_day = md.as_of_day
),
-- level shift: every split k (the first k observed days before, the rest after)
split_sides as (
    select sp.listing_id, sp.as_of_day, sp.idx as k,
           case when o.idx <= sp.idx then 'before' else 'after' end as side, o.price
    from observed sp
    join observed o on o.listing_id = sp.listing_id and o.as_of_day = sp.as_of_day
    where sp.n >= 5 and sp.idx >= 3 and sp.idx <= sp.n - 3
),
side_means as (
    select listing_id, as_of_day, k, side, count(*) as cnt, avg(price) as mean, min(price) as lo, max(price) as hi
    from split_sides
    group by listing_id, as_of_day, k, side
),
side_variances as (  -- population variance, two-pass; exactly 0 for a flat side
    select m.listing_id, m.as_of_day, m.k, m.side, m.cnt, m.mean,
           case when m.lo = m.hi then 0.0 else sum((s.price - m.mean) * (s.price - m.mean)) / m.cnt end as variance
    from side_means m
    join split_sides s on s.listing_id = m.listing_id and s.as_of_day = m.as_of_day and s.k = m.k and s.side = m.side
    group by m.listing_id, m.as_of_day, m.k, m.side, m.cnt, m.mean, m.lo, m.hi
),
welch as (
    select b.listing_id, b.as_of_day, b.k, a.mean - b.mean as diff,
           b.variance / b.cnt + a.variance / a.cnt as se2
    from side_variances b
    join side_variances a on a.listing_id = b.listing_id and a.as_of_day = b.as_of_day and a.k = b.k and a.side = 'after'
    where b.side = 'before'
),
welch_t as (
    select listing_id, as_of_day, k, diff,
           case when se2 = 0 and diff <> 0 then 1 else 0 end as infinite,
           case when se2 = 0 then 0.0 else diff / sqrt(se2) end as t
    from welch
),
best_split as (  -- the largest |t| (an infinite t first), the earliest split on ties
    select welch_t.*,
           row_number() over (partition by listing_id, as_of_day order by infinite desc, abs(t) desc, k) as choice
    from welch_t
),
shift as (
    select b.listing_id, b.as_of_day, b.k, b.diff, b.infinite, b.t, md.n,
           case when md.median_price = 0 then 0.0 else 100 * b.diff / md.median_price end as shift_pct
    from best_split b
    join medians md on md.listing_id = b.listing_id and md.as_of_day = b.as_of_day
    where b.choice = 1
),
-- the window's days newest first (k = 0 is the as-of day) with the listing's and our price
recent_days as (
    select d.listing_id, d.as_of_day, o.k, s.price, s.out_of_stock, ours.price as our_price
    from series_days d
    cross join offsets o
    left join snapshots s on s.listing_id = d.listing_id and s.day = {{ add_days('d.as_of_day', '-o.k') }}
    left join (
        select variant_id, day, {{ as_float('price_minor') }} / (case when currency = 'JPY' then 1 else 100 end) as price
        from {{ ref('price_history') }}
    ) ours on ours.variant_id = d.variant_id and ours.day = {{ add_days('d.as_of_day', '-o.k') }}
),
streak_lengths as (  -- the first day (from the as-of day back) that breaks each streak
    select listing_id, as_of_day,
           coalesce(min(case when price is null or our_price is null or not (price < our_price) then k end), {{ window }}) as undercut_days,
           coalesce(min(case when out_of_stock = 1 then null else k end), {{ window }}) as out_days
    from recent_days
    group by listing_id, as_of_day
),
streaks as (
    select l.listing_id, l.as_of_day, l.undercut_days, l.out_days,
           avg(case when r.k < l.undercut_days then 100 * (r.our_price - r.price) / r.our_price end) as gap_pct
    from streak_lengths l
    join recent_days r on r.listing_id = l.listing_id and r.as_of_day = l.as_of_day
    group by l.listing_id, l.as_of_day, l.undercut_days, l.out_days
),
listing_flags as (
    select d.tenant_id, d.as_of_day, d.project_id, d.variant_id, d.sku, d.competitor_id, d.listing_id,
           1 as flag_order, 'sustained_move' as flag,
           case when t.move_pct > 0 then 'up' else 'down' end as direction,
           {{ window }} as window_days,
           {{ round_float('t.move_pct', 2) }} as size_pct,
           {{ round_float('t.z', 2) }} as statistic,
           'price moved ' || case when t.move_pct > 0 then 'up' else 'down' end || ' ' || {{ fmt('abs(t.move_pct)', 1) }}
             || '% over {{ window }} days (Theil–Sen slope ' || {{ fmt_signed('t.slope', 2) }}
             || '/day, Mann–Kendall z = ' || {{ fmt('t.z', 2) }} || ', p < 0.05)' as explanation
    from series_days d
    join trend t on t.listing_id = d.listing_id and t.as_of_day = d.as_of_day
    where abs(t.move_pct) >= 5 and abs(t.z) >= 1.96
    union all
    select d.tenant_id, d.as_of_day, d.project_id, d.variant_id, d.sku, d.competitor_id, d.listing_id,
           2, 'level_shift',
           case when sh.diff > 0 then 'up' else 'down' end,
           {{ window }},
           {{ round_float('sh.shift_pct', 2) }},
           case when sh.infinite = 1 then null else {{ round_float('sh.t', 2) }} end,
           'price level shifted ' || case when sh.diff > 0 then 'up' else 'down' end || ' ' || {{ fmt('abs(sh.shift_pct)', 1) }}
             || '% after ' || cast(sh.k as text) || ' of ' || cast(sh.n as text)
             || ' observed days in a {{ window }}-day window (Welch t = '
             || case when sh.infinite = 1 then '∞' else {{ fmt('sh.t', 1) }} end || ')'
    from series_days d
    join shift sh on sh.listing_id = d.listing_id and sh.as_of_day = d.as_of_day
    where (sh.infinite = 1 or abs(sh.t) >= 3) and abs(sh.shift_pct) >= 3
    union all
    select d.tenant_id, d.as_of_day, d.project_id, d.variant_id, d.sku, d.competitor_id, d.listing_id,
           3, 'undercutting_streak', 'down', st.undercut_days,
           {{ round_float('st.gap_pct', 2) }},
           {{ as_float('null') }},
           'below our price on each of the last ' || cast(st.undercut_days as text) || ' days, by '
             || {{ fmt('st.gap_pct', 1) }} || '% on average'
    from series_days d
    join streaks st on st.listing_id = d.listing_id and st.as_of_day = d.as_of_day
    where st.undercut_days >= 3
    union all
    select d.tenant_id, d.as_of_day, d.project_id, d.variant_id, d.sku, d.competitor_id, d.listing_id,
           4, 'out_of_stock', 'down', st.out_days, 100.0, {{ as_float('null') }},
           'out of stock on each of the last ' || cast(st.out_days as text) || ' days'
    from series_days d
    join streaks st on st.listing_id = d.listing_id and st.as_of_day = d.as_of_day
    where st.out_days >= 2
),
-- margin erosion: our SKU's gross margin % of the last 7 days against the 7 before
sales as (
    select tenant_id, project_id, variant_id, sku, day, revenue_minor, margin_minor
    from {{ ref('sales_daily') }}
    where margin_minor is not null and variant_id is not null
),
sales_days as (
    select distinct s.tenant_id, s.project_id, s.variant_id, s.sku, {{ add_days('s.day', 'o.k') }} as as_of_day
    from sales s cross join offsets o
),
margin_weeks as (
    select d.tenant_id, d.project_id, d.variant_id, d.sku, d.as_of_day,
           sum(case when s.day >= {{ add_days('d.as_of_day', -6) }} then s.revenue_minor else 0 end) as recent_revenue,
           sum(case when s.day >= {{ add_days('d.as_of_day', -6) }} then s.margin_minor else 0 end) as recent_margin,
           sum(case when s.day < {{ add_days('d.as_of_day', -6) }} then s.revenue_minor else 0 end) as prior_revenue,
           sum(case when s.day < {{ add_days('d.as_of_day', -6) }} then s.margin_minor else 0 end) as prior_margin
    from sales_days d
    join sales s
      on s.project_id = d.project_id and s.variant_id = d.variant_id and s.sku = d.sku
     and s.day between {{ add_days('d.as_of_day', -13) }} and d.as_of_day
    group by d.tenant_id, d.project_id, d.variant_id, d.sku, d.as_of_day
),
margin_pcts as (
    select margin_weeks.*,
           100 * {{ as_float('recent_margin') }} / {{ as_float('recent_revenue') }} as recent_pct,
           100 * {{ as_float('prior_margin') }} / {{ as_float('prior_revenue') }} as prior_pct
    from margin_weeks
    where recent_revenue > 0 and prior_revenue > 0
)
select tenant_id, as_of_day, project_id, variant_id, sku, competitor_id, listing_id, flag_order, flag, direction,
       window_days, size_pct, statistic, explanation
from listing_flags
union all
select tenant_id, as_of_day, project_id, variant_id, sku, cast(null as integer), cast(null as integer), 5, 'margin_erosion', 'down',
       14, {{ round_float('recent_pct - prior_pct', 2) }}, {{ as_float('null') }},
       'gross margin fell from ' || {{ fmt('prior_pct', 1) }} || '% to ' || {{ fmt('recent_pct', 1) }} || '% ('
         || {{ fmt('prior_pct - recent_pct', 1) }} || ' points) comparing the last 7 days with the 7 before'
from margin_pcts
where prior_pct - recent_pct >= 5

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
--   undercutting_streak  below our price on each of the last ≥ 3 days (the window's days
--                        newest first; the first day not below ends it); size = mean gap in %
--   out_of_stock         out of stock on each of the last ≥ 2 days
--   margin_erosion       gross margin % of the last 7 days ≥ 5 points below the 7 before
--
-- Statistics are computed in double precision; explanation says window, size and
-- significance in a sentence. flag_order orders a listing's flags as listed above.
{% set window = 14 %}
with offsets as (
    {{ trend_window_offsets(window) }}
),
snapshots as (
    {{ trend_snapshots() }}
),
-- the observed prices of every window with at least 5 of them (model trend_observed)
observed as (
    select * from {{ ref('trend_observed') }}
),
-- every pair of observed days i < j: its slope and the sign of the change
pairs as (
    select a.tenant_id, a.project_id, a.variant_id, a.sku, a.competitor_id, a.listing_id, a.as_of_day,
           a.n, a.median_price, a.tie_term,
           (b.price - a.price) / (b.idx - a.idx) as slope,
           case when b.price > a.price then 1 when b.price < a.price then -1 else 0 end as sign
    from {{ ref('trend_observed') }} a
    join {{ ref('trend_observed') }} b on b.listing_id = a.listing_id and b.as_of_day = a.as_of_day and b.idx > a.idx
),
ranked_slopes as (
    select pairs.*,
           row_number() over (partition by listing_id, as_of_day order by slope) as r,
           count(*) over (partition by listing_id, as_of_day) as m,
           sum(sign) over (partition by listing_id, as_of_day) as s
    from pairs
),
-- Theil–Sen slope = median of the pairwise slopes; Mann–Kendall S = Σ signs
theil_sen as (
    select tenant_id, project_id, variant_id, sku, competitor_id, listing_id, as_of_day,
           max(n) as n, max(median_price) as median_price, max(s) as s,
           {{ as_float('max(n) * (max(n) - 1) * (2 * max(n) + 5) - max(tie_term)') }} / 18 as variance,
           avg(slope) as slope
    from ranked_slopes
    where r in ((m + 1) / 2, (m + 2) / 2)
    group by tenant_id, project_id, variant_id, sku, competitor_id, listing_id, as_of_day
),
trend as (
    select theil_sen.*,
           case when median_price = 0 then 0.0 else 100 * slope * (n - 1) / median_price end as move_pct,
           case when variance <= 0 then 0.0
                when s > 0 then (s - 1) / sqrt(variance)
                when s < 0 then (s + 1) / sqrt(variance)
                else 0.0 end as z
    from theil_sen
),
-- level shift: every split k (the first k observed days before, the rest after), from
-- running sums of the prices less the window's first price; population variances,
-- exactly 0 for a flat side (so a clean step has an infinite t)
running as (
    select tenant_id, project_id, variant_id, sku, competitor_id, listing_id, as_of_day, n, median_price, idx as k,
           sum(price - first_price) over (partition by listing_id, as_of_day order by idx rows between unbounded preceding and current row) as sum_b,
           sum((price - first_price) * (price - first_price)) over (partition by listing_id, as_of_day order by idx rows between unbounded preceding and current row) as sq_b,
           sum(price - first_price) over (partition by listing_id, as_of_day) as sum_all,
           sum((price - first_price) * (price - first_price)) over (partition by listing_id, as_of_day) as sq_all,
           min(price) over (partition by listing_id, as_of_day order by idx rows between unbounded preceding and current row) as lo_b,
           max(price) over (partition by listing_id, as_of_day order by idx rows between unbounded preceding and current row) as hi_b,
           min(price) over (partition by listing_id, as_of_day order by idx rows between 1 following and unbounded following) as lo_a,
           max(price) over (partition by listing_id, as_of_day order by idx rows between 1 following and unbounded following) as hi_a
    from observed
),
welch as (
    select tenant_id, project_id, variant_id, sku, competitor_id, listing_id, as_of_day, n, median_price, k,
           (sum_all - sum_b) / (n - k) - sum_b / k as diff,
           (case when lo_b = hi_b then 0.0 else {{ non_negative('sq_b / k - (sum_b / k) * (sum_b / k)') }} end) / k
         + (case when lo_a = hi_a then 0.0
                 else {{ non_negative('(sq_all - sq_b) / (n - k) - ((sum_all - sum_b) / (n - k)) * ((sum_all - sum_b) / (n - k))') }} end) / (n - k) as se2
    from running
    where k >= 3 and k <= n - 3
),
welch_t as (
    select welch.*,
           case when se2 = 0 and diff <> 0 then 1 else 0 end as infinite,
           case when se2 = 0 then 0.0 else diff / sqrt(se2) end as t
    from welch
),
best_split as (  -- the largest |t| (an infinite t first), the earliest split on ties (|t| to 9 decimals)
    select welch_t.*,
           row_number() over (partition by listing_id, as_of_day order by infinite desc, {{ round_float('abs(t)', 9) }} desc, k) as choice
    from welch_t
),
shift as (
    select best_split.*,
           case when median_price = 0 then 0.0 else 100 * diff / median_price end as shift_pct
    from best_split
    where choice = 1
),
-- streaks end on a day with a snapshot: its window's days newest first (k = 0 is the
-- as-of day) with the listing's and our price; the first day that breaks a streak ends it
recent_days as (
    select d.tenant_id, d.project_id, d.variant_id, d.sku, d.competitor_id, d.listing_id, d.day as as_of_day, o.k,
           s.price, s.out_of_stock, ours.price as our_price
    from snapshots d
    cross join offsets o
    left join snapshots s on s.listing_id = d.listing_id and s.day = {{ add_days('d.day', '-o.k') }}
    left join (
        select variant_id, day, {{ as_float('price_minor') }} / (case when currency = 'JPY' then 1 else 100 end) as price
        from {{ ref('price_history') }}
    ) ours on ours.variant_id = d.variant_id and ours.day = {{ add_days('d.day', '-o.k') }}
),
streak_days as (
    select recent_days.*,
           min(case when price is null or our_price is null or not (price < our_price) then k end)
               over (partition by listing_id, as_of_day) as first_not_below,
           min(case when out_of_stock = 1 then null else k end) over (partition by listing_id, as_of_day) as first_not_out
    from recent_days
),
streaks as (
    select tenant_id, project_id, variant_id, sku, competitor_id, listing_id, as_of_day,
           coalesce(max(first_not_below), {{ window }}) as undercut_days,
           coalesce(max(first_not_out), {{ window }}) as out_days,
           avg(case when k < coalesce(first_not_below, {{ window }}) then 100 * (our_price - price) / our_price end) as gap_pct
    from streak_days
    group by tenant_id, project_id, variant_id, sku, competitor_id, listing_id, as_of_day
),
listing_flags as (
    select tenant_id, as_of_day, project_id, variant_id, sku, competitor_id, listing_id,
           1 as flag_order, 'sustained_move' as flag,
           case when move_pct > 0 then 'up' else 'down' end as direction,
           {{ window }} as window_days,
           {{ round_float('move_pct', 2) }} as size_pct,
           {{ round_float('z', 2) }} as statistic,
           'price moved ' || case when move_pct > 0 then 'up' else 'down' end || ' ' || {{ fmt('abs(move_pct)', 1) }}
             || '% over {{ window }} days (Theil–Sen slope ' || {{ fmt_signed('slope', 2) }}
             || '/day, Mann–Kendall z = ' || {{ fmt('z', 2) }} || ', p < 0.05)' as explanation
    from trend
    where abs(move_pct) >= 5 and abs(z) >= 1.96
    union all
    select tenant_id, as_of_day, project_id, variant_id, sku, competitor_id, listing_id,
           2, 'level_shift',
           case when diff > 0 then 'up' else 'down' end,
           {{ window }},
           {{ round_float('shift_pct', 2) }},
           case when infinite = 1 then null else {{ round_float('t', 2) }} end,
           'price level shifted ' || case when diff > 0 then 'up' else 'down' end || ' ' || {{ fmt('abs(shift_pct)', 1) }}
             || '% after ' || cast(k as text) || ' of ' || cast(n as text)
             || ' observed days in a {{ window }}-day window (Welch t = '
             || case when infinite = 1 then '∞' else {{ fmt('t', 1) }} end || ')'
    from shift
    where (infinite = 1 or abs(t) >= 3) and abs(shift_pct) >= 3
    union all
    select tenant_id, as_of_day, project_id, variant_id, sku, competitor_id, listing_id,
           3, 'undercutting_streak', 'down', undercut_days,
           {{ round_float('gap_pct', 2) }},
           {{ as_float('null') }},
           'below our price on each of the last ' || cast(undercut_days as text) || ' days, by '
             || {{ fmt('gap_pct', 1) }} || '% on average'
    from streaks
    where undercut_days >= 3
    union all
    select tenant_id, as_of_day, project_id, variant_id, sku, competitor_id, listing_id,
           4, 'out_of_stock', 'down', out_days, 100.0, {{ as_float('null') }},
           'out of stock on each of the last ' || cast(out_days as text) || ' days'
    from streaks
    where out_days >= 2
),
-- margin erosion: our SKU's gross margin % of the last 7 days against the 7 before
sales as (
    select tenant_id, project_id, variant_id, sku, day, revenue_minor, margin_minor
    from {{ ref('sales_daily') }}
    where margin_minor is not null and variant_id is not null
),
-- a day's sales count in the windows of that day .. day + 13: the last 7 days (k <= 6) or the 7 before
margin_weeks as (
    select s.tenant_id, s.project_id, s.variant_id, s.sku, {{ add_days('s.day', 'o.k') }} as as_of_day,
           sum(case when o.k <= 6 then s.revenue_minor else 0 end) as recent_revenue,
           sum(case when o.k <= 6 then s.margin_minor else 0 end) as recent_margin,
           sum(case when o.k > 6 then s.revenue_minor else 0 end) as prior_revenue,
           sum(case when o.k > 6 then s.margin_minor else 0 end) as prior_margin
    from sales s cross join offsets o
    group by s.tenant_id, s.project_id, s.variant_id, s.sku, {{ add_days('s.day', 'o.k') }}
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

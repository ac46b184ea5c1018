-- The observed competitor prices of every (listing, as-of day) window with at least 5 of
-- them, for trend_flags (a table with an index, so trend_flags' pairwise self-join is fast
-- on SQLite too). A snapshot of day d belongs to the windows of d .. d + 13.
--   idx          position by day among the window's observed days (Theil–Sen's x)
--   price_rank   position by price; n = observed days; ties = days sharing this price
--   median_price the window's median price; tie_term = Σ t(t−1)(2t+5) over groups of equal
--                prices (Mann–Kendall); first_price centres the level-shift sums
{{ config(post_hook=calibr_window_index(this)) }}
{% set window = 14 %}
with offsets as (
    {{ trend_window_offsets(window) }}
),
snapshots as (
    {{ trend_snapshots() }}
),
-- The observed prices of each (listing, as-of day) window: a snapshot of day d belongs to
-- the windows of d .. d + 13. idx = position by day, price_rank = position by price,
-- n = observed days, ties = how many observed days share this price.
window_points as (
    select w.*,
           row_number() over (partition by listing_id, as_of_day order by day) as idx,
           row_number() over (partition by listing_id, as_of_day order by price, day) as price_rank,
           count(*) over (partition by listing_id, as_of_day) as n,
           count(*) over (partition by listing_id, as_of_day, price) as ties
    from (
        select s.tenant_id, s.project_id, s.variant_id, s.sku, s.competitor_id, s.listing_id,
               {{ add_days('s.day', 'o.k') }} as as_of_day, s.day, s.price
        from snapshots s cross join offsets o
        where s.price is not null
    ) w
),
-- per window (carried on every row): the median price, the Mann–Kendall tie correction
-- Σ t(t−1)(2t+5) over groups of equal prices, and the first price (to centre the sums)
observed as (
    select window_points.*,
           avg(case when price_rank in ((n + 1) / 2, (n + 2) / 2) then price end)
               over (partition by listing_id, as_of_day) as median_price,
           sum((ties - 1) * (2 * ties + 5)) over (partition by listing_id, as_of_day) as tie_term,
           first_value(price) over (partition by listing_id, as_of_day order by idx) as first_price
    from window_points
    where n >= 5
)
select * from observed

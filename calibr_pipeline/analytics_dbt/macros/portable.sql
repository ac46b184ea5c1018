{#- Portable SQL for SQLite and PostgreSQL. Money is summed in integer minor units
    (cents; whole units for zero-decimal currencies) so totals are exact on both. -#}

{% macro minor_units(amount, currency) -%}
CAST(ROUND(CAST({{ amount }} AS NUMERIC) * (CASE WHEN {{ currency }} IN ('JPY', 'KRW', 'VND', 'CLP', 'ISK', 'UGX', 'XAF', 'XOF', 'XPF', 'PYG', 'RWF', 'BIF', 'DJF', 'GNF', 'KMF', 'VUV', 'UYI') THEN 1 ELSE 100 END)) AS BIGINT)
{%- endmacro %}

{% macro add_days(date_expr, n) -%}
{{ return(adapter.dispatch('add_days', 'calibr_analytics')(date_expr, n)) }}
{%- endmacro %}
{% macro default__add_days(date_expr, n) -%}
(CAST({{ date_expr }} AS DATE) + CAST({{ n }} AS INTEGER))
{%- endmacro %}
{% macro sqlite__add_days(date_expr, n) -%}
date({{ date_expr }}, printf('%d days', {{ n }}))
{%- endmacro %}

{% macro to_day(timestamp_expr) -%}
{{ return(adapter.dispatch('to_day', 'calibr_analytics')(timestamp_expr)) }}
{%- endmacro %}
{% macro default__to_day(timestamp_expr) -%}
CAST(({{ timestamp_expr }} AT TIME ZONE 'UTC') AS DATE)
{%- endmacro %}
{% macro sqlite__to_day(timestamp_expr) -%}
date({{ timestamp_expr }})
{%- endmacro %}

{% macro week_start(date_expr) -%}
{{ return(adapter.dispatch('week_start', 'calibr_analytics')(date_expr)) }}
{%- endmacro %}
{% macro default__week_start(date_expr) -%}
CAST(date_trunc('week', CAST({{ date_expr }} AS DATE)) AS DATE)
{%- endmacro %}
{% macro sqlite__week_start(date_expr) -%}
date({{ date_expr }}, 'weekday 0', '-6 days')
{%- endmacro %}

{% macro as_number(expr) -%}
CAST({{ expr }} AS NUMERIC)
{%- endmacro %}

{% macro pct(numerator, denominator) -%}
CASE WHEN {{ denominator }} IS NULL OR {{ denominator }} = 0 THEN NULL
     ELSE ROUND(CAST(100.0 * ({{ numerator }}) / ({{ denominator }}) AS NUMERIC), 2) END
{%- endmacro %}

{% macro as_date(expr) -%}
{{ return(adapter.dispatch('as_date', 'calibr_analytics')(expr)) }}
{%- endmacro %}
{% macro default__as_date(expr) -%}
CAST({{ expr }} AS DATE)
{%- endmacro %}
{% macro sqlite__as_date(expr) -%}
date({{ expr }})
{%- endmacro %}

{#- Floating point (the trend statistics are computed in double precision, like the
    reference implementation in domain/trends.py). -#}
{% macro as_float(expr) -%}
{{ return(adapter.dispatch('as_float', 'calibr_analytics')(expr)) }}
{%- endmacro %}
{% macro default__as_float(expr) -%}
CAST({{ expr }} AS DOUBLE PRECISION)
{%- endmacro %}
{% macro sqlite__as_float(expr) -%}
CAST({{ expr }} AS REAL)
{%- endmacro %}

{#- round(x, n) of a float, as a float (PostgreSQL rounds only NUMERIC). -#}
{% macro round_float(expr, n) -%}
{{ return(adapter.dispatch('round_float', 'calibr_analytics')(expr, n)) }}
{%- endmacro %}
{% macro default__round_float(expr, n) -%}
CAST(ROUND(CAST({{ expr }} AS NUMERIC), {{ n }}) AS DOUBLE PRECISION)
{%- endmacro %}
{% macro sqlite__round_float(expr, n) -%}
ROUND({{ expr }}, {{ n }})
{%- endmacro %}

{#- A number as text with n decimals (Python's f"{x:.nf}"); fmt_signed adds '+' to x >= 0. -#}
{% macro fmt(expr, n) -%}
{{ return(adapter.dispatch('fmt', 'calibr_analytics')(expr, n)) }}
{%- endmacro %}
{% macro default__fmt(expr, n) -%}
CAST(ROUND(CAST({{ expr }} AS NUMERIC), {{ n }}) AS TEXT)
{%- endmacro %}
{% macro sqlite__fmt(expr, n) -%}
printf('%.{{ n }}f', {{ expr }})
{%- endmacro %}
{% macro fmt_signed(expr, n) -%}
(CASE WHEN {{ expr }} >= 0 THEN '+' ELSE '' END || {{ fmt(expr, n) }})
{%- endmacro %}

{% macro non_negative(expr) -%}
(CASE WHEN ({{ expr }}) > 0 THEN ({{ expr }}) ELSE 0.0 END)
{%- endmacro %}

{#- The (listing_id, as_of_day, idx) index of trend_observed (a post-hook). SQLite needs an
    index name, unique per run (the previous table may still hold its index while dbt swaps). -#}
{% macro calibr_window_index(relation) -%}
{{ return(adapter.dispatch('calibr_window_index', 'calibr_analytics')(relation)) }}
{%- endmacro %}
{% macro default__calibr_window_index(relation) -%}
create index on {{ relation }} (listing_id, as_of_day, idx)
{%- endmacro %}
{% macro sqlite__calibr_window_index(relation) -%}
create index if not exists "{{ relation.schema }}"."ix_{{ relation.identifier }}_{{ invocation_id | replace('-', '') }}" on "{{ relation.identifier }}" (listing_id, as_of_day, idx)
{%- endmacro %}

"""The trend flags of one tenant as of one day into ``competitor_trends``.

Production path: :func:`copy_trend_flags` takes the rows the dbt model ``trend_flags``
(``analytics_dbt/models/trend_flags.sql``, portable SQL on SQLite and PostgreSQL) computed
for the tenant and day. :func:`compute_trends` is the reference implementation of the same
method in Python (``domain/trends.py``): the tests check the SQL against it flag for flag.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

from sqlalchemy import Date, bindparam, delete, insert, inspect, text
from sqlalchemy.orm import Session

from calibr_pipeline.domain.trends import DayPoint, TrendFlag, competitor_flags, margin_erosion
from calibr_pipeline.warehouse.models import CompetitorTrendFlag

WINDOW_DAYS = 14


def _day(value) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)[:10])


class TrendModelMissing(Exception):
    """The dbt model ``trend_flags`` has not been built in this warehouse yet."""


def _write(session: Session, tenant_id: int, as_of: dt.date, rows: list[tuple]) -> int:
    session.execute(delete(CompetitorTrendFlag).where(CompetitorTrendFlag.tenant_id == tenant_id, CompetitorTrendFlag.as_of_day == as_of))
    if rows:
        session.execute(
            insert(CompetitorTrendFlag),
            [
                {
                    "tenant_id": tenant_id, "as_of_day": as_of, "position": i, "project_id": p, "variant_id": v, "sku": sku,
                    "competitor_id": c, "listing_id": l, "flag": f.flag, "direction": f.direction, "window_days": f.window_days,
                    "size_pct": f.size_pct, "statistic": f.statistic, "explanation": f.explanation,
                }
                for i, (p, v, sku, c, l, f) in enumerate(rows)
            ],
        )
    return len(rows)


def copy_trend_flags(session: Session, tenant_id: int, as_of: dt.date) -> int:
    """Replace the tenant's flags for ``as_of`` with the dbt model's; returns how many.

    Order as the reference: per listing (project, SKU, competitor, listing) its flags in the
    method's order, then margin erosion per (project, SKU); sorted here so the SKU order is
    Python's on both databases (collations differ)."""
    if "trend_flags" not in inspect(session.connection()).get_table_names():
        raise TrendModelMissing("the dbt model trend_flags is not built yet: run the analytics_models job first")
    found = session.execute(
        text(
            "SELECT project_id, variant_id, sku, competitor_id, listing_id, flag_order, flag, direction, window_days, "
            "size_pct, statistic, explanation FROM trend_flags WHERE tenant_id = :tenant AND as_of_day = :day"
        ).bindparams(bindparam("day", as_of, type_=Date)),
        {"tenant": tenant_id},
    ).all()
    found.sort(key=lambda r: (r.listing_id is None, r.project_id, r.sku, r.competitor_id or 0, r.listing_id or 0, r.flag_order))
    rows = [
        (r.project_id, r.variant_id, r.sku, r.competitor_id, r.listing_id,
         TrendFlag(r.flag, r.direction, int(r.window_days), float(r.size_pct), None if r.statistic is None else float(r.statistic), r.explanation))
        for r in found
    ]
    return _write(session, tenant_id, as_of, rows)


def compute_trends(session: Session, tenant_id: int, as_of: dt.date, *, window: int = WINDOW_DAYS) -> int:
    """Replace the tenant's flags for ``as_of``; returns how many were raised."""
    start = as_of - dt.timedelta(days=window - 1)
    snapshots = session.execute(
        text(
            "SELECT s.project_id, s.variant_id, v.sku, s.competitor_id, s.listing_id, s.snapshot_date, "
            "s.amount_in_project_currency, s.availability "
            "FROM normalized_price_snapshots s JOIN variants v ON v.id = s.variant_id "
            "WHERE s.tenant_id = :tenant AND s.snapshot_date BETWEEN :start AND :end"
        ),
        {"tenant": tenant_id, "start": start, "end": as_of},
    ).all()
    ours: dict[int, dict[dt.date, float]] = defaultdict(dict)
    for variant_id, day, price_minor, currency in session.execute(
        text(
            "SELECT variant_id, day, price_minor, currency FROM price_history "
            "WHERE tenant_id = :tenant AND day BETWEEN :start AND :end"
        ),
        {"tenant": tenant_id, "start": start, "end": as_of},
    ):
        ours[variant_id][_day(day)] = price_minor / (1 if currency == "JPY" else 100)
    series: dict[tuple, dict[dt.date, DayPoint]] = defaultdict(dict)
    for project_id, variant_id, sku, competitor_id, listing_id, day, amount, availability in snapshots:
        day = _day(day)
        price = float(amount) if amount is not None else None
        available = None if availability is None else availability.lower() not in ("out_of_stock", "outofstock", "soldout", "sold_out")
        series[(project_id, variant_id, sku, competitor_id, listing_id)][day] = DayPoint(day, price, available)
    rows = []
    for key in sorted(series, key=lambda k: (k[0], k[2], k[3] or 0, k[4] or 0)):
        project_id, variant_id, sku, competitor_id, listing_id = key
        by_day = series[key]
        points = [by_day.get(start + dt.timedelta(days=i), DayPoint(start + dt.timedelta(days=i), None, None)) for i in range(window)]
        for flag in competitor_flags(points, ours.get(variant_id, {}), window=window):
            rows.append((project_id, variant_id, sku, competitor_id, listing_id, flag))
    sales: dict[tuple, list] = defaultdict(list)
    for project_id, variant_id, sku, day, revenue, margin in session.execute(
        text(
            "SELECT project_id, variant_id, sku, day, revenue_minor, margin_minor FROM sales_daily "
            "WHERE tenant_id = :tenant AND day BETWEEN :start AND :end AND margin_minor IS NOT NULL AND variant_id IS NOT NULL"
        ),
        {"tenant": tenant_id, "start": as_of - dt.timedelta(days=13), "end": as_of},
    ):
        sales[(project_id, variant_id, sku)].append((_day(day), int(revenue), int(margin)))
    for key in sorted(sales, key=lambda k: (k[0], k[2])):
        flag = margin_erosion(sales[key], as_of)
        if flag is not None:
            rows.append((key[0], key[1], key[2], None, None, flag))
    return _write(session, tenant_id, as_of, rows)

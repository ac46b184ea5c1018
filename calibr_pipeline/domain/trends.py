"""Trend detection on daily price series: the method behind ``competitor_trends``.

Pure functions over plain numbers, so the method can be read and tested on its own.

Method (docs/analytics.md explains it for analysts). For one competitor listing of one
of our SKUs, over the ``window`` days ending on the as-of day (default 14):

* **sustained move** — Theil–Sen slope (median of all pairwise slopes: robust to a few
  outliers and one-day sales) times the window, relative to the window's median price,
  is at least ``min_move_pct`` (5 %), *and* the Mann–Kendall trend test is significant:
  ``|z| >= 1.96`` (two-sided p < 0.05, normal approximation with the tie correction).
* **level shift** (change point) — the split of the window into a before and an after
  part (each at least 3 days) with the largest Welch t statistic between the two means;
  flagged when ``|t| >= 3`` and the means differ by at least ``min_shift_pct`` (3 %).
* **undercutting streak** — the competitor was below our price on each of the last
  ``min_streak`` (3) or more consecutive days; size is the mean gap in % of our price.
* **out of stock** — the listing was out of stock on each of the last 2 or more days.

For our own SKU: **margin erosion** — gross margin % over the last 7 days is at least
``min_drop_points`` (5) percentage points below the 7 days before, both weeks with sales.

Every flag carries its window, its size (percent) and its significance statistic, and a
sentence that says all three.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

Z_CRITICAL = 1.96  # two-sided 5 %
T_CRITICAL = 3.0


@dataclass(frozen=True)
class TrendFlag:
    flag: str  # sustained_move | level_shift | undercutting_streak | out_of_stock | margin_erosion
    direction: str  # up | down
    window_days: int
    size_pct: float
    statistic: float | None  # z (Mann–Kendall), t (Welch) or None where the rule is a count
    explanation: str


@dataclass(frozen=True)
class DayPoint:
    day: dt.date
    price: float | None  # competitor price in our currency; None when not observed
    available: bool | None


def theil_sen_slope(values: Sequence[float]) -> float:
    """Median of the slopes between every pair of points (x = 0, 1, 2, ...)."""
    slopes = [(values[j] - values[i]) / (j - i) for i in range(len(values)) for j in range(i + 1, len(values))]
    return statistics.median(slopes) if slopes else 0.0


def mann_kendall_z(values: Sequence[float]) -> float:
    n = len(values)
    if n < 3:
        return 0.0
    s = sum((values[j] > values[i]) - (values[j] < values[i]) for i in range(n) for j in range(i + 1, n))
    ties = {}
    for v in values:
        ties[v] = ties.get(v, 0) + 1
    variance = (n * (n - 1) * (2 * n + 5) - sum(t * (t - 1) * (2 * t + 5) for t in ties.values())) / 18
    if variance <= 0:
        return 0.0
    if s > 0:
        return (s - 1) / math.sqrt(variance)
    if s < 0:
        return (s + 1) / math.sqrt(variance)
    return 0.0


def level_shift(values: Sequence[float], min_side: int = 3) -> tuple[int, float, float] | None:
    """(split index, after-mean − before-mean, Welch t) of the strongest split, or None."""
    best: tuple[int, float, float] | None = None
    for k in range(min_side, len(values) - min_side + 1):
        before, after = values[:k], values[k:]
        mean_b, mean_a = statistics.fmean(before), statistics.fmean(after)
        var_b, var_a = statistics.pvariance(before), statistics.pvariance(after)
        se = math.sqrt(var_b / len(before) + var_a / len(after))
        diff = mean_a - mean_b
        if se == 0:
            t = math.inf if diff else 0.0
        else:
            t = diff / se
        if best is None or abs(t) > abs(best[2]):
            best = (k, diff, t)
    return best


def competitor_flags(
    points: Sequence[DayPoint],
    our_prices: dict[dt.date, float],
    *,
    window: int = 14,
    min_move_pct: float = 5.0,
    min_shift_pct: float = 3.0,
    min_streak: int = 3,
    min_out_of_stock_days: int = 2,
) -> list[TrendFlag]:
    """Flags for one listing; ``points`` are daily, oldest first, ending on the as-of day."""
    points = list(points)[-window:]
    flags: list[TrendFlag] = []
    observed = [p.price for p in points if p.price is not None]
    if len(observed) >= 5:
        median = statistics.median(observed)
        slope = theil_sen_slope(observed)
        move_pct = 100 * slope * (len(observed) - 1) / median if median else 0.0
        z = mann_kendall_z(observed)
        if abs(move_pct) >= min_move_pct and abs(z) >= Z_CRITICAL:
            direction = "up" if move_pct > 0 else "down"
            flags.append(
                TrendFlag(
                    "sustained_move", direction, len(points), round(move_pct, 2), round(z, 2),
                    f"price moved {direction} {abs(move_pct):.1f}% over {len(points)} days "
                    f"(Theil–Sen slope {slope:+.2f}/day, Mann–Kendall z = {z:.2f}, p < 0.05)",
                )
            )
        shift = level_shift(observed)
        if shift is not None:
            k, diff, t = shift
            shift_pct = 100 * diff / median if median else 0.0
            if abs(t) >= T_CRITICAL and abs(shift_pct) >= min_shift_pct:
                direction = "up" if diff > 0 else "down"
                t_text = "∞" if math.isinf(t) else f"{t:.1f}"
                flags.append(
                    TrendFlag(
                        "level_shift", direction, len(points), round(shift_pct, 2), None if math.isinf(t) else round(t, 2),
                        f"price level shifted {direction} {abs(shift_pct):.1f}% after {k} of {len(observed)} observed days "
                        f"in a {len(points)}-day window (Welch t = {t_text})",
                    )
                )
    streak, gaps = 0, []
    for p in reversed(points):
        ours = our_prices.get(p.day)
        if p.price is None or ours is None or not p.price < ours:
            break
        streak += 1
        gaps.append(100 * (ours - p.price) / ours)
    if streak >= min_streak:
        gap = statistics.fmean(gaps)
        flags.append(
            TrendFlag(
                "undercutting_streak", "down", streak, round(gap, 2), None,
                f"below our price on each of the last {streak} days, by {gap:.1f}% on average",
            )
        )
    out = 0
    for p in reversed(points):
        if p.available is False:
            out += 1
        else:
            break
    if out >= min_out_of_stock_days:
        flags.append(TrendFlag("out_of_stock", "down", out, 100.0, None, f"out of stock on each of the last {out} days"))
    return flags


def margin_erosion(
    daily: Sequence[tuple[dt.date, int, int]], as_of: dt.date, *, days: int = 7, min_drop_points: float = 5.0
) -> TrendFlag | None:
    """``daily``: (day, revenue_minor, margin_minor) of one SKU; compares the last ``days``
    days up to ``as_of`` with the ``days`` before."""
    recent_start = as_of - dt.timedelta(days=days - 1)
    prior_start = recent_start - dt.timedelta(days=days)

    def pct(start: dt.date, end: dt.date) -> float | None:
        revenue = sum(r for d, r, _m in daily if start <= d <= end)
        margin = sum(m for d, _r, m in daily if start <= d <= end)
        return 100 * margin / revenue if revenue > 0 else None

    recent = pct(recent_start, as_of)
    prior = pct(prior_start, recent_start - dt.timedelta(days=1))
    if recent is None or prior is None or prior - recent < min_drop_points:
        return None
    drop = prior - recent
    return TrendFlag(
        "margin_erosion", "down", 2 * days, round(-drop, 2), None,
        f"gross margin fell from {prior:.1f}% to {recent:.1f}% ({drop:.1f} points) comparing the last {days} days with the {days} before",
    )

"""The trend method on series whose answer is known."""

from __future__ import annotations

import datetime as dt

import pytest

from calibr_pipeline.domain.trends import (
    DayPoint,
    competitor_flags,
    level_shift,
    mann_kendall_z,
    margin_erosion,
    theil_sen_slope,
)

DAY0 = dt.date(2026, 3, 1)


def series(prices, available=None):
    return [DayPoint(DAY0 + dt.timedelta(days=i), p, None if available is None else available[i]) for i, p in enumerate(prices)]


def test_theil_sen_ignores_a_one_day_outlier():
    values = [100 + i for i in range(10)]
    values[4] = 500
    assert theil_sen_slope(values) == pytest.approx(1.0)


def test_mann_kendall_z_of_a_clean_rise_is_significant_and_of_noise_is_not():
    assert mann_kendall_z([float(i) for i in range(14)]) > 4
    assert abs(mann_kendall_z([100, 101, 100, 101, 100, 101, 100, 101, 100, 101])) < 1.96


def test_a_steady_rise_is_a_sustained_move_with_its_size_and_z():
    flags = competitor_flags(series([100 + i for i in range(14)]), {})
    move = next(f for f in flags if f.flag == "sustained_move")
    assert move.direction == "up" and move.window_days == 14
    assert move.size_pct == pytest.approx(100 * 13 / 106.5, abs=0.01)
    assert move.statistic > 1.96 and "Mann–Kendall" in move.explanation


def test_flat_noise_raises_nothing():
    assert competitor_flags(series([100, 101, 99, 100, 101, 99, 100, 100, 101, 99, 100, 101, 99, 100]), {}) == []


def test_a_step_is_a_level_shift_at_the_step():
    values = [100.0] * 7 + [90.0] * 7
    k, diff, _t = level_shift(values)
    assert (k, diff) == (7, -10.0)
    flags = {f.flag: f for f in competitor_flags(series(values), {})}
    assert flags["level_shift"].direction == "down" and flags["level_shift"].size_pct == pytest.approx(-10 / 95 * 100, abs=0.01)


def test_undercutting_streak_counts_the_last_consecutive_days_only():
    prices = [110.0] * 10 + [95.0, 90.0, 95.0, 90.0]
    ours = {DAY0 + dt.timedelta(days=i): 100.0 for i in range(14)}
    flag = next(f for f in competitor_flags(series(prices), ours) if f.flag == "undercutting_streak")
    assert flag.window_days == 4 and flag.size_pct == 7.5


def test_out_of_stock_for_the_last_days():
    available = [True] * 11 + [False] * 3
    flag = next(f for f in competitor_flags(series([100.0] * 14, available), {}) if f.flag == "out_of_stock")
    assert flag.window_days == 3
    assert not [f for f in competitor_flags(series([100.0] * 14, [True] * 13 + [False]), {}) if f.flag == "out_of_stock"]


def test_margin_erosion_compares_two_weeks():
    as_of = DAY0 + dt.timedelta(days=13)
    daily = [(DAY0 + dt.timedelta(days=i), 1000, 400 if i < 7 else 300) for i in range(14)]
    flag = margin_erosion(daily, as_of)
    assert flag is not None and flag.size_pct == -10.0 and "40.0% to 30.0%" in flag.explanation
    assert margin_erosion([(d, r, 400) for d, r, _ in daily], as_of) is None

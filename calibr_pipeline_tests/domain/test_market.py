from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from calibr_pipeline.domain.market import CompetitorPrice, compute_market_position, convert


def prices(*amounts):
    return [CompetitorPrice(i + 1, D(a)) for i, a in enumerate(amounts)]


def test_no_competitor_data_is_no_data():
    result = compute_market_position(D("10"), [])
    assert result.position == "no_data" and result.competitor_count == 0 and result.median is None


@pytest.mark.parametrize(
    "ours, expected",
    [("9.99", "lowest"), ("10.00", "lowest"), ("12.00", "middle"), ("15.00", "highest"), ("20", "highest")],
)
def test_position(ours, expected):
    assert compute_market_position(D(ours), prices("10.00", "12.50", "15.00")).position == expected


def test_statistics_are_exact():
    result = compute_market_position(D("11.00"), prices("10.00", "12.01", "15.00", "10.99"))
    assert result.lowest == D("10.00")
    assert result.highest == D("15.00")
    assert result.median == D("11.50")  # mean of the two middle prices, exact
    assert result.spread == D("5.00")
    assert result.spread_pct == D("50.0000")
    assert result.price_index == D("0.9565")
    assert result.lowest_competitor_id == 1


def test_convert_rounds_to_target_minor_unit():
    assert convert(D("100"), D("0.923456"), "EUR") == D("92.35")
    assert convert(D("19.99"), D("151.237"), "JPY") == D("3023")


@given(
    st.decimals(min_value=D("0.01"), max_value=D("100000"), places=2),
    st.lists(st.decimals(min_value=D("0.01"), max_value=D("100000"), places=2), min_size=1, max_size=20),
)
def test_position_invariants(ours, amounts):
    result = compute_market_position(ours, prices(*amounts))
    assert result.lowest <= result.median <= result.highest
    assert result.spread == result.highest - result.lowest >= 0
    expected = "lowest" if ours <= min(amounts) else "highest" if ours >= max(amounts) else "middle"
    assert result.position == expected

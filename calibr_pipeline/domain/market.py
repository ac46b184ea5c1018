"""Market position: where our price stands among competitor prices (pure, exact)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from statistics import median
from typing import Iterable, Sequence

from calibr_pipeline.domain.money import quantize

RATIO_PLACES = Decimal("0.0001")


@dataclass(frozen=True)
class CompetitorPrice:
    competitor_id: int
    amount: Decimal  # already in our currency


@dataclass(frozen=True)
class MarketPositionResult:
    competitor_count: int
    lowest: Decimal | None
    highest: Decimal | None
    median: Decimal | None
    spread: Decimal | None
    spread_pct: Decimal | None
    position: str  # lowest | highest | middle | no_data
    lowest_competitor_id: int | None
    price_index: Decimal | None  # our price / median competitor price


def compute_market_position(our_price: Decimal, prices: Iterable[CompetitorPrice]) -> MarketPositionResult:
    """Position of ``our_price`` against the competitors' prices.

    Ties count in our favour: matching the lowest price is "lowest", so a single competitor at
    our exact price makes us "lowest" (we are not undercut). Several listings of the same
    competitor each count, because each is a separate offer a shopper can find.
    """
    ordered: Sequence[CompetitorPrice] = sorted(prices, key=lambda p: (p.amount, p.competitor_id))
    if not ordered:
        return MarketPositionResult(0, None, None, None, None, None, "no_data", None, None)
    amounts = [p.amount for p in ordered]
    lowest, highest = amounts[0], amounts[-1]
    middle = Decimal(median(amounts))
    spread = highest - lowest
    if our_price <= lowest:
        position = "lowest"
    elif our_price >= highest:
        position = "highest"
    else:
        position = "middle"
    return MarketPositionResult(
        competitor_count=len(ordered),
        lowest=lowest,
        highest=highest,
        median=middle,
        spread=spread,
        spread_pct=(spread / lowest * 100).quantize(RATIO_PLACES, ROUND_HALF_UP),
        position=position,
        lowest_competitor_id=ordered[0].competitor_id,
        price_index=(our_price / middle).quantize(RATIO_PLACES, ROUND_HALF_UP),
    )


def convert(amount: Decimal, rate: Decimal, target_currency: str) -> Decimal:
    """Convert with a reference rate, rounded to the target currency's minor unit."""
    return quantize(amount * rate, target_currency)

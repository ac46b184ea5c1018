"""Reference exchange rates at fixed precision, and how old a rate may be before it is not used.

Rates are stored with :data:`RATE_DECIMALS` decimals (the warehouse's NUMERIC(20, 6)); a rate
given with more is rounded half-even once, when it is stored, and one that rounds to zero is
refused. An inverse rate (only USD->GBP known, GBP->USD wanted) is never stored or multiplied
with its 28 digits: the amount is *divided* by the stored forward rate and the inverse shown in
the snapshot is quantized to the same 6 decimals.

A rate older than the maximum age (``CALIBR_FX_MAX_RATE_AGE_DAYS``, default 31 days: reference rates kept by hand with
``calibr fx set`` are typically refreshed monthly) is stale:
the observation is kept with ``excluded_reason`` "fx_rate_stale: ..." and no converted amount,
exactly like a missing rate ("fx_rate_missing: ..."). Neither fails the tenant-day.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal

from calibr_pipeline.domain.money import quantize

RATE_DECIMALS = 6
_RATE_QUANTUM = Decimal(1).scaleb(-RATE_DECIMALS)
MAX_RATE_AGE_ENV = "CALIBR_FX_MAX_RATE_AGE_DAYS"
DEFAULT_MAX_RATE_AGE_DAYS = 31

FX_RATE_MISSING = "fx_rate_missing"
FX_RATE_STALE = "fx_rate_stale"


def quantize_rate(rate: Decimal) -> Decimal:
    """``rate`` at the stored precision; refuses a rate that is not positive after rounding."""
    if not isinstance(rate, Decimal) or not rate.is_finite() or rate <= 0:
        raise ValueError(f"an exchange rate must be a positive finite Decimal, got {rate!r}")
    rounded = rate.quantize(_RATE_QUANTUM, rounding=ROUND_HALF_EVEN)
    if rounded == 0:
        raise ValueError(f"exchange rate {rate} rounds to zero at {RATE_DECIMALS} decimals; store the inverse pair instead")
    return rounded


def max_rate_age_days(environ: dict | None = None) -> int:
    env = os.environ if environ is None else environ
    raw = env.get(MAX_RATE_AGE_ENV)
    if raw is None or not str(raw).strip():
        return DEFAULT_MAX_RATE_AGE_DAYS
    try:
        days = int(str(raw).strip())
    except ValueError:
        raise ValueError(f"{MAX_RATE_AGE_ENV} must be a whole number of days, got {raw!r}") from None
    if days < 0:
        raise ValueError(f"{MAX_RATE_AGE_ENV} must not be negative, got {raw!r}")
    return days


@dataclass(frozen=True)
class FxQuote:
    """1 ``base`` = ``rate`` ``quote``, read from the stored pair ``stored_base``->``stored_quote``."""

    base: str
    quote: str
    stored_rate: Decimal  # as stored (6 decimals), for the pair in the direction it was stored
    rate_date: date
    inverted: bool

    @property
    def rate(self) -> Decimal:
        """The applied rate at fixed precision (an inverse is quantized, never 28 digits)."""
        if not self.inverted:
            return self.stored_rate
        return (Decimal(1) / self.stored_rate).quantize(_RATE_QUANTUM, rounding=ROUND_HALF_EVEN)

    def convert(self, amount: Decimal) -> Decimal:
        """``amount`` in ``quote``, rounded to its minor unit; an inverse pair divides by the
        stored rate so no precision is lost to the rounded inverse."""
        exact = amount / self.stored_rate if self.inverted else amount * self.stored_rate
        return quantize(exact, self.quote)

    def age_days(self, on: date) -> int:
        return (on - self.rate_date).days

    def stale_reason(self, on: date, max_age_days: int | None = None) -> str | None:
        limit = max_rate_age_days() if max_age_days is None else max_age_days
        age = self.age_days(on)
        if age <= limit:
            return None
        return (
            f"{FX_RATE_STALE}: {self.base}->{self.quote} rate of {self.rate_date.isoformat()} is {age} days old "
            f"(maximum {limit}; set a newer rate with `calibr fx set`)"
        )


def missing_reason(base: str, quote: str, on: date) -> str:
    return f"{FX_RATE_MISSING}: no {base}->{quote} rate on or before {on.isoformat()} (set one with `calibr fx set`)"

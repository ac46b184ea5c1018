"""Uptime and SLA arithmetic over probe results (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Sequence

SLA_TARGET_PCT = Decimal("99.9")


@dataclass(frozen=True)
class Probe:
    at: datetime
    ok: bool


@dataclass(frozen=True)
class Uptime:
    probes: int
    successes: int
    uptime_pct: Decimal | None  # None without probes: no evidence either way
    met: bool | None
    longest_outage: timedelta


def uptime(probes: Sequence[Probe], target_pct: Decimal = SLA_TARGET_PCT) -> Uptime:
    """Share of successful probes, rounded *down* to 3 places so 99.8996 % never reads as 99.9 %.

    The longest outage runs from the first failed probe of a streak to the next success
    (or the last probe when the streak has not ended).
    """
    ordered = sorted(probes, key=lambda p: p.at)
    if not ordered:
        return Uptime(0, 0, None, None, timedelta(0))
    successes = sum(1 for p in ordered if p.ok)
    pct = (Decimal(successes) * 100 / Decimal(len(ordered))).quantize(Decimal("0.001"), ROUND_DOWN)
    longest, start = timedelta(0), None
    for probe in ordered:
        if not probe.ok and start is None:
            start = probe.at
        elif probe.ok and start is not None:
            longest, start = max(longest, probe.at - start), None
    if start is not None:
        longest = max(longest, ordered[-1].at - start)
    return Uptime(len(ordered), successes, pct, pct >= target_pct, longest)

"""Thresholds for scrape health, shared by asset checks, metrics and alerts (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Iterable, Mapping, Sequence

# Error rate of competitor fetches: below WARN passes, from WARN warns, above ERROR fails.
ERROR_RATE_WARN = Decimal("0.01")
ERROR_RATE_ERROR = Decimal("0.02")
CONSECUTIVE_FAILURES_WARN = 3
CONSECUTIVE_FAILURES_ERROR = 5


class Verdict:
    PASS = "pass"
    WARN = "warn"
    ERROR = "error"


@dataclass(frozen=True)
class ErrorRateResult:
    total: int
    failed: int
    rate: Decimal
    verdict: str
    by_error_class: Mapping[str, int]


def evaluate_error_rate(error_classes: Sequence[str | None]) -> ErrorRateResult:
    """``error_classes`` has one entry per observation, ``None`` for a success."""
    total = len(error_classes)
    by_class: dict[str, int] = {}
    for error_class in error_classes:
        if error_class is not None:
            by_class[error_class] = by_class.get(error_class, 0) + 1
    failed = sum(by_class.values())
    rate = Decimal(failed) / Decimal(total) if total else Decimal(0)
    if rate > ERROR_RATE_ERROR:
        verdict = Verdict.ERROR
    elif rate >= ERROR_RATE_WARN:
        verdict = Verdict.WARN
    else:
        verdict = Verdict.PASS
    return ErrorRateResult(total, failed, rate, verdict, dict(sorted(by_class.items())))


def consecutive_failures(statuses_newest_first: Iterable[str]) -> int:
    """How many of the most recent fetch outcomes failed in a row."""
    count = 0
    for status in statuses_newest_first:
        if status == "ok":
            break
        count += 1
    return count


def consecutive_failure_verdict(count: int) -> str:
    if count >= CONSECUTIVE_FAILURES_ERROR:
        return Verdict.ERROR
    if count >= CONSECUTIVE_FAILURES_WARN:
        return Verdict.WARN
    return Verdict.PASS

"""Retry timing: exponential backoff with jitter, and ``Retry-After`` honoured.

Pure and clock-free so that any caller (competitor scraping, Shopify Admin writes,
alert delivery) can share one policy and tests can drive it with a seeded RNG.
The tenacity helpers at the bottom turn a :class:`RetryPolicy` into tenacity's
``wait``/``stop`` arguments; the retry loop itself is always tenacity's.

Attempts are numbered from 1. ``delay_for(n)`` is the pause *after* attempt ``n``
failed, before attempt ``n + 1``: ``base * multiplier ** (n - 1)``, capped at
``max_seconds``, then spread by ``±jitter`` (a fraction) so that many workers that
failed together do not retry together.

When the server sent ``Retry-After`` (delay-seconds or an HTTP-date) that value wins
over the exponential delay, including when it is *shorter*: the server knows best
when it will take us back. It is capped at ``retry_after_cap`` so that one hostile
or confused server cannot park a worker for an hour; if the server meant it, the
next attempt fails again and the failure is recorded.
"""

from __future__ import annotations

import math
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import tenacity


_SECONDS = re.compile(r"[0-9]{1,9}(?:\.[0-9]+)?")


class _Random(Protocol):
    def random(self) -> float: ...


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3
    base_seconds: float = 2.0
    multiplier: float = 2.0
    jitter: float = 0.2
    max_seconds: float = 64.0
    retry_after_cap: float = 120.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        for name in ("base_seconds", "max_seconds", "retry_after_cap"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if not (self.multiplier >= 1 and math.isfinite(self.multiplier)):
            raise ValueError(f"multiplier must be >= 1, got {self.multiplier!r}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter must be a fraction in [0, 1), got {self.jitter!r}")

    def exponential_delay(self, attempt: int) -> float:
        """The un-jittered delay after failed attempt ``attempt`` (1-based)."""
        if attempt < 1:
            raise ValueError(f"attempt numbers start at 1, got {attempt}")
        # Compare exponents rather than computing a huge power that could overflow.
        if self.multiplier > 1 and self.base_seconds > 0:
            limit = math.log(self.max_seconds / self.base_seconds, self.multiplier) if self.max_seconds > 0 else 0
            if attempt - 1 >= limit:
                return self.max_seconds
        return min(self.base_seconds * self.multiplier ** (attempt - 1), self.max_seconds)

    def delay_for(
        self,
        attempt: int,
        retry_after: str | float | None = None,
        rng: _Random | None = None,
        *,
        now: datetime | None = None,
    ) -> float:
        """Seconds to wait after failed attempt ``attempt`` before the next one.

        ``retry_after`` is the raw ``Retry-After`` header (or already-parsed seconds);
        an unparseable value is ignored and the exponential delay is used.
        """
        seconds: float | None
        if isinstance(retry_after, (int, float)) and not isinstance(retry_after, bool):
            seconds = float(retry_after) if math.isfinite(retry_after) and retry_after >= 0 else None
        else:
            seconds = parse_retry_after(retry_after, now)
        if seconds is not None:
            return min(seconds, self.retry_after_cap)
        delay = self.exponential_delay(attempt)
        if self.jitter:
            spread = (rng or random).random() * 2 - 1
            delay *= 1 + self.jitter * spread
        return max(0.0, min(delay, self.max_seconds))

    def has_attempts_left(self, attempt: int) -> bool:
        return attempt < self.max_attempts


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait according to a ``Retry-After`` header value, or ``None``.

    Accepts delay-seconds (decimals tolerated, some servers send ``1.5``) and
    HTTP-dates (a date in the past means "now", i.e. ``0``). Anything else, negative
    numbers included, is ``None``: a bad header must not make us wait forever nor
    skip the backoff.
    """
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    if _SECONDS.fullmatch(text):
        return float(text)
    if text[:1] in "-+." or text[:1].isdigit():
        # A number, but not a valid delay (negative, signed, exponent...).
        return None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        # RFC 9110 HTTP-dates are always GMT.
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max(0.0, (when - now).total_seconds())


# --------------------------------------------------------------------------- tenacity


def retry_after_of(exc: BaseException | None) -> str | float | None:
    """The Retry-After an exception carries: its ``retry_after`` attribute, or the
    header of an attached ``response`` (as on ``requests.HTTPError``)."""
    if exc is None:
        return None
    value = getattr(exc, "retry_after", None)
    if value is not None:
        return value
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is not None:
        try:
            return headers.get("Retry-After")
        except AttributeError:
            return None
    return None


def wait_from_policy(
    policy: RetryPolicy, rng: _Random | None = None, clock: Callable[[], datetime] | None = None
) -> Callable[[tenacity.RetryCallState], float]:
    """A tenacity ``wait=`` that follows ``policy`` and the failed attempt's Retry-After."""

    def wait(retry_state: tenacity.RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome is not None else None
        now = clock() if clock else None
        return policy.delay_for(retry_state.attempt_number, retry_after_of(exc), rng, now=now)

    return wait


def stop_from_policy(policy: RetryPolicy) -> tenacity.stop.stop_base:
    return tenacity.stop_after_attempt(policy.max_attempts)


def retrying_from_policy(
    policy: RetryPolicy,
    *,
    retry: Callable[[BaseException], bool],
    sleep: Callable[[float], Any] = time.sleep,
    rng: _Random | None = None,
    before_sleep: Callable[[tenacity.RetryCallState], Any] | None = None,
) -> tenacity.Retrying:
    """A ready ``tenacity.Retrying`` that retries exceptions for which ``retry`` is true.

    The last exception is re-raised unchanged (``reraise=True``), so callers classify
    the real error rather than a ``tenacity.RetryError`` wrapper.
    """
    return tenacity.Retrying(
        stop=stop_from_policy(policy),
        wait=wait_from_policy(policy, rng),
        retry=tenacity.retry_if_exception(retry),
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )


# --------------------------------------------------------------------------- cost buckets


def throttle_deficit_wait(
    requested: float | None,
    currently_available: float | None,
    restore_rate: float | None,
    *,
    rng: _Random | None = None,
    max_jitter: float = 0.25,
) -> float | None:
    """Seconds until a leaky bucket can pay ``requested`` points, plus a little jitter.

    For Shopify's THROTTLED answers: ``extensions.cost`` says what the request needs
    (``requestedQueryCost``) and what the bucket holds and restores
    (``throttleStatus``), so the deficit ``(requested − currentlyAvailable) /
    restoreRate`` is exactly how long to wait; a blind 16 s pause for a deficit that
    refills in 0.1 s wastes the whole difference. The jitter (up to 10 % of the wait,
    at least a few milliseconds' spread, at most ``max_jitter``) keeps two clients
    that were throttled together from coming back in the same millisecond.

    ``None`` when the figures are missing or unusable (no status, a restore rate of
    0): the caller then falls back to ``Retry-After`` or its exponential schedule.
    """
    values = (requested, currently_available, restore_rate)
    if any(v is None or isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
        return None
    assert requested is not None and currently_available is not None and restore_rate is not None
    if not all(math.isfinite(v) for v in (requested, currently_available, restore_rate)) or restore_rate <= 0 or requested < 0:
        return None
    deficit = max(0.0, float(requested) - float(currently_available)) / float(restore_rate)
    return deficit + bucket_jitter(deficit, rng=rng, max_jitter=max_jitter)


def bucket_jitter(wait: float, *, rng: _Random | None = None, max_jitter: float = 0.25) -> float:
    """The random extra added to a wait for a shared bucket: up to 10 % of it, 20 ms at
    least, ``max_jitter`` at most. Clients contending for one bucket must draw their
    waits from the same distribution, or the one that adds more always arrives second."""
    spread = min(max_jitter, 0.02 + 0.1 * max(0.0, wait))
    return (rng or random).random() * spread

"""Client-side mirror of the shop's leaky bucket.

Shopify reports ``throttleStatus`` with every answer; projecting it forward with the
restore rate tells how long to wait so the next request is affordable on arrival.
Waiting here is cheaper than being THROTTLED: a throttled answer still costs a round
trip and counts against our request budget.

Concurrent callers of one client use :meth:`CostBucket.acquire` / :meth:`CostBucket.settle`:
a status Shopify reports says nothing of the requests still on their way (booked
here, not yet charged there), and answers may overtake each other. So a reported
status is corrected by the points of the requests still in flight, and when other
answers were settled while a request was out, its (possibly older) status may only
lower the mirror, never raise it. Both corrections err on the side of waiting a
little longer; a lone caller still gets Shopify's figures exactly.

**Other consumers.** Another app on the same shop spends from the same bucket, and
nothing tells us how much. But each answer of a lone caller compares what the mirror
predicted with what Shopify reports: the shortfall per second is the other consumers'
spending rate. The mirror keeps a smoothed estimate of it and projects the refill at
``restoreRate − foreign rate``, so that with another app taking half of the bucket it
waits for half-speed refills instead of sending into THROTTLED answers. Refunds
(actual < requested) and answers that were not charged push the estimate down; it is
never negative and never more than 90 % of the restore rate.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

# Clocks of client and server never agree to the microsecond; a hair of extra
# waiting is cheaper than a throttled round trip.
_SAFETY_SECONDS = 0.002
# Shopify reports currentlyAvailable as a whole number (floored): a point of shortfall
# is rounding, not another consumer.
_ROUNDING_POINTS = 1.0
# Weight of the newest observation in the foreign-rate estimate, and the shortest
# interval worth learning from (shorter ones amplify rounding into huge rates).
_FOREIGN_SMOOTHING = 0.3
_MIN_LEARNING_SECONDS = 0.05
_MAX_FOREIGN_SHARE = 0.9


@dataclass(frozen=True)
class ThrottleStatus:
    maximum_available: float
    currently_available: float
    restore_rate: float
    observed_at: float

    @classmethod
    def from_extensions(cls, extensions: object, observed_at: float) -> ThrottleStatus | None:
        try:
            status = extensions["cost"]["throttleStatus"]  # type: ignore[index]
            return cls(
                maximum_available=float(status["maximumAvailable"]),
                currently_available=float(status["currentlyAvailable"]),
                restore_rate=float(status["restoreRate"]),
                observed_at=observed_at,
            )
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True)
class Reservation:
    """Points booked for one request: ``wait`` seconds before sending it."""

    cost: int
    wait: float
    epoch: int  # settles seen when booked; a change means other answers arrived meanwhile


class CostBucket:
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._status: ThrottleStatus | None = None
        self._in_flight = 0  # points of acquired, not yet settled requests
        self._settles = 0
        self._foreign_rate = 0.0  # points/s other consumers spend from the shop's bucket
        self._last_report_at: float | None = None  # observed_at of the last status Shopify sent

    @property
    def status(self) -> ThrottleStatus | None:
        return self._status

    def observe(self, status: ThrottleStatus) -> None:
        with self._lock:
            self._status = status

    @property
    def foreign_rate(self) -> float:
        """Estimated points/s other consumers spend from the shop's bucket."""
        return self._foreign_rate

    def _refill_rate(self, status: ThrottleStatus) -> float:
        return max(status.restore_rate - self._foreign_rate, status.restore_rate * (1 - _MAX_FOREIGN_SHARE))

    def available(self, now: float | None = None) -> float | None:
        status = self._status
        if status is None:
            return None
        now = self._clock() if now is None else now
        elapsed = now - status.observed_at
        return min(status.maximum_available, status.currently_available + elapsed * self._refill_rate(status))

    def acquire(self, cost: int) -> Reservation:
        """:meth:`reserve` for a request whose answer will be passed to :meth:`settle`."""
        with self._lock:
            wait = self._reserve(cost)
            self._in_flight += cost
            return Reservation(cost=cost, wait=wait, epoch=self._settles)

    def settle(self, reservation: Reservation, status: ThrottleStatus | None, *, charged: bool = True) -> None:
        """The request of ``reservation`` got an answer (``status``) or failed (``None``).

        A failed request keeps its booking: Shopify may have charged it. ``charged`` is
        False for answers Shopify did not charge (THROTTLED, refused documents).
        """
        with self._lock:
            self._in_flight = max(0, self._in_flight - reservation.cost)
            if status is None:
                return
            self._settles += 1
            lone = reservation.epoch == self._settles - 1 and self._in_flight == 0
            if lone:
                self._learn_foreign_rate(reservation, status, charged)
            self._last_report_at = status.observed_at
            corrected = status.currently_available - self._in_flight
            if reservation.epoch != self._settles - 1 and self._status is not None:
                # Other answers arrived while this one was out: this status may be older
                # than the one already mirrored, so it can only make us more careful.
                mirrored = self.available(status.observed_at)
                assert mirrored is not None
                corrected = min(corrected, mirrored)
            self._status = ThrottleStatus(
                maximum_available=status.maximum_available,
                currently_available=corrected,
                restore_rate=status.restore_rate,
                observed_at=status.observed_at,
            )

    def _learn_foreign_rate(self, reservation: Reservation, status: ThrottleStatus, charged: bool) -> None:
        if self._status is None or self._last_report_at is None:
            return
        interval = status.observed_at - self._last_report_at
        if interval < _MIN_LEARNING_SECONDS or status.restore_rate <= 0:
            return
        predicted = self.available(status.observed_at)
        assert predicted is not None
        if not charged:
            predicted += reservation.cost  # booked here, never taken there
        if predicted >= status.maximum_available and status.currently_available >= status.maximum_available - _ROUNDING_POINTS:
            return  # a full bucket says nothing about who else spends
        shortfall = predicted - status.currently_available
        if abs(shortfall) <= _ROUNDING_POINTS:
            shortfall = 0.0
        sample = self._foreign_rate + shortfall / interval
        sample = min(max(sample, 0.0), status.restore_rate * _MAX_FOREIGN_SHARE)
        self._foreign_rate += _FOREIGN_SMOOTHING * (sample - self._foreign_rate)

    def reserve(self, cost: int) -> float:
        """Seconds to wait before a request of ``cost`` points is affordable; books the points.

        Booking lets concurrent callers of one client queue up behind each other instead
        of all seeing the same full bucket. The next observed status replaces the
        booking with Shopify's truth.
        """
        with self._lock:
            return self._reserve(cost)

    def _reserve(self, cost: int) -> float:
        status = self._status
        if status is None or status.restore_rate <= 0:
            return 0.0
        now = self._clock()
        available = self.available(now)
        assert available is not None
        wait = 0.0
        rate = self._refill_rate(status)
        if cost > available:
            wait = (cost - available) / rate + _SAFETY_SECONDS
        send_at = now + wait
        self._status = ThrottleStatus(
            maximum_available=status.maximum_available,
            currently_available=available + wait * rate - cost,
            restore_rate=status.restore_rate,
            observed_at=send_at,
        )
        return wait

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
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

# Clocks of client and server never agree to the microsecond; a hair of extra
# waiting is cheaper than a throttled round trip.
_SAFETY_SECONDS = 0.002


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

    @property
    def status(self) -> ThrottleStatus | None:
        return self._status

    def observe(self, status: ThrottleStatus) -> None:
        with self._lock:
            self._status = status

    def available(self, now: float | None = None) -> float | None:
        status = self._status
        if status is None:
            return None
        now = self._clock() if now is None else now
        elapsed = now - status.observed_at
        return min(status.maximum_available, status.currently_available + elapsed * status.restore_rate)

    def acquire(self, cost: int) -> Reservation:
        """:meth:`reserve` for a request whose answer will be passed to :meth:`settle`."""
        with self._lock:
            wait = self._reserve(cost)
            self._in_flight += cost
            return Reservation(cost=cost, wait=wait, epoch=self._settles)

    def settle(self, reservation: Reservation, status: ThrottleStatus | None) -> None:
        """The request of ``reservation`` got an answer (``status``) or failed (``None``).

        A failed request keeps its booking: Shopify may have charged it.
        """
        with self._lock:
            self._in_flight = max(0, self._in_flight - reservation.cost)
            if status is None:
                return
            self._settles += 1
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
        if cost > available:
            wait = (cost - available) / status.restore_rate + _SAFETY_SECONDS
        send_at = now + wait
        self._status = ThrottleStatus(
            maximum_available=status.maximum_available,
            currently_available=available + wait * status.restore_rate - cost,
            restore_rate=status.restore_rate,
            observed_at=send_at,
        )
        return wait

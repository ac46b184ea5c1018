"""The sandbox's notion of "today": the real UTC date unless a test or demo pins it."""

from __future__ import annotations

import datetime as dt
import threading


class SandboxClock:
    def __init__(self, date: dt.date | None = None):
        self._lock = threading.Lock()
        self._pinned = date

    def today(self) -> dt.date:
        with self._lock:
            pinned = self._pinned
        return pinned or dt.datetime.now(dt.UTC).date()

    def set_date(self, date: dt.date | str | None) -> None:
        """Pin the date (a ``date`` or ``YYYY-MM-DD``); ``None`` follows the real clock again."""
        if isinstance(date, str):
            date = dt.date.fromisoformat(date)
        with self._lock:
            self._pinned = date

    @property
    def pinned(self) -> bool:
        return self._pinned is not None

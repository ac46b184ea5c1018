"""Fault injection and traffic counters shared by every sandbox server.

A rule matches requests by server/shop name and a path glob; the newest matching
active rule decides (a spent "fail next N" rule without probabilities steps aside). "Fail the next N" rules are for deterministic tests; probabilities are rolled
on one seeded RNG so a run with the same request order injects the same faults.
"""

from __future__ import annotations

import fnmatch
import itertools
import random
import threading
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

FaultKind = Literal["5xx", "timeout", "429", "malformed"]
FAULT_KINDS: tuple[FaultKind, ...] = ("5xx", "timeout", "429", "malformed")


@dataclass
class FaultRule:
    shop: str | None = None  # server/shop name; None matches every one
    path: str = "*"  # fnmatch glob on the request path (query string excluded)
    error_rate: float = 0.0  # probability of a 5xx
    error_status: int = 503
    timeout_rate: float = 0.0  # probability of answering only after timeout_delay
    timeout_delay: float = 5.0  # seconds; make it longer than the client's read timeout
    rate_limit_rate: float = 0.0  # probability of a 429
    retry_after: str | None = "1"  # Retry-After header value of 429s, seconds (decimals allowed)
    malformed_rate: float = 0.0  # probability of a truncated JSON / price-less HTML body
    fail_next: int = 0  # deterministic mode: the next N matching requests fail with fail_mode
    fail_mode: FaultKind = "5xx"
    rule_id: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        if self.fail_mode not in FAULT_KINDS:
            raise ValueError(f"fail_mode must be one of {FAULT_KINDS}, got {self.fail_mode!r}")
        total = self.error_rate + self.timeout_rate + self.rate_limit_rate + self.malformed_rate
        if any(p < 0 for p in (self.error_rate, self.timeout_rate, self.rate_limit_rate, self.malformed_rate)) or total > 1:
            raise ValueError("fault probabilities must be >= 0 and sum to at most 1")

    @property
    def active(self) -> bool:
        """A spent "fail next N" rule without probabilities must not shadow older rules."""
        return self.fail_next > 0 or (self.error_rate + self.timeout_rate + self.rate_limit_rate + self.malformed_rate) > 0

    def matches(self, shop: str | None, path: str) -> bool:
        return (self.shop is None or self.shop == shop) and fnmatch.fnmatchcase(path, self.path)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> FaultRule:
        known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__ and k != "rule_id"}
        unknown = set(raw) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown fault rule fields: {sorted(unknown)}")
        if "retry_after" in known and known["retry_after"] is not None:
            known["retry_after"] = str(known["retry_after"])
        return cls(**known)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    status: int = 503
    retry_after: str | None = None
    delay: float = 0.0


class FaultInjector:
    def __init__(self, seed: int = 0):
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._rules: list[FaultRule] = []
        self._ids = itertools.count(1)
        self._requests: Counter[tuple[str | None, str]] = Counter()
        self._faults: Counter[tuple[str | None, str, str]] = Counter()

    # -- rules ----------------------------------------------------------------------------

    def add(self, rule: FaultRule | None = None, **fields: Any) -> FaultRule:
        """Add a rule (or build one from keyword fields); newest rules win."""
        rule = rule or FaultRule(**fields)
        with self._lock:
            rule.rule_id = next(self._ids)
            self._rules.append(rule)
        return rule

    def remove(self, rule: FaultRule) -> None:
        with self._lock:
            self._rules = [r for r in self._rules if r.rule_id != rule.rule_id]

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def rules(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules)

    def decide(self, shop: str | None, path: str) -> Fault | None:
        """Count the request and say which fault, if any, it gets."""
        with self._lock:
            self._requests[(shop, path)] += 1
            rule = next((r for r in reversed(self._rules) if r.active and r.matches(shop, path)), None)
            if rule is None:
                return None
            kind: FaultKind | None = None
            if rule.fail_next > 0:
                rule.fail_next -= 1
                kind = rule.fail_mode
            else:
                roll = self._rng.random()
                for candidate, probability in (
                    ("5xx", rule.error_rate),
                    ("timeout", rule.timeout_rate),
                    ("429", rule.rate_limit_rate),
                    ("malformed", rule.malformed_rate),
                ):
                    if roll < probability:
                        kind = candidate  # type: ignore[assignment]
                        break
                    roll -= probability
            if kind is None:
                return None
            self._faults[(shop, path, kind)] += 1
            return Fault(kind=kind, status=rule.error_status, retry_after=rule.retry_after, delay=rule.timeout_delay)

    # -- counters ---------------------------------------------------------------------------

    def requests(self, shop: str | None = None, path: str = "*") -> int:
        """Requests seen (control endpoints excluded) for a shop (None: all) and path glob."""
        with self._lock:
            return sum(
                n for (s, p), n in self._requests.items() if (shop is None or s == shop) and fnmatch.fnmatchcase(p, path)
            )

    def faults(self, kind: FaultKind | None = None, shop: str | None = None, path: str = "*") -> int:
        with self._lock:
            return sum(
                n
                for (s, p, k), n in self._faults.items()
                if (kind is None or k == kind) and (shop is None or s == shop) and fnmatch.fnmatchcase(p, path)
            )

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            routes: dict[str, dict[str, int]] = {}
            for (shop, path), n in self._requests.items():
                routes.setdefault(f"{shop or '-'} {path}", {})["requests"] = n
            for (shop, path, kind), n in self._faults.items():
                routes.setdefault(f"{shop or '-'} {path}", {})[kind] = n
            return {"routes": routes, "rules": [r.as_dict() for r in self._rules]}

    def reset_counters(self) -> None:
        with self._lock:
            self._requests.clear()
            self._faults.clear()

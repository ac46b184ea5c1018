"""When to retry a price write to Shopify, and how long to wait first.

Pure and clock-free; the retry loop itself lives in
:mod:`calibr_pipeline.connectors.shopify_admin.writes` (tenacity, injectable sleep).

The schedule, as specified:

* **transient** failures (HTTP 5xx, timeouts, connection errors; a cut-off body is
  treated the same way) wait ``2 s, 4 s, 8 s`` spread by ``±20 %`` jitter, and a write
  makes **at most 3 attempts** of this kind. Read literally, that means the 8 s step
  is never slept by a write (the third transient failure is the last); it stays in the
  schedule so that raising ``max_attempts`` keeps doubling. ``Retry-After`` on a 5xx is
  ignored: the spec asks for the exponential schedule there.
* **throttled** answers (GraphQL ``THROTTLED`` or HTTP 429) honour ``Retry-After``
  (delay-seconds, decimals allowed, capped at ``retry_after_cap``) when the answer
  carries one, else wait ``16 s, 32 s, 64 s`` without jitter. All three steps are
  used: up to 4 attempts of this kind.
* **userErrors** are never retried: Shopify looked at the input and said no; the
  same input gets the same answer. They are per-variant outcomes, recorded with
  their code. Anything else (HTTP 4xx, GraphQL validation errors) is not retried
  either: it is our mistake and needs a code change, not patience.

Each kind has its own attempt budget: a write that was throttled once and then hit
two 5xx has used 1 throttle attempt and 2 transient attempts. Budgets are counted in
*failures of that kind*, so ``attempt`` below is "the n-th failure of this kind".

Both schedules are :class:`~calibr_pipeline.domain.backoff.RetryPolicy` instances, so
the jitter, cap and ``Retry-After`` parsing are the ones every other caller uses.
"""

from __future__ import annotations

import random
from enum import StrEnum
from typing import Protocol

from calibr_pipeline.domain.backoff import RetryPolicy
from calibr_pipeline.domain.errors import ErrorClass


class _Random(Protocol):
    def random(self) -> float: ...


class WriteFailureKind(StrEnum):
    TRANSIENT = "transient"  # 5xx, timeout, connection, truncated body: retry 2/4/8 s ±20 %
    THROTTLED = "throttled"  # GraphQL THROTTLED or HTTP 429: Retry-After, else 16/32/64 s
    USER_ERROR = "user_error"  # per-variant userErrors: recorded, never retried
    PERMANENT = "permanent"  # 4xx, invalid document, auth: never retried


WRITE_TRANSIENT_POLICY = RetryPolicy(
    max_attempts=3,
    base_seconds=2.0,
    multiplier=2.0,
    jitter=0.2,
    max_seconds=8.0,
    retry_after_cap=8.0,  # unused: transient waits ignore Retry-After
)

WRITE_THROTTLE_POLICY = RetryPolicy(
    max_attempts=4,
    base_seconds=16.0,
    multiplier=2.0,
    jitter=0.0,
    max_seconds=64.0,
    retry_after_cap=120.0,
)

_POLICIES: dict[WriteFailureKind, RetryPolicy] = {
    WriteFailureKind.TRANSIENT: WRITE_TRANSIENT_POLICY,
    WriteFailureKind.THROTTLED: WRITE_THROTTLE_POLICY,
}


def policy_for(kind: WriteFailureKind | str) -> RetryPolicy | None:
    """The retry policy of a failure kind; ``None`` for kinds that are never retried."""
    return _POLICIES.get(WriteFailureKind(kind))


def failure_kind(error_class: ErrorClass | str | None, code: str | None = None) -> WriteFailureKind:
    """Classify a failed write by the pipeline's error class and Shopify's code."""
    if code == "THROTTLED":
        return WriteFailureKind.THROTTLED
    if error_class is None:
        return WriteFailureKind.PERMANENT
    error_class = ErrorClass(error_class)
    if error_class is ErrorClass.RATE_LIMITED:
        return WriteFailureKind.THROTTLED
    if error_class.is_transient or error_class is ErrorClass.MALFORMED_BODY:
        return WriteFailureKind.TRANSIENT
    return WriteFailureKind.PERMANENT


def max_attempts(kind: WriteFailureKind | str) -> int:
    """How many failures of this kind a write may suffer (1 for kinds never retried)."""
    policy = policy_for(kind)
    return policy.max_attempts if policy is not None else 1


def should_retry(kind: WriteFailureKind | str, attempt: int) -> bool:
    """Whether the ``attempt``-th failure of ``kind`` (1-based) leaves room for another try."""
    policy = policy_for(kind)
    return policy is not None and policy.has_attempts_left(attempt)


def delay_after(
    failure_kind: WriteFailureKind | str,
    attempt: int,
    retry_after: str | float | None = None,
    rng: _Random | None = None,
) -> float | None:
    """Seconds to wait after the ``attempt``-th failure of ``failure_kind``, or ``None``
    when that failure must not be retried (kind never retried, or budget spent).

    ``retry_after`` (the raw header or parsed seconds) only counts for THROTTLED/429.
    """
    kind = WriteFailureKind(failure_kind)
    policy = _POLICIES.get(kind)
    if policy is None or not policy.has_attempts_left(attempt):
        return None
    if kind is WriteFailureKind.TRANSIENT:
        retry_after = None
    return policy.delay_for(attempt, retry_after, rng or random)


# A THROTTLED answer that says how short the bucket is can be waited out exactly (the
# client computes the deficit: domain.backoff.throttle_deficit_wait); another app spending
# the same bucket can make that happen a few times in a row, so such answers get a larger
# budget than the blind 16/32/64 s schedule.
MAX_DEFICIT_THROTTLES = 10


def schedule(kind: WriteFailureKind | str) -> list[float]:
    """The un-jittered waits of a kind, e.g. ``[2.0, 4.0]`` / ``[16.0, 32.0, 64.0]`` (docs, tests)."""
    policy = policy_for(kind)
    if policy is None:
        return []
    return [policy.exponential_delay(n) for n in range(1, policy.max_attempts)]

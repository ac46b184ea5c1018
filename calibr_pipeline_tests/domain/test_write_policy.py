"""The price-write retry schedule (pure)."""

from __future__ import annotations

import random

import pytest

from calibr_pipeline.domain.backoff import RetryPolicy
from calibr_pipeline.domain.errors import ErrorClass
from calibr_pipeline.domain.write_policy import (
    WRITE_THROTTLE_POLICY,
    WRITE_TRANSIENT_POLICY,
    WriteFailureKind,
    delay_after,
    failure_kind,
    max_attempts,
    policy_for,
    schedule,
    should_retry,
)


class Fixed:
    def __init__(self, value: float):
        self.value = value

    def random(self) -> float:
        return self.value


def test_both_schedules_are_retry_policies():
    assert isinstance(WRITE_TRANSIENT_POLICY, RetryPolicy)
    assert isinstance(WRITE_THROTTLE_POLICY, RetryPolicy)
    assert policy_for("transient") is WRITE_TRANSIENT_POLICY
    assert policy_for(WriteFailureKind.THROTTLED) is WRITE_THROTTLE_POLICY
    assert policy_for("user_error") is None and policy_for("permanent") is None


def test_transient_is_2_4_8_seconds_with_20_percent_jitter_and_3_attempts():
    assert [WRITE_TRANSIENT_POLICY.exponential_delay(n) for n in (1, 2, 3)] == [2.0, 4.0, 8.0]
    assert WRITE_TRANSIENT_POLICY.jitter == 0.2
    assert max_attempts("transient") == 3
    assert schedule("transient") == [2.0, 4.0]  # 3 attempts: two waits
    # rng 0.5 is the middle of the jitter band; 0 and ~1 its edges.
    assert delay_after("transient", 1, rng=Fixed(0.5)) == pytest.approx(2.0)
    assert delay_after("transient", 2, rng=Fixed(0.0)) == pytest.approx(3.2)
    assert delay_after("transient", 2, rng=Fixed(0.999999)) == pytest.approx(4.8, abs=1e-4)
    assert delay_after("transient", 3, rng=Fixed(0.5)) is None  # third failure is the last


def test_transient_jitter_stays_within_20_percent():
    rng = random.Random(1)
    for attempt, base in ((1, 2.0), (2, 4.0)):
        waits = [delay_after("transient", attempt, rng=rng) for _ in range(500)]
        assert min(waits) >= base * 0.8 and max(waits) <= base * 1.2
        assert max(waits) - min(waits) > base * 0.3  # really spread


def test_transient_ignores_retry_after():
    assert delay_after("transient", 1, retry_after="30", rng=Fixed(0.5)) == pytest.approx(2.0)


def test_throttled_is_16_32_64_without_retry_after():
    assert [delay_after("throttled", n, rng=Fixed(0.9)) for n in (1, 2, 3)] == [16.0, 32.0, 64.0]
    assert delay_after("throttled", 4) is None
    assert max_attempts("throttled") == 4
    assert schedule("throttled") == [16.0, 32.0, 64.0]


@pytest.mark.parametrize("header, expected", [("2.5", 2.5), ("0.25", 0.25), ("1", 1.0), (1.75, 1.75), ("0", 0.0)])
def test_throttled_honours_decimal_retry_after(header, expected):
    assert delay_after("throttled", 1, retry_after=header) == expected
    assert delay_after("throttled", 3, retry_after=header) == expected


def test_throttled_retry_after_is_capped_and_garbage_falls_back_to_the_schedule():
    assert delay_after("throttled", 1, retry_after="3600") == WRITE_THROTTLE_POLICY.retry_after_cap
    assert delay_after("throttled", 2, retry_after="soon") == 32.0
    assert delay_after("throttled", 1, retry_after="-5") == 16.0
    # The budget is the budget, whatever the server asks.
    assert delay_after("throttled", 4, retry_after="1") is None


def test_user_errors_and_permanent_failures_are_never_retried():
    for kind in ("user_error", "permanent"):
        assert delay_after(kind, 1) is None
        assert not should_retry(kind, 1)
        assert max_attempts(kind) == 1
        assert schedule(kind) == []


def test_should_retry_counts_failures_of_one_kind():
    assert should_retry("transient", 1) and should_retry("transient", 2) and not should_retry("transient", 3)
    assert should_retry("throttled", 3) and not should_retry("throttled", 4)


@pytest.mark.parametrize(
    "error_class, code, kind",
    [
        (ErrorClass.HTTP_5XX, None, WriteFailureKind.TRANSIENT),
        (ErrorClass.TIMEOUT, None, WriteFailureKind.TRANSIENT),
        (ErrorClass.CONNECTION, None, WriteFailureKind.TRANSIENT),
        (ErrorClass.DNS, None, WriteFailureKind.TRANSIENT),
        (ErrorClass.MALFORMED_BODY, None, WriteFailureKind.TRANSIENT),
        (ErrorClass.RATE_LIMITED, None, WriteFailureKind.THROTTLED),
        (ErrorClass.RATE_LIMITED, "THROTTLED", WriteFailureKind.THROTTLED),
        ("http_4xx", "THROTTLED", WriteFailureKind.THROTTLED),
        (ErrorClass.HTTP_4XX, None, WriteFailureKind.PERMANENT),
        (ErrorClass.HTTP_4XX, "MAX_COST_EXCEEDED", WriteFailureKind.PERMANENT),
        (ErrorClass.TLS, None, WriteFailureKind.PERMANENT),
        (None, None, WriteFailureKind.PERMANENT),
    ],
)
def test_failure_kind(error_class, code, kind):
    assert failure_kind(error_class, code) is kind


def test_unknown_kind_is_rejected():
    with pytest.raises(ValueError):
        delay_after("bored", 1)

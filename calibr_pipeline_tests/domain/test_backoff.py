from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import tenacity

from calibr_pipeline.domain.backoff import (
    RetryPolicy,
    parse_retry_after,
    retry_after_of,
    retrying_from_policy,
    wait_from_policy,
)

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


class Fixed:
    """An rng whose random() is fixed, to pin the jitter to an extreme."""

    def __init__(self, value: float):
        self.value = value

    def random(self) -> float:
        return self.value


def test_exponential_without_jitter() -> None:
    policy = RetryPolicy(base_seconds=2.0, multiplier=2.0, jitter=0.0, max_seconds=64.0)
    assert [policy.delay_for(n) for n in range(1, 9)] == [2, 4, 8, 16, 32, 64, 64, 64]
    assert policy.delay_for(10_000) == 64.0  # no overflow for absurd attempt numbers


def test_jitter_spreads_within_bounds() -> None:
    policy = RetryPolicy(base_seconds=10.0, jitter=0.2, max_seconds=1000.0)
    assert policy.delay_for(1, rng=Fixed(0.0)) == pytest.approx(8.0)
    assert policy.delay_for(1, rng=Fixed(0.5)) == pytest.approx(10.0)
    assert policy.delay_for(1, rng=Fixed(0.999999)) == pytest.approx(12.0, rel=1e-5)
    rng = random.Random(1)
    delays = [policy.delay_for(1, rng=rng) for _ in range(500)]
    assert all(8.0 <= d <= 12.0 for d in delays)
    assert len({round(d, 6) for d in delays}) > 100  # really spread


def test_jitter_never_exceeds_max_seconds() -> None:
    policy = RetryPolicy(base_seconds=64.0, jitter=0.5, max_seconds=64.0)
    assert policy.delay_for(3, rng=Fixed(0.999)) == 64.0


def test_retry_after_seconds_wins_and_is_capped() -> None:
    policy = RetryPolicy(base_seconds=2.0, retry_after_cap=120.0)
    assert policy.delay_for(1, "30", rng=Fixed(0.0)) == 30.0
    assert policy.delay_for(3, "0") == 0.0  # shorter than the backoff: the server knows best
    assert policy.delay_for(1, "3600") == 120.0
    assert policy.delay_for(1, 5.5) == 5.5
    # Garbage falls back to the exponential delay.
    assert policy.delay_for(1, "soon", rng=Fixed(0.5)) == pytest.approx(2.0)


def test_retry_after_http_date() -> None:
    policy = RetryPolicy(retry_after_cap=600.0)
    header = format_datetime(NOW + timedelta(seconds=90), usegmt=True)
    assert policy.delay_for(1, header, now=NOW) == pytest.approx(90.0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("1.5", 1.5),
        ("0", 0.0),
        ("Sat, 01 Mar 2025 12:01:00 GMT", 60.0),
        ("Saturday, 01-Mar-25 12:01:00 GMT", 60.0),  # obsolete RFC 850 form
        ("Sat Mar  1 12:00:30 2025", 30.0),  # asctime form
        ("Sat, 01 Mar 2025 11:00:00 GMT", 0.0),  # in the past: retry now
        (None, None),
        ("", None),
        ("-5", None),
        ("+5", None),
        ("1e3", None),
        ("nan", None),
        ("inf", None),
        ("tomorrow", None),
        ("Sat, 99 Foo 2025 99:99:99 GMT", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    result = parse_retry_after(value, NOW)
    if expected is None:
        assert result is None
    else:
        assert result == pytest.approx(expected)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"base_seconds": -1},
        {"multiplier": 0.5},
        {"jitter": 1.0},
        {"jitter": -0.1},
        {"max_seconds": float("inf")},
        {"retry_after_cap": float("nan")},
    ],
)
def test_policy_validation(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)


def test_attempts_start_at_one() -> None:
    with pytest.raises(ValueError):
        RetryPolicy().delay_for(0)
    assert RetryPolicy(max_attempts=3).has_attempts_left(2)
    assert not RetryPolicy(max_attempts=3).has_attempts_left(3)


class Throttled(Exception):
    def __init__(self, retry_after: str | None):
        super().__init__("429")
        self.retry_after = retry_after


class FakeResponse:
    headers = {"Retry-After": "11"}


class WithResponse(Exception):
    response = FakeResponse()


def test_retry_after_of_exceptions() -> None:
    assert retry_after_of(Throttled("3")) == "3"
    assert retry_after_of(WithResponse()) == "11"
    assert retry_after_of(ValueError()) is None
    assert retry_after_of(None) is None


def test_tenacity_retrying_uses_policy_and_retry_after() -> None:
    sleeps: list[float] = []
    failures = iter([Throttled("9"), Throttled(None), Throttled(None)])
    calls = 0

    def flaky() -> str:
        nonlocal calls
        calls += 1
        error = next(failures, None)
        if error is not None and calls < 4:
            raise error
        return "ok"

    policy = RetryPolicy(max_attempts=4, base_seconds=1.0, jitter=0.0)
    retrying = retrying_from_policy(policy, retry=lambda e: isinstance(e, Throttled), sleep=sleeps.append)
    assert retrying(flaky) == "ok"
    assert calls == 4
    assert sleeps == [9.0, 2.0, 4.0]


def test_tenacity_gives_up_and_reraises_original() -> None:
    sleeps: list[float] = []
    policy = RetryPolicy(max_attempts=2, base_seconds=1.0, jitter=0.0)
    retrying = retrying_from_policy(policy, retry=lambda e: isinstance(e, Throttled), sleep=sleeps.append)

    def always() -> None:
        raise Throttled(None)

    with pytest.raises(Throttled):
        retrying(always)
    assert sleeps == [1.0]

    def permanent() -> None:
        raise KeyError("nope")

    sleeps.clear()
    with pytest.raises(KeyError):
        retrying(permanent)
    assert sleeps == []


def test_wait_from_policy_is_a_plain_tenacity_wait() -> None:
    sleeps: list[float] = []
    attempts = 0

    @tenacity.retry(
        wait=wait_from_policy(RetryPolicy(base_seconds=0.5, jitter=0.0)),
        stop=tenacity.stop_after_attempt(3),
        sleep=sleeps.append,
        reraise=True,
    )
    def twice() -> int:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise RuntimeError("again")
        return attempts

    assert twice() == 3
    assert sleeps == [0.5, 1.0]

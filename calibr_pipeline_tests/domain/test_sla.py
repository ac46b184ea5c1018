from datetime import datetime, timedelta, timezone
from decimal import Decimal

from calibr_pipeline.domain.sla import Probe, uptime

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)


def probes(pattern: str, step_minutes: int = 5):
    return [Probe(T0 + timedelta(minutes=i * step_minutes), c == "1") for i, c in enumerate(pattern)]


def test_no_probes_is_no_verdict():
    result = uptime([])
    assert (result.uptime_pct, result.met, result.probes) == (None, None, 0)


def test_uptime_rounds_down_so_a_miss_never_reads_as_met():
    result = uptime(probes("1" * 9989 + "0" * 11))  # 99.89 %
    assert result.uptime_pct == Decimal("99.890") and result.met is False
    result = uptime(probes("1" * 999 + "0"))  # exactly 99.9 %
    assert result.uptime_pct == Decimal("99.900") and result.met is True


def test_longest_outage_spans_a_failure_streak_until_recovery():
    result = uptime(probes("1100011001"))  # down at 10, 15, 20 min, up at 25 (15 min); down 35-40, up at 45
    assert result.longest_outage == timedelta(minutes=15)
    assert uptime(probes("11000")).longest_outage == timedelta(minutes=10)  # not recovered yet
    assert uptime(list(reversed(probes("1100011001")))).longest_outage == timedelta(minutes=15)  # order-free

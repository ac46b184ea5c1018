from decimal import Decimal

import pytest

from calibr_pipeline.domain.data_quality import (
    Verdict,
    consecutive_failure_verdict,
    consecutive_failures,
    evaluate_error_rate,
)


@pytest.mark.parametrize(
    "failed, total, verdict",
    [(0, 100, Verdict.PASS), (9, 1000, Verdict.PASS), (1, 100, Verdict.WARN), (2, 100, Verdict.WARN), (21, 1000, Verdict.ERROR), (3, 100, Verdict.ERROR)],
)
def test_error_rate_thresholds(failed, total, verdict):
    classes = ["timeout"] * failed + [None] * (total - failed)
    result = evaluate_error_rate(classes)
    assert result.verdict == verdict
    assert result.rate == Decimal(failed) / Decimal(total)
    assert result.failed == failed and result.total == total


def test_error_rate_counts_by_class_and_handles_empty():
    result = evaluate_error_rate(["timeout", None, "http_5xx", "timeout"])
    assert result.by_error_class == {"http_5xx": 1, "timeout": 2}
    assert evaluate_error_rate([]).verdict == Verdict.PASS


def test_consecutive_failures_stop_at_first_success():
    assert consecutive_failures(["error", "error", "ok", "error"]) == 2
    assert consecutive_failures(["ok", "error"]) == 0
    assert consecutive_failures(["error"] * 5) == 5


@pytest.mark.parametrize("count, verdict", [(0, Verdict.PASS), (2, Verdict.PASS), (3, Verdict.WARN), (4, Verdict.WARN), (5, Verdict.ERROR), (9, Verdict.ERROR)])
def test_consecutive_failure_verdicts(count, verdict):
    assert consecutive_failure_verdict(count) == verdict

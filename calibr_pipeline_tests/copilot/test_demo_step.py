"""The demo's copilot step: one question and one proposal per tenant; failures reported, not raised."""

from __future__ import annotations

from calibr_pipeline.demo import run_demo_copilot


def test_demo_step_asks_and_proposes(copilot_world):
    out = run_demo_copilot(copilot_world["url"], "acme-outdoor")
    assert "-> ok: TENT-1 (index 1.0811)" in out
    assert "(saved DISABLED), preview run" in out and "calibr runs status" in out


def test_demo_step_failure_is_reported_not_fatal(copilot_world):
    assert "FAILED (NotFoundError" in run_demo_copilot(copilot_world["url"], "no-such-project")

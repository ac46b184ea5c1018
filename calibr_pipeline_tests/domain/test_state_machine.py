from __future__ import annotations

import itertools

import pytest

from calibr_pipeline.domain.errors import CalibrError
from calibr_pipeline.domain.state_machine import (
    RUN_TRANSITIONS,
    TARGET_TRANSITIONS,
    InvalidTransition,
    RunState,
    TargetState,
    after_failed_attempt,
    check_run_transition,
    check_target_transition,
    mermaid_diagram,
    run_outcome,
)

EXPECTED_RUN = {
    ("QUEUED", "APPLYING"),
    ("APPLYING", "APPLIED"),
    ("APPLYING", "PARTIAL"),
    ("APPLYING", "FAILED"),
    ("PARTIAL", "APPLYING"),
    ("FAILED", "APPLYING"),
}
EXPECTED_TARGET = {
    ("PENDING", "APPLYING"),
    ("APPLYING", "APPLIED"),
    ("APPLYING", "FAILED"),
    ("APPLYING", "PENDING"),
    ("FAILED", "APPLYING"),
    ("FAILED", "APPLIED"),
    *((source, skipped) for source in ("PENDING", "APPLYING") for skipped in ("SKIPPED_STALE", "SKIPPED_GUARDRAIL", "SKIPPED_SUPERSEDED")),
}


def test_enum_values_are_the_upper_case_names():
    assert [s.value for s in RunState] == ["QUEUED", "APPLYING", "APPLIED", "PARTIAL", "FAILED"]
    assert [s.value for s in TargetState] == ["PENDING", "APPLYING", "APPLIED", "FAILED", "SKIPPED_STALE", "SKIPPED_GUARDRAIL", "SKIPPED_SUPERSEDED"]
    assert all(s.name == s.value for s in [*RunState, *TargetState])


def test_tables_are_exactly_the_documented_lifecycles():
    assert {(a.value, b.value) for a, targets in RUN_TRANSITIONS.items() for b in targets} == EXPECTED_RUN
    assert {(a.value, b.value) for a, targets in TARGET_TRANSITIONS.items() for b in targets} == EXPECTED_TARGET
    assert set(RUN_TRANSITIONS) == set(RunState)
    assert set(TARGET_TRANSITIONS) == set(TargetState)


@pytest.mark.parametrize("source, target", sorted(EXPECTED_RUN))
def test_allowed_run_transitions_pass(source, target):
    assert check_run_transition(RunState(source), RunState(target)) is RunState(target)
    assert check_run_transition(source, target) is RunState(target)  # plain strings from the warehouse


@pytest.mark.parametrize(
    "source, target", sorted(set(itertools.product(RunState, RunState)) - {tuple(map(RunState, p)) for p in EXPECTED_RUN})
)
def test_every_other_run_transition_raises(source, target):
    with pytest.raises(InvalidTransition) as info:
        check_run_transition(source, target)
    error = info.value
    assert isinstance(error, CalibrError)
    assert (error.entity, error.from_state, error.to_state) == ("RuleRun", source.value, target.value)
    assert str(error).startswith(f"RuleRun cannot go from {source.value} to {target.value}")


@pytest.mark.parametrize("source, target", sorted(EXPECTED_TARGET))
def test_allowed_target_transitions_pass(source, target):
    assert check_target_transition(TargetState(source), TargetState(target)) is TargetState(target)


@pytest.mark.parametrize(
    "source, target",
    sorted(set(itertools.product(TargetState, TargetState)) - {tuple(map(TargetState, p)) for p in EXPECTED_TARGET}),
)
def test_every_other_target_transition_raises(source, target):
    with pytest.raises(InvalidTransition) as info:
        check_target_transition(source, target)
    error = info.value
    assert (error.entity, error.from_state, error.to_state) == ("RuleTarget", source.value, target.value)
    assert f"RuleTarget cannot go from {source.value} to {target.value}" in str(error)


def test_error_message_lists_what_is_allowed():
    with pytest.raises(InvalidTransition, match="from QUEUED it may go to APPLYING"):
        check_run_transition("QUEUED", "APPLIED")
    with pytest.raises(InvalidTransition, match=r"from APPLIED it may go to nothing \(final state\)"):
        check_target_transition("APPLIED", "APPLYING")


def test_unknown_states_raise_invalid_transition():
    with pytest.raises(InvalidTransition, match="RuleRun cannot go from QUEUED to DONE: unknown state"):
        check_run_transition("QUEUED", "DONE")
    with pytest.raises(InvalidTransition, match="RuleTarget cannot go from applying to APPLIED: unknown state"):
        check_target_transition("applying", "APPLIED")


def test_retry_to_pending_is_refused_once_the_budget_is_spent():
    assert check_target_transition("APPLYING", "PENDING", attempts=2, max_attempts=3) is TargetState.PENDING
    with pytest.raises(InvalidTransition, match=r"retry budget spent \(3 of 3 attempts made\)"):
        check_target_transition("APPLYING", "PENDING", attempts=3, max_attempts=3)
    # The budget only governs the automatic retry; failing for good is always allowed.
    assert check_target_transition("APPLYING", "FAILED", attempts=3, max_attempts=3) is TargetState.FAILED


@pytest.mark.parametrize(
    "attempts, max_attempts, expected",
    [
        (0, 3, (TargetState.PENDING, 1)),
        (1, 3, (TargetState.PENDING, 2)),
        (2, 3, (TargetState.FAILED, 3)),
        (0, 1, (TargetState.FAILED, 1)),
        (5, 3, (TargetState.FAILED, 6)),  # over budget already (e.g. after a manual retry)
    ],
)
def test_after_failed_attempt(attempts, max_attempts, expected):
    assert after_failed_attempt(attempts, max_attempts) == expected


def test_after_failed_attempt_rejects_nonsense_counts():
    with pytest.raises(ValueError):
        after_failed_attempt(-1, 3)
    with pytest.raises(ValueError):
        after_failed_attempt(0, 0)


def test_a_target_retries_until_its_budget_is_spent_then_fails():
    state, attempts, path = TargetState.PENDING, 0, []
    while state is not TargetState.FAILED:
        state = check_target_transition(state, TargetState.APPLYING)
        state, attempts = after_failed_attempt(attempts, max_attempts=3)
        path.append(state)
    assert path == [TargetState.PENDING, TargetState.PENDING, TargetState.FAILED]
    assert attempts == 3
    assert check_target_transition(state, TargetState.APPLYING) is TargetState.APPLYING  # manual retry


@pytest.mark.parametrize(
    "states, expected",
    [
        ([], RunState.APPLIED),
        (["APPLIED"], RunState.APPLIED),
        (["APPLIED", "APPLIED"], RunState.APPLIED),
        (["FAILED"], RunState.FAILED),
        (["FAILED", "FAILED"], RunState.FAILED),
        (["APPLIED", "FAILED"], RunState.PARTIAL),
        (["FAILED", "APPLIED", "APPLIED"], RunState.PARTIAL),
        # skips are decisions, not failures
        (["SKIPPED_STALE"], RunState.APPLIED),
        (["APPLIED", "SKIPPED_GUARDRAIL", "SKIPPED_SUPERSEDED"], RunState.APPLIED),
        (["FAILED", "SKIPPED_STALE"], RunState.FAILED),
        (["FAILED", "SKIPPED_STALE", "APPLIED"], RunState.PARTIAL),
    ],
)
def test_run_outcome(states, expected):
    assert run_outcome(TargetState(s) for s in states) is expected
    check_run_transition(RunState.APPLYING, expected)  # every outcome is a legal end of APPLYING


@pytest.mark.parametrize("unfinished", ["PENDING", "APPLYING"])
def test_run_outcome_refuses_unfinished_targets(unfinished):
    with pytest.raises(ValueError, match=f"unfinished targets \\({unfinished}\\)"):
        run_outcome([TargetState.APPLIED, TargetState(unfinished)])


def test_mermaid_diagram_draws_every_transition_from_the_tables():
    diagram = mermaid_diagram()
    lines = [line.strip() for line in diagram.splitlines()]
    assert lines[0] == "stateDiagram-v2"
    assert "state RuleRun {" in lines and "state RuleTarget {" in lines
    assert "[*] --> run_QUEUED" in lines and "[*] --> target_PENDING" in lines
    assert "run_APPLIED --> [*]" in lines and "target_APPLIED --> [*]" in lines
    edges = {line.split(" : ")[0] for line in lines if "-->" in line and "[*]" not in line}
    assert edges == {f"run_{a} --> run_{b}" for a, b in EXPECTED_RUN} | {
        f"target_{a} --> target_{b}" for a, b in EXPECTED_TARGET
    }
    assert "target_APPLYING --> target_PENDING : retry: attempts < max_attempts" in lines
    assert "run_PARTIAL --> run_APPLYING : retry failed targets" in lines


def test_docs_diagram_is_generated_from_the_transition_tables():
    from pathlib import Path

    from calibr_pipeline.domain.state_machine import mermaid_diagram

    doc = (Path(__file__).resolve().parents[2] / "docs" / "state-machine.md").read_text()
    assert mermaid_diagram().strip() in doc, "regenerate the diagram in docs/state-machine.md"

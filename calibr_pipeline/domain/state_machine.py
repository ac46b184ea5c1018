"""Lifecycles of a rule run and of each of its targets, enforced in this one module.

A *rule run* applies one pricing rule's proposals; each proposal it writes to the shop is a
*rule target*. Every status change of either goes through :func:`check_run_transition` or
:func:`check_target_transition`, so the tables below are the whole truth: the warehouse, the
Dagster ops and the docs (:func:`mermaid_diagram`) all read them instead of restating them.

RuleRun::

    QUEUED -> APPLYING -> APPLIED | PARTIAL | FAILED
    PARTIAL -> APPLYING     (retry the failed targets)
    FAILED  -> APPLYING     (retry all targets)

RuleTarget::

    PENDING -> APPLYING -> APPLIED | FAILED
    APPLYING -> PENDING     (automatic retry, only while attempts < max_attempts)
    FAILED   -> APPLYING    (manual retry, DLQ drain)
    FAILED   -> APPLIED     (a lost answer: reconciliation read the target price back)
    PENDING | APPLYING -> SKIPPED_STALE       (the shop price is no longer the preview's from_price)
    PENDING | APPLYING -> SKIPPED_GUARDRAIL   (the price breaks a guardrail on write-time data)
    PENDING | APPLYING -> SKIPPED_SUPERSEDED  (the run was reverted, or a newer run owns the variant)

The three SKIPPED states are terminal and audited (``price.skipped`` in ``event_log``): the
write-time checks refused to put that price live, and nothing will retry it.

A run in APPLYING has one writer: the process holding its lease (``lease_owner`` until
``lease_expires_at``). The lease is not a state: a run whose lease expired is still
APPLYING, and the next ``apply`` resumes it.

``attempts`` counts write attempts already made, failed ones included, so a target that
failed its last allowed attempt is FAILED with ``attempts == max_attempts``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum

from calibr_pipeline.domain.errors import CalibrError


class RunState(StrEnum):
    QUEUED = "QUEUED"
    APPLYING = "APPLYING"
    APPLIED = "APPLIED"
    PARTIAL = "PARTIAL"
    FAILED = "FAILED"


class TargetState(StrEnum):
    PENDING = "PENDING"
    APPLYING = "APPLYING"
    APPLIED = "APPLIED"
    FAILED = "FAILED"
    SKIPPED_STALE = "SKIPPED_STALE"
    SKIPPED_GUARDRAIL = "SKIPPED_GUARDRAIL"
    SKIPPED_SUPERSEDED = "SKIPPED_SUPERSEDED"


# Write-time refusals: final, audited, never retried.
SKIPPED_STATES = frozenset({TargetState.SKIPPED_STALE, TargetState.SKIPPED_GUARDRAIL, TargetState.SKIPPED_SUPERSEDED})
# States whose target is done for this apply (the run's outcome can be decided).
TERMINAL_TARGET_STATES = frozenset({TargetState.APPLIED, TargetState.FAILED}) | SKIPPED_STATES


RUN_INITIAL = RunState.QUEUED
TARGET_INITIAL = TargetState.PENDING

RUN_TRANSITIONS: Mapping[RunState, frozenset[RunState]] = {
    RunState.QUEUED: frozenset({RunState.APPLYING}),
    RunState.APPLYING: frozenset({RunState.APPLIED, RunState.PARTIAL, RunState.FAILED}),
    RunState.APPLIED: frozenset(),
    RunState.PARTIAL: frozenset({RunState.APPLYING}),
    RunState.FAILED: frozenset({RunState.APPLYING}),
}

TARGET_TRANSITIONS: Mapping[TargetState, frozenset[TargetState]] = {
    TargetState.PENDING: frozenset({TargetState.APPLYING}) | SKIPPED_STATES,
    TargetState.APPLYING: frozenset({TargetState.APPLIED, TargetState.FAILED, TargetState.PENDING}) | SKIPPED_STATES,
    TargetState.APPLIED: frozenset(),
    TargetState.FAILED: frozenset({TargetState.APPLYING, TargetState.APPLIED}),
    TargetState.SKIPPED_STALE: frozenset(),
    TargetState.SKIPPED_GUARDRAIL: frozenset(),
    TargetState.SKIPPED_SUPERSEDED: frozenset(),
}

# Edge labels for the diagram only; the tables above decide what is allowed.
_RUN_LABELS = {
    (RunState.PARTIAL, RunState.APPLYING): "retry failed targets",
    (RunState.FAILED, RunState.APPLYING): "retry all targets",
}
_TARGET_LABELS = {
    (TargetState.APPLYING, TargetState.PENDING): "retry: attempts < max_attempts",
    (TargetState.FAILED, TargetState.APPLYING): "manual retry / DLQ drain",
    (TargetState.FAILED, TargetState.APPLIED): "read back at target price",
    (TargetState.APPLYING, TargetState.SKIPPED_STALE): "shop price changed",
    (TargetState.APPLYING, TargetState.SKIPPED_GUARDRAIL): "write-time guardrail",
    (TargetState.APPLYING, TargetState.SKIPPED_SUPERSEDED): "reverted / superseded",
}


class InvalidTransition(CalibrError):
    """A status change that the lifecycle does not allow."""

    def __init__(self, entity: str, from_state: str, to_state: str, detail: str | None = None):
        self.entity = entity
        self.from_state = str(from_state)
        self.to_state = str(to_state)
        message = f"{entity} cannot go from {self.from_state} to {self.to_state}"
        super().__init__(f"{message}: {detail}" if detail else message)


def _allowed_text(targets: frozenset) -> str:
    return ", ".join(sorted(targets)) or "nothing (final state)"


def check_run_transition(from_state: RunState | str, to_state: RunState | str) -> RunState:
    """Return ``to_state`` as a :class:`RunState`, or raise :class:`InvalidTransition`."""
    try:
        source, target = RunState(from_state), RunState(to_state)
    except ValueError:
        raise InvalidTransition("RuleRun", from_state, to_state, "unknown state") from None
    allowed = RUN_TRANSITIONS[source]
    if target not in allowed:
        raise InvalidTransition("RuleRun", source, target, f"from {source} it may go to {_allowed_text(allowed)}")
    return target


def check_target_transition(
    from_state: TargetState | str,
    to_state: TargetState | str,
    *,
    attempts: int | None = None,
    max_attempts: int | None = None,
) -> TargetState:
    """Return ``to_state`` as a :class:`TargetState`, or raise :class:`InvalidTransition`.

    ``APPLYING -> PENDING`` is the automatic retry; when ``attempts`` (already made, the
    failed one included) and ``max_attempts`` are given, it is refused once the budget is spent.
    """
    try:
        source, target = TargetState(from_state), TargetState(to_state)
    except ValueError:
        raise InvalidTransition("RuleTarget", from_state, to_state, "unknown state") from None
    allowed = TARGET_TRANSITIONS[source]
    if target not in allowed:
        raise InvalidTransition("RuleTarget", source, target, f"from {source} it may go to {_allowed_text(allowed)}")
    if (
        source is TargetState.APPLYING
        and target is TargetState.PENDING
        and attempts is not None
        and max_attempts is not None
        and attempts >= max_attempts
    ):
        raise InvalidTransition(
            "RuleTarget", source, target, f"retry budget spent ({attempts} of {max_attempts} attempts made)"
        )
    return target


def after_failed_attempt(attempts: int, max_attempts: int) -> tuple[TargetState, int]:
    """Where an APPLYING target goes when the write attempt fails.

    ``attempts`` is the count before this attempt. The returned count includes it: PENDING
    (queued for another try) while that count is below ``max_attempts``, otherwise FAILED.
    """
    if attempts < 0:
        raise ValueError(f"attempts must be >= 0, got {attempts}")
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
    made = attempts + 1
    state = TargetState.PENDING if made < max_attempts else TargetState.FAILED
    return check_target_transition(TargetState.APPLYING, state, attempts=made, max_attempts=max_attempts), made


def run_outcome(target_states: Iterable[TargetState | str]) -> RunState:
    """The state an APPLYING run ends in once every target is terminal.

    Skipped targets are decisions, not failures: a run whose targets were all applied or
    skipped is APPLIED (the skips are counted and audited). A run with no targets is
    APPLIED: nothing was asked of the shop, so nothing failed. Otherwise FAILED when no
    target was applied, PARTIAL when some were.
    """
    states = [TargetState(s) for s in target_states]
    unfinished = sorted({s for s in states if s not in TERMINAL_TARGET_STATES})
    if unfinished:
        raise ValueError(f"run has unfinished targets ({', '.join(unfinished)}); its outcome is not known yet")
    failed = sum(1 for s in states if s is TargetState.FAILED)
    applied = sum(1 for s in states if s is TargetState.APPLIED)
    if failed == 0:
        return RunState.APPLIED
    if applied == 0:
        return RunState.FAILED
    return RunState.PARTIAL


def _mermaid_block(name: str, prefix: str, initial: StrEnum, table: Mapping, labels: Mapping) -> list[str]:
    lines = [f"    state {name} {{"]
    for state in table:
        lines.append(f'        state "{state}" as {prefix}_{state}')
    lines.append(f"        [*] --> {prefix}_{initial}")
    for source, targets in table.items():
        for target in sorted(targets):
            label = labels.get((source, target))
            edge = f"        {prefix}_{source} --> {prefix}_{target}"
            lines.append(f"{edge} : {label}" if label else edge)
    for source, targets in table.items():
        if not targets:
            lines.append(f"        {prefix}_{source} --> [*]")
    lines.append("    }")
    return lines


def mermaid_diagram() -> str:
    """Both lifecycles as one Mermaid ``stateDiagram-v2``, drawn from the transition tables.

    State ids are prefixed (``run_``/``target_``) because both machines have APPLYING,
    APPLIED and FAILED and Mermaid ids are global to the diagram.
    """
    lines = ["stateDiagram-v2"]
    lines += _mermaid_block("RuleRun", "run", RUN_INITIAL, RUN_TRANSITIONS, _RUN_LABELS)
    lines += _mermaid_block("RuleTarget", "target", TARGET_INITIAL, TARGET_TRANSITIONS, _TARGET_LABELS)
    return "\n".join(lines) + "\n"

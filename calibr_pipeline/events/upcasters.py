"""Upcasters: turn a stored event of version N into version N+1 when it is read.

Stored rows are never rewritten: an old event keeps the shape it was written with and its
``schema_version``; readers (sensors, audit queries, restores) see the current shape. One
function per step, registered with ``@upcaster(event_type, from_version)``; the registry
tests require a step for every version below the current one.
"""

from __future__ import annotations

from typing import Any, Callable

from calibr_pipeline.events.registry import EventRegistryError

Upcaster = Callable[[dict], dict]
UPCASTERS: dict[tuple[str, int], Upcaster] = {}


def upcaster(event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    def register(fn: Upcaster) -> Upcaster:
        UPCASTERS[(event_type, from_version)] = fn
        return fn

    return register


def upcast(event_type: str, version: int, target: int, payload: Any) -> Any:
    while version < target:
        step = UPCASTERS.get((event_type, version))
        if step is None:
            raise EventRegistryError(f"no upcaster from {event_type} v{version} to v{version + 1}")
        payload = step(dict(payload))
        version += 1
    return payload


@upcaster("automation.run.completed", 1)
def run_completed_v1_to_v2(payload: dict) -> dict:
    """v1 ``{run_id, state, applied, failed}`` -> v2 ``{run_id, outcome, counts{applied, failed, total}}``.

    v1 did not record ``write_requests``; it stays absent rather than being invented.
    """
    applied, failed = payload["applied"], payload["failed"]
    return {"run_id": payload["run_id"], "outcome": payload["state"], "counts": {"applied": applied, "failed": failed, "total": applied + failed}}

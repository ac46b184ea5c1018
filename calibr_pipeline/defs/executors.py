"""Which executor runs the pipeline's steps: ``CALIBR_EXECUTOR`` (docs/deployment.md).

* unset (the embedded deployment and the tests): each job keeps its own executor; the
  pricing jobs run in-process (their steps are short and sequential), the others use
  Dagster's default (one process per step, in-process under ``execute_in_process``);
* ``in_process`` / ``multiprocess``: every asset job on that executor, on this machine;
* ``celery``: every asset job's steps go to Celery workers through dagster-celery's
  ``celery_executor`` (broker and result backend ``CALIBR_CELERY_BROKER_URL`` /
  ``CALIBR_CELERY_BACKEND_URL``; dagster-celery's queue ``dagster``). Each step runs in a worker
  that reloads the job from its code pointer and reaches the run through the Dagster
  instance, so the instance must be one every worker can reach (dagster-postgres,
  ``deploy/dagster.celery.yaml``) and so must the warehouse (PostgreSQL). Assets hand
  nothing to each other through an IO manager (they persist to warehouse tables and return
  ``MaterializeResult``), so workers need no shared file system.

The op jobs (synthetic probes, copilot probe, event archive) are maintenance, not the
pipeline: they keep their in-process executor whatever the setting.
"""

from __future__ import annotations

import os
import warnings
from typing import Literal

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition
from dagster._core.execution.retries import get_retries_config
from dagster_shared.record import copy

from calibr_pipeline import settings

ExecutorKind = Literal["in_process", "multiprocess", "celery"]
EXECUTOR_KINDS: tuple[str, ...] = ("in_process", "multiprocess", "celery")
EXECUTOR_ENV = "CALIBR_EXECUTOR"
CELERY_EXECUTOR_NAME = "calibr_celery"

# Celery settings on top of dagster-celery's defaults (prefetch 1, its queue and priority).
# A step is acknowledged when it has finished, and a worker process lost mid-step hands it
# back to the queue: another worker runs the step again instead of the run waiting forever
# for a result that will never come. Running a step twice is what the pipeline is built
# for: a partition's rows are replaced, and the write path's claim, lease and idempotency
# keys keep a second apply from writing a price twice (docs/retry-logic.md). The visibility
# timeout bounds how long Redis waits for a whole worker machine that vanished; it must be
# longer than any step (a sync apply estimated over 15 min goes through a bulk operation
# instead, docs/retry-logic.md §6.2b), or a slow step would be handed out twice.
VISIBILITY_TIMEOUT_S = 2 * 3600
CELERY_CONFIG_SOURCE = {
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    "worker_prefetch_multiplier": 1,
    "broker_connection_retry_on_startup": True,
    "broker_transport_options": {
        # dagster-celery's defaults (publish retries), plus the visibility timeout.
        "max_retries": 3, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5,
        "visibility_timeout": VISIBILITY_TIMEOUT_S,
    },
    "result_expires": 24 * 3600,
}


def configured_kind(environ=None) -> ExecutorKind | None:
    """``CALIBR_EXECUTOR`` (None when unset). Read on its own, so that importing the
    definitions does not fail on an unrelated bad variable (entry points validate them all)."""
    env = os.environ if environ is None else environ
    raw = (env.get(EXECUTOR_ENV) or "").strip()
    if not raw:
        return None
    if raw not in EXECUTOR_KINDS:
        raise settings.InvalidEnvironment(f"{EXECUTOR_ENV} must be one of {', '.join(EXECUTOR_KINDS)}, got {raw!r}")
    return raw  # type: ignore[return-value]


def celery_app_args(environ=None) -> dict:
    """Broker, backend, modules and Celery settings, shared by the executor (which sends the
    steps) and the workers (``calibr_pipeline.celery_worker``): they must agree."""
    loaded = settings.load_settings(environ)
    if loaded.CELERY_BROKER_URL is None:
        raise settings.InvalidEnvironment(
            "the celery executor needs CALIBR_CELERY_BROKER_URL (e.g. redis://127.0.0.1:6379/0)"
        )
    broker = loaded.CELERY_BROKER_URL.get_secret_value()
    backend = loaded.CELERY_BACKEND_URL.get_secret_value() if loaded.CELERY_BACKEND_URL else broker
    return {
        "broker": broker,
        "backend": backend,
        # Workers import the definitions at start, not on their first step.
        "include": ["calibr_pipeline.definitions"],
        "config_source": dict(CELERY_CONFIG_SOURCE),
    }


def _celery_executor() -> dg.ExecutorDefinition:
    from dagster_celery import celery_executor

    def from_environment(config: dict) -> dict:
        # Resolved when a run starts, in the process that orchestrates it: the broker URL
        # (it may hold a password) never enters the run's stored config. `retries` stays
        # open to run config.
        return celery_app_args() | {"retries": config["retries"]}

    return celery_executor.configured(
        from_environment,
        name=CELERY_EXECUTOR_NAME,
        config_schema={"retries": get_retries_config()},
    )


def executor_for(kind: ExecutorKind) -> dg.ExecutorDefinition:
    if kind == "in_process":
        return dg.in_process_executor
    if kind == "multiprocess":
        return dg.multiprocess_executor
    if kind == "celery":
        return _celery_executor()
    raise ValueError(f"unknown executor {kind!r}: one of {', '.join(EXECUTOR_KINDS)}")


def _job_objects(definition, attribute: str) -> list:
    try:
        value = getattr(definition, attribute)
    except dg.DagsterInvalidDefinitionError:  # targets its job by name only
        return []
    return list(value) if attribute == "jobs" else [value]


def with_executor(defs: dg.Definitions, kind: ExecutorKind | None) -> dg.Definitions:
    """``defs`` with every asset job on ``kind``'s executor (``None``: ``defs`` unchanged).

    Schedules and sensors that hold a job object (not only its name) are pointed at the
    new job, or Dagster would see two definitions of one job.
    """
    if kind is None:
        return defs
    executor = executor_for(kind)
    jobs = [copy(job, executor_def=executor) if isinstance(job, UnresolvedAssetJobDefinition) else job for job in defs.jobs]
    by_name = {job.name: job for job in jobs}

    def retarget_schedule(schedule):
        held = _job_objects(schedule, "job")
        if held and isinstance(held[0], UnresolvedAssetJobDefinition):
            return schedule.with_updated_job(by_name[held[0].name])
        return schedule

    def retarget_sensor(sensor):
        held = _job_objects(sensor, "jobs") if sensor.has_jobs else []
        if any(isinstance(job, UnresolvedAssetJobDefinition) for job in held):
            with warnings.catch_warnings():  # the copy passes `owners` on, a beta parameter
                warnings.simplefilter("ignore", dg.BetaWarning)
                return sensor.with_updated_jobs([by_name.get(job.name, job) for job in held])
        return sensor

    return dg.Definitions(
        assets=defs.assets,
        asset_checks=defs.asset_checks,
        jobs=jobs,
        schedules=[retarget_schedule(s) for s in defs.schedules or []],
        sensors=[retarget_sensor(s) for s in defs.sensors or []],
        resources=defs.resources,
        loggers=defs.loggers,
        executor=defs.executor,
        metadata=defs.metadata,
    )

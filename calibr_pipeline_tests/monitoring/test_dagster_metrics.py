"""Dagster instance figures: schedule last success, queued runs, daemon heartbeat age."""

from __future__ import annotations

import time

import dagster as dg
import pytest

from .conftest import scrape

pytestmark = pytest.mark.integration


@dg.op
def _noop() -> None:
    return None


@dg.job
def scheduled_noop():
    _noop()


def _add_run(instance, status, tags=None):
    """A run record in the given status, as the run queue or a failed launch leaves it.

    Queued runs need a code location origin to be created; the status column is what
    the queue count reads, so it is set directly in the run storage.
    """
    from dagster._core.storage.runs.schema import RunsTable

    run = instance.create_run_for_job(scheduled_noop, status=dg.DagsterRunStatus.NOT_STARTED, tags=tags or {})
    with instance.run_storage.connect() as connection:
        connection.execute(RunsTable.update().where(RunsTable.c.run_id == run.run_id).values(status=status.value))


def test_schedule_success_queue_and_heartbeat(sqlite_warehouse_url, dagster_instance, start_server):
    from dagster._daemon.types import DaemonHeartbeat

    server = start_server(sqlite_warehouse_url, instance=dagster_instance)
    m = scrape(server.url)
    assert m.series("calibr_schedule_last_success_timestamp_seconds") == {}  # no run yet: absent, not 0
    assert m.value("calibr_dagster_queued_runs") == 0
    assert "calibr_dagster_daemon_heartbeat_age_seconds" not in m.families  # no heartbeat: absent

    before = time.time()
    instance = dagster_instance
    result = scheduled_noop.execute_in_process(instance=instance, tags={"dagster/schedule_name": "daily_reconciliation"})
    assert result.success
    _add_run(instance, dg.DagsterRunStatus.FAILURE, tags={"dagster/schedule_name": "hourly_dlq_drain"})
    _add_run(instance, dg.DagsterRunStatus.QUEUED)
    _add_run(instance, dg.DagsterRunStatus.QUEUED)
    instance.add_daemon_heartbeat(DaemonHeartbeat(time.time() - 42, "SCHEDULER", "d1", None))
    instance.add_daemon_heartbeat(DaemonHeartbeat(time.time() - 7, "SENSOR", "d1", None))

    m = scrape(server.url)
    last = m.value("calibr_schedule_last_success_timestamp_seconds", schedule="daily_reconciliation")
    assert before - 1 <= last <= time.time() + 1
    assert m.value("calibr_schedule_last_success_timestamp_seconds", schedule="hourly_dlq_drain") is None  # only a failure
    assert m.value("calibr_dagster_queued_runs") == 2
    assert 40 <= m.value("calibr_dagster_daemon_heartbeat_age_seconds") < 60  # the stalest daemon
    assert m.value("calibr_warehouse_up") == 1


def test_a_broken_instance_does_not_break_the_scrape(sqlite_warehouse_url, start_server):
    class Broken:
        def __getattr__(self, name):
            raise RuntimeError("instance storage is gone")

    server = start_server(sqlite_warehouse_url, instance=Broken())
    m = scrape(server.url)
    assert m.value("calibr_warehouse_up") == 1
    assert "calibr_dagster_queued_runs" not in m.families
    import requests

    body = requests.get(f"{server.url}/health/detailed", timeout=5).json()
    assert body["status"] == "degraded" and "instance storage is gone" in body["checks"]["worker_queue"]["reason"]

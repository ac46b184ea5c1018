"""Fairness between tenants in the run queue (issue 12).

Tenant A floods the queue (a 100,000-listing backfill or a storm of sensor runs, all queued
before tenant B's apply). With the instance configuration we ship (dagster.yaml,
deploy/dagster.postgres.yaml and deploy/dagster.celery.yaml: ``calibr/tenant`` at most 2 runs
per tenant), the queued-run daemon starts B's apply in the very next dequeue iteration — the
latency it has on an idle instance (one ``dequeue_interval_seconds``). Without the per-tenant limit the same queue
makes B wait behind A, which is what the last test shows.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from dagster import DagsterRunStatus
from dagster._core.remote_origin import RegisteredCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.test_utils import create_run_for_test, create_test_daemon_workspace_context, instance_for_test
from dagster._core.workspace.load_target import EmptyWorkspaceTarget
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon

from calibr_pipeline.defs.pricing.sensors import SHOP_TAG, TENANT_TAG

ROOT = Path(__file__).resolve().parents[2]
REPOSITORY = RemoteRepositoryOrigin(RegisteredCodeLocationOrigin("calibr_pipeline"), "__repository__")
LAUNCHER = {"module": "dagster._core.test_utils", "class": "MockedRunLauncher"}


def _queue_config(name: str) -> dict:
    document = yaml.safe_load((ROOT / name).read_text())
    if "run_coordinator" in document:
        config = document["run_coordinator"]["config"]
        return {"max_concurrent_runs": config["max_concurrent_runs"], "tag_concurrency_limits": config["tag_concurrency_limits"]}
    return document["run_queue"]


def _started(instance, run) -> bool:
    return instance.get_run_by_id(run.run_id).status != DagsterRunStatus.QUEUED


def _flood_then_apply(queue: dict) -> tuple[bool, int, int]:
    """A queues 12 runs, then B queues its apply; one daemon iteration. Returns
    (B started?, A runs started, max concurrent runs)."""
    overrides = {
        "run_coordinator": {"module": "dagster._core.run_coordinator", "class": "QueuedRunCoordinator", "config": queue},
        "run_launcher": LAUNCHER,
    }
    with instance_for_test(overrides=overrides) as instance:
        a_runs = [
            create_run_for_test(instance, job_name="competitor_monitoring", status=DagsterRunStatus.QUEUED,
                                remote_job_origin=RemoteJobOrigin(REPOSITORY, "competitor_monitoring"),
                                tags={TENANT_TAG: "tenant-1", "dagster/partition": f"listing-{i}"})
            for i in range(12)
        ]
        b_apply = create_run_for_test(instance, job_name="apply_run", status=DagsterRunStatus.QUEUED,
                                      remote_job_origin=RemoteJobOrigin(REPOSITORY, "apply_run"),
                                      tags={TENANT_TAG: "tenant-2", SHOP_TAG: "shop-2"})
        with create_test_daemon_workspace_context(EmptyWorkspaceTarget(), instance) as context:
            list(QueuedRunCoordinatorDaemon(interval_seconds=1).run_iteration(context))
        return _started(instance, b_apply), sum(_started(instance, r) for r in a_runs), queue["max_concurrent_runs"]


@pytest.mark.parametrize("config_file", ["dagster.yaml", "deploy/dagster.postgres.yaml", "deploy/dagster.celery.yaml"])
def test_tenant_b_apply_starts_in_the_next_dequeue_while_tenant_a_floods_the_queue(config_file):
    b_started, a_started, slots = _flood_then_apply(_queue_config(config_file))
    assert b_started, "tenant B's apply waited behind tenant A's queue"
    assert a_started == 2  # A keeps working, within its share
    assert a_started + 1 <= slots


def test_without_the_tenant_limit_tenant_b_waits_behind_tenant_a():
    queue = _queue_config("dagster.yaml")
    queue["tag_concurrency_limits"] = [limit for limit in queue["tag_concurrency_limits"] if limit["key"] != TENANT_TAG]
    b_started, a_started, slots = _flood_then_apply(queue)
    assert not b_started and a_started == slots

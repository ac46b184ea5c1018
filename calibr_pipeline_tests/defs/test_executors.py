"""CALIBR_EXECUTOR: which executor runs the asset jobs' steps (calibr_pipeline/defs/executors.py).

The end-to-end run on Celery workers is integration/test_celery_executor.py (marker celery);
these check the selection, the Celery settings the executor and the workers share, and that
the error messages name the variable without echoing a secret.
"""

from __future__ import annotations

import importlib
import sys

import dagster as dg
import pytest
from dagster._core.definitions.reconstruct import ReconstructableRepository

from calibr_pipeline.definitions import build_definitions
from calibr_pipeline.defs.executors import CELERY_EXECUTOR_NAME, celery_app_args, configured_kind
from calibr_pipeline.settings import InvalidEnvironment, load_settings

ASSET_JOBS = ("catalog_sync", "competitor_monitoring", "competitor_listing_scrape", "preview_rule", "apply_run", "revert_run",
              "reconcile_run", "retry_failed", "order_sync", "analytics_models")
OP_JOBS = ("synthetic_probes", "copilot_probe", "archive_events_job")
BROKER = "redis://:s3cret-pw@127.0.0.1:6390/0"


def _executors(defs: dg.Definitions) -> dict[str, str]:
    repository = defs.get_repository_def()  # fails on two definitions of one job
    return {job: repository.get_job(job).executor_def.name for job in ASSET_JOBS + OP_JOBS}


def test_unset_keeps_each_jobs_own_executor(monkeypatch):
    monkeypatch.delenv("CALIBR_EXECUTOR", raising=False)
    executors = _executors(build_definitions())
    assert {executors[j] for j in ("preview_rule", "apply_run", "revert_run", "reconcile_run", "retry_failed")} == {"in_process"}
    assert executors["competitor_monitoring"] == executors["catalog_sync"] == "multi_or_in_process_executor"


@pytest.mark.parametrize("kind, name", [("in_process", "in_process"), ("multiprocess", "multiprocess"), ("celery", CELERY_EXECUTOR_NAME)])
def test_one_setting_puts_every_asset_job_on_one_executor(monkeypatch, kind, name):
    monkeypatch.setenv("CALIBR_CELERY_BROKER_URL", BROKER)
    monkeypatch.setenv("CALIBR_EXECUTOR", kind)
    defs = build_definitions()
    executors = _executors(defs)
    assert {executors[j] for j in ASSET_JOBS} == {name}
    unchanged = _executors(build_definitions(executor="in_process"))
    assert {j: executors[j] for j in OP_JOBS} == {j: unchanged[j] for j in OP_JOBS}  # maintenance jobs keep theirs
    # Schedules and sensors launch the retargeted jobs, not stale copies.
    repository = defs.get_repository_def()
    assert repository.get_job(repository.get_schedule_def("daily_competitor_monitoring").job_name).executor_def.name == name
    assert {repository.get_job(j.name).executor_def.name for j in repository.get_sensor_def("rules_apply_sensor").jobs} == {name}


def test_the_code_pointer_workers_load_builds_the_celery_flavour(monkeypatch):
    monkeypatch.setenv("CALIBR_CELERY_BROKER_URL", BROKER)
    monkeypatch.setenv("CALIBR_EXECUTOR", "celery")
    job = ReconstructableRepository.for_module("calibr_pipeline.definitions", "definitions_from_environment").get_reconstructable_job("apply_run")
    assert job.get_definition().executor_def.name == CELERY_EXECUTOR_NAME
    assert job.to_dict()  # what a Celery task carries to the worker


def test_a_bad_executor_is_refused_by_name():
    with pytest.raises(InvalidEnvironment, match="CALIBR_EXECUTOR must be one of in_process, multiprocess, celery, got 'dask'"):
        configured_kind({"CALIBR_EXECUTOR": "dask"})
    with pytest.raises(InvalidEnvironment, match="CALIBR_EXECUTOR: Input should be 'in_process', 'multiprocess' or 'celery'"):
        load_settings({"CALIBR_EXECUTOR": "dask"})


def test_celery_needs_a_broker_and_never_echoes_it():
    with pytest.raises(InvalidEnvironment, match="CALIBR_EXECUTOR is celery, so CALIBR_CELERY_BROKER_URL must be set"):
        load_settings({"CALIBR_EXECUTOR": "celery"})
    with pytest.raises(InvalidEnvironment) as error:
        load_settings({"CALIBR_CELERY_BROKER_URL": "http://:s3cret-pw@127.0.0.1/0"})
    assert "CALIBR_CELERY_BROKER_URL: must be a Celery URL" in str(error.value) and "s3cret-pw" not in str(error.value)
    with pytest.raises(InvalidEnvironment, match="needs CALIBR_CELERY_BROKER_URL"):
        celery_app_args({})


def test_the_backend_defaults_to_the_broker_and_a_lost_step_goes_back_to_the_queue():
    args = celery_app_args({"CALIBR_CELERY_BROKER_URL": BROKER})
    assert args["broker"] == args["backend"] == BROKER
    assert args["include"] == ["calibr_pipeline.definitions"]
    source = args["config_source"]
    assert source["task_acks_late"] is True and source["task_reject_on_worker_lost"] is True
    assert source["worker_prefetch_multiplier"] == 1 and source["broker_transport_options"]["visibility_timeout"] == 7200
    backend = "redis://127.0.0.1:6390/1"
    assert celery_app_args({"CALIBR_CELERY_BROKER_URL": BROKER, "CALIBR_CELERY_BACKEND_URL": backend})["backend"] == backend
    assert "s3cret-pw" not in repr(load_settings({"CALIBR_CELERY_BROKER_URL": BROKER}))


def test_the_worker_app_reads_the_same_variables_as_the_executor(monkeypatch):
    backend = "redis://127.0.0.1:6390/1"
    monkeypatch.setenv("CALIBR_CELERY_BROKER_URL", BROKER)
    monkeypatch.setenv("CALIBR_CELERY_BACKEND_URL", backend)
    sys.modules.pop("calibr_pipeline.celery_worker", None)
    try:
        worker = importlib.import_module("calibr_pipeline.celery_worker")
        conf = worker.app.conf
        assert (conf.broker_url, conf.result_backend) == (BROKER, backend)
        assert "execute_plan" in worker.app.tasks
        assert conf.task_default_queue == "dagster" and [q.name for q in conf.task_queues] == ["dagster"]
        assert conf.task_acks_late is True and conf.task_reject_on_worker_lost is True and conf.worker_prefetch_multiplier == 1
        assert conf.broker_transport_options["visibility_timeout"] == 7200
    finally:
        sys.modules.pop("calibr_pipeline.celery_worker", None)


def test_doctor_checks_the_broker_and_that_workers_can_reach_the_state(tmp_path):
    from calibr_pipeline.services.doctor import FAIL, OK, check_distributed

    assert check_distributed(load_settings({}), "sqlite:///x.db") == []  # the embedded default: nothing to check
    celery_on_sqlite = load_settings({"CALIBR_EXECUTOR": "celery", "CALIBR_CELERY_BROKER_URL": BROKER})
    probed = []
    checks = {c.name: c for c in check_distributed(celery_on_sqlite, f"sqlite:///{tmp_path}/w.db",
                                                   probe=lambda url, timeout: probed.append(url) or "Connection refused")}
    assert probed == ["tcp://127.0.0.1:6390"]
    assert checks["celery broker"].status == FAIL and "s3cret-pw" not in checks["celery broker"].detail
    assert checks["celery broker"].detail == "redis://:***@127.0.0.1:6390/0 is unreachable: Connection refused"
    assert checks["celery warehouse"].status == checks["celery instance"].status == FAIL
    on_postgres = load_settings({"CALIBR_EXECUTOR": "celery", "CALIBR_CELERY_BROKER_URL": "redis://127.0.0.1/0",
                                 "CALIBR_DAGSTER_PG_URL": "postgresql+psycopg2://dagster@db:5432/dagster"})
    checks = check_distributed(on_postgres, "postgresql+psycopg2://calibr@db:5432/calibr", probe=lambda url, timeout: None)
    assert [(c.name, c.status, c.detail) for c in checks] == [("celery broker", OK, "redis://127.0.0.1/0 answers")]

"""The Celery app the workers run: ``celery -A calibr_pipeline.celery_worker worker``.

dagster-celery's own ``dagster_celery.app`` reads its broker from a generated
``dagster_celery_config`` module (``dagster-celery worker start -y FILE``); this app reads
the same variables as the executor that sends the steps (``CALIBR_CELERY_BROKER_URL``,
``CALIBR_CELERY_BACKEND_URL``; calibr_pipeline/defs/executors.py), so a worker and the
runs it serves cannot disagree on the broker or the backend. Steps go to dagster-celery's
queue ``dagster`` (a step tag ``dagster-celery/queue`` sends it elsewhere; start workers
with ``-Q`` for that queue).
``deploy/celery-worker.sh`` starts one; docs/deployment.md has the whole distributed path.

A task is one Dagster step: the worker reloads the job from the code pointer it is sent
(``calibr_pipeline.definitions``), opens the run's instance from the instance reference
(dagster-postgres) and executes the step, writing to the warehouse of
``CALIBR_WAREHOUSE_URL``.
"""

from __future__ import annotations

from dagster_celery.executor import CeleryExecutor
from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_task

from calibr_pipeline import settings
from calibr_pipeline.defs.executors import celery_app_args

settings.require_valid_environment()
app = make_app(CeleryExecutor.for_cli(**celery_app_args()).app_args())
execute_plan = create_task(app)

#!/usr/bin/env bash
# Start one Celery worker of the distributed path (docs/deployment.md, "Past one machine").
#
#   CALIBR_CELERY_BROKER_URL=redis://:PASSWORD@redis.internal:6379/0 \
#   CALIBR_WAREHOUSE_URL=postgresql+psycopg2://calibr:PASSWORD@db.internal:5432/calibr \
#   CALIBR_SECRETS_KEYS=... \
#   deploy/celery-worker.sh worker-1 --concurrency 2
#
# Arguments: the worker's name (default: worker; Celery adds @hostname), then anything
# `celery worker` accepts (--concurrency N, --pool solo, --loglevel DEBUG ...).
# The worker reads the same variables as the runs that send it steps (calibr_pipeline/
# celery_worker.py): broker and result backend, the warehouse, the vault key of shop tokens,
# CALIBR_SANDBOX_ALLOWED_HOSTS only against the sandbox. It needs no DAGSTER_HOME: each step
# carries a reference to the run's instance (deploy/dagster.celery.yaml, on PostgreSQL).
# `exec`: the worker is this process, so a supervisor's SIGTERM reaches it (warm shutdown:
# the running step finishes).
set -euo pipefail
name="${1:-worker}"
shift || true
export CALIBR_EXECUTOR="${CALIBR_EXECUTOR:-celery}"
exec celery --app calibr_pipeline.celery_worker worker \
  --queues dagster \
  --hostname "calibr-${name}@%h" \
  --prefetch-multiplier 1 \
  --without-gossip --without-mingle \
  --loglevel INFO \
  "$@"

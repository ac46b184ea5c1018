#!/usr/bin/env bash
# Runs the whole test suite against SQLite and the local PostgreSQL server.
set -euo pipefail
cd "$(dirname "$0")/.."

ensure_postgres() {
  if pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then return 0; fi
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    echo "starting PostgreSQL..."
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && return 0; sleep 1; done
  fi
  echo "PostgreSQL is not reachable on 127.0.0.1:5432; set CALIBR_TEST_POSTGRES_URL or start it" >&2
  return 1
}

ensure_postgres
export CALIBR_REQUIRE_POSTGRES=1
export GX_ANALYTICS_ENABLED=False
# The celery end-to-end test (redis-server, two Celery workers) is deselected here; .ci/run
# runs it once on its own: `bash scripts/test.sh -m celery` (a later -m wins).
exec .venv/bin/python -m pytest -m "not celery" "$@"

"""Event throughput: outbox writes with schema validation (SQLite and PostgreSQL), sensor
dispatch rate, archival and replay of 1,000,000 archived events.

    python -m calibr_pipeline_tests.benchmarks.bench_events [--writes N] [--dispatch N] [--replay N] [--postgres-url URL]

* **writes**: ``publish()`` of ``job.rules.apply`` events (validated against the registry,
  written to ``outbox`` and ``event_log``), 500 per transaction and 1 per transaction.
* **dispatch**: ``dispatch_outbox`` ticks (read, validate + upcast on read, run-key check
  against a Dagster instance, run request) over pending events; each tick's events are then
  marked dispatched as the run would.
* **replay**: ``--replay`` event_log rows (half of them ``automation.run.completed`` v1,
  upcast to v2 on read) archived with ``archive_events`` to JSON Lines files, then read
  back: every file checked against its SHA-256, every event validated and upcast.

PostgreSQL: ``--postgres-url`` (default ``$CALIBR_TEST_POSTGRES_URL`` or the local test
server) must allow CREATE DATABASE; a throw-away database is created and dropped.
Goals (PASS/FAIL): ≥ 1,000 validated outbox writes/s on SQLite in batches, ≥ 100 events/s
through the sensor, ≥ 5,000 events/s replayed (1,000,000 in under 200 s).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone

from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import make_url

from calibr_pipeline.events.archive import archive_events, iter_decoded
from calibr_pipeline.events.registry import registry
from calibr_pipeline.warehouse.engine import get_engine, session_scope, upgrade_to_head
from calibr_pipeline.warehouse.models import EventArchive, EventLog
from calibr_pipeline.warehouse.outbox import publish
from calibr_pipeline.warehouse.tenancy import get_or_create_tenant
from calibr_pipeline_tests.benchmarks._common import verdict

GOAL_WRITES = 1000.0
GOAL_DISPATCH = 100.0
GOAL_REPLAY = 5000.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench_events", description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=20000, help="outbox events per backend in batches (default 20000)")
    parser.add_argument("--dispatch", type=int, default=2000, help="pending events pushed through the sensor (default 2000)")
    parser.add_argument("--replay", type=int, default=1_000_000, help="archived events to replay (default 1,000,000)")
    parser.add_argument("--postgres-url", default=os.environ.get("CALIBR_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--no-postgres", action="store_true")
    # accepted from run_all (common options); the events benchmark always uses fresh databases
    parser.add_argument("--warehouse-url", default="")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--date")
    parser.add_argument("--keep-warehouse", action="store_true")
    return parser


def _writes(url: str, n: int, per_tx: int) -> float:
    with session_scope(url) as session:
        tenant_id = get_or_create_tenant(session, f"evbench-{uuid.uuid4().hex[:6]}").id
    started = time.perf_counter()
    done = 0
    while done < n:
        with session_scope(url) as session:
            for _ in range(min(per_tx, n - done)):
                publish(session, "job.rules.apply", {"run_id": str(uuid.uuid4()), "kind": "apply"}, tenant_id=tenant_id, actor="bench")
                done += 1
    return n / (time.perf_counter() - started)


def _dispatch(url: str, n: int) -> float:
    import dagster as dg

    from calibr_pipeline.defs.outbox import Dispatch, dispatch_outbox
    from calibr_pipeline.defs.resources import WarehouseResource
    from calibr_pipeline.warehouse.outbox import mark_dispatched

    with session_scope(url) as session:
        session.execute(text("UPDATE outbox SET dispatched_at = created_at WHERE dispatched_at IS NULL"))
        tenant_id = get_or_create_tenant(session, "evbench-dispatch").id
    with session_scope(url) as session:
        for _ in range(n):
            publish(session, "job.rules.apply", {"run_id": str(uuid.uuid4()), "kind": "apply"}, tenant_id=tenant_id, actor="bench")

    def build(_session, event) -> Dispatch:
        return Dispatch(dg.RunRequest(run_key=event.id, job_name="apply_run", partition_key=event.payload["run_id"]))

    warehouse = WarehouseResource(url=url)
    seen = 0
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, resources={"warehouse": warehouse})
        started = time.perf_counter()
        while seen < n:
            result = dispatch_outbox(context, warehouse, "job.rules.apply", build)
            if not result.run_requests:
                break
            with session_scope(url) as session:  # what the launched run makes true on the next tick
                for request in result.run_requests:
                    mark_dispatched(session, request.run_key, request.run_key)
            seen += len(result.run_requests)
        elapsed = time.perf_counter() - started
    return seen / elapsed


def _replay(url: str, n: int, root: str) -> tuple[float, float, int]:
    with session_scope(url) as session:
        tenants = [get_or_create_tenant(session, "evbench-a").id, get_or_create_tenant(session, "evbench-b").id]
    base = datetime(2026, 1, 1, tzinfo=timezone.utc)
    step = timedelta(days=120) / max(n, 1)
    engine = get_engine(url)
    chunk = 20000
    written = 0
    print(f"  seeding {n:,} event_log rows ...", flush=True)
    while written < n:
        rows = []
        for i in range(written, min(n, written + chunk)):
            if i % 2:
                event_type, payload, version = "automation.run.completed", {"run_id": f"r{i}", "state": "APPLIED", "applied": i % 7, "failed": i % 3}, 1
            else:
                event_type, payload, version = "price.applied", {"run_id": f"r{i}", "target_id": i + 1, "sku": f"SKU-{i % 5000}", "from": "19.99",
                                                                  "to": "18.99", "currency": "USD", "idempotency_key": f"k{i}", "note": None}, 1
            rows.append({"tenant_id": tenants[i % 2], "event_type": event_type, "actor": "bench", "payload": payload, "schema_version": version,
                         "created_at": base + step * i})
        with engine.begin() as connection:
            connection.execute(insert(EventLog.__table__), rows)
        written += len(rows)
    started = time.perf_counter()
    report = archive_events(url, root=root, older_than=timedelta(days=1), now=base + timedelta(days=400), tables=("event_log",), batch_rows=100_000)
    archive_rate = report.rows / (time.perf_counter() - started)
    reg = registry()
    started = time.perf_counter()
    replayed = 0
    with session_scope(url) as session:
        archives = session.query(EventArchive).filter(EventArchive.state == "archived").all()
        for archive in archives:
            import hashlib

            import fsspec

            with fsspec.open(archive.path, "rb") as handle:
                blob = handle.read()
            if hashlib.sha256(blob).hexdigest() != archive.sha256:
                raise SystemExit(f"{archive.path}: checksum mismatch")
            for row in iter_decoded(blob, archive.file_format):
                reg.read(row["event_type"], row["schema_version"], row["payload"])
                replayed += 1
    replay_rate = replayed / (time.perf_counter() - started)
    return archive_rate, replay_rate, replayed


def _fresh_postgres(admin_url: str) -> tuple[str, callable]:
    name = f"calibr_evbench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)

    def drop() -> None:
        get_engine(url).dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url, drop


def run(argv: list[str] | None = None) -> bool:
    args = build_parser().parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="calibr-bench-events-")
    passed = True
    try:
        sqlite_url = f"sqlite:///{tmp}/events.db"
        upgrade_to_head(sqlite_url)
        batch = _writes(sqlite_url, args.writes, 500)
        single = _writes(sqlite_url, min(2000, args.writes), 1)
        print(f"outbox writes with validation, SQLite: {batch:,.0f} events/s (500 per transaction), {single:,.0f} events/s (1 per transaction)")
        ok = batch >= GOAL_WRITES
        print(f"goal: ≥ {GOAL_WRITES:,.0f} validated writes/s on SQLite in batches -> {verdict(ok)}")
        passed &= ok
        if not args.no_postgres:
            try:
                pg_url, drop = _fresh_postgres(args.postgres_url)
            except Exception as exc:  # noqa: BLE001
                print(f"PostgreSQL skipped: {str(exc).splitlines()[0]}")
            else:
                try:
                    upgrade_to_head(pg_url)
                    pg_batch = _writes(pg_url, args.writes, 500)
                    pg_single = _writes(pg_url, min(2000, args.writes), 1)
                    print(f"outbox writes with validation, PostgreSQL: {pg_batch:,.0f} events/s (500 per transaction), {pg_single:,.0f} events/s (1 per transaction)")
                finally:
                    drop()
        dispatch = _dispatch(sqlite_url, args.dispatch)
        ok = dispatch >= GOAL_DISPATCH
        print(f"sensor dispatch (dispatch_outbox, SQLite, 50 per tick): {dispatch:,.0f} events/s -> goal ≥ {GOAL_DISPATCH:,.0f}: {verdict(ok)}")
        passed &= ok
        replay_url = f"sqlite:///{tmp}/replay.db"
        upgrade_to_head(replay_url)
        archive_rate, replay_rate, replayed = _replay(replay_url, args.replay, f"{tmp}/archive")
        ok = replay_rate >= GOAL_REPLAY and replayed == args.replay
        print(f"archive (write + verify + delete), SQLite: {archive_rate:,.0f} events/s")
        print(f"replay of {replayed:,} archived events (SHA-256 check, decode, validate, upcast): {replay_rate:,.0f} events/s -> goal ≥ {GOAL_REPLAY:,.0f}: {verdict(ok)}")
        passed &= ok
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"bench_events: {verdict(passed)}")
    return passed


def main(argv: list[str] | None = None) -> int:
    return 0 if run(argv) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Archival to cold storage and back: round trips with checksums, audit over archived months,
and a real process killed at every step of the archiver (nothing lost, nothing duplicated)."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select, update

from calibr_pipeline.cli import main
from calibr_pipeline.events.archive import ArchiveError, archive_events, list_archives, parse_age, read_archive, restore_events
from calibr_pipeline.services.audit import AuditFilters, query_audit
from calibr_pipeline.warehouse.engine import session_scope
from calibr_pipeline.warehouse.models import EventArchive, EventLog, OutboxEvent
from calibr_pipeline.warehouse.outbox import publish, record_event
from calibr_pipeline.warehouse.tenancy import get_or_create_tenant

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
# created_at of the seeded events: three old months and one recent day
MOMENTS = [datetime(2026, 5, 3, tzinfo=timezone.utc), datetime(2026, 6, 15, tzinfo=timezone.utc), datetime(2026, 7, 30, 23, 59, tzinfo=timezone.utc),
           datetime(2026, 11, 19, tzinfo=timezone.utc)]


def _seed(url: str, per_moment: int = 4) -> None:
    """event_log rows for two tenants and the system, v1 and v2 payloads, dispatched and pending outbox rows."""
    with session_scope(url) as session:
        tenants = [get_or_create_tenant(session, "acme").id, get_or_create_tenant(session, "globex").id, None]
    with session_scope(url) as session:
        for moment in MOMENTS:
            for i in range(per_moment):
                tenant = tenants[i % 3]
                row = record_event(session, "automation.run.queued", {"run_id": f"r-{moment:%m}-{i}", "kind": "apply", "rule": None}, tenant_id=tenant, actor="seed", run_id=f"r-{moment:%m}-{i}")
                row.created_at = moment + timedelta(minutes=i)
                if tenant is not None:
                    event = publish(session, "job.rules.apply", {"run_id": f"r-{moment:%m}-{i}", "kind": "apply"}, tenant_id=tenant, actor="seed")
                    event.created_at = moment + timedelta(minutes=i)
                    if i % 2 == 0:
                        event.dispatched_at, event.dispatched_run_key = moment + timedelta(minutes=i + 1), event.id
            session.flush()
        # a v1 row written before automation.run.completed had v2
        old = record_event(session, "automation.run.completed", {"run_id": "r-old", "outcome": "APPLIED", "counts": {"applied": 1, "failed": 0, "total": 1}}, tenant_id=tenants[0], actor="seed")
        session.flush()
        old.payload, old.schema_version, old.created_at = {"run_id": "r-old", "state": "APPLIED", "applied": 1, "failed": 0}, 1, MOMENTS[0]
        session.execute(update(EventLog).where(EventLog.created_at.is_(None)).values(created_at=NOW))


def _snapshot(url: str) -> dict[str, dict]:
    def norm(row):
        return {k: (v.astimezone(timezone.utc).isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}

    with session_scope(url) as session:
        logs = {str(r.id): norm({c.name: getattr(r, c.name) for c in EventLog.__table__.columns}) for r in session.scalars(select(EventLog))}
        outbox = {r.id: norm({c.name: getattr(r, c.name) for c in OutboxEvent.__table__.columns}) for r in session.scalars(select(OutboxEvent))}
    return {"event_log": logs, "outbox": outbox}


def _archived_rows(url: str) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = {"event_log": [], "outbox": []}
    with session_scope(url) as session:
        for archive in session.scalars(select(EventArchive).where(EventArchive.state == "archived")):
            rows[archive.source_table] += read_archive(archive)
    return rows


def test_parse_age():
    assert parse_age("90d") == timedelta(days=90) and parse_age("12w") == timedelta(weeks=12) and parse_age("36h") == timedelta(hours=36)
    for bad in ("90", "0d", "-3d", "ninety days"):
        with pytest.raises(ArchiveError):
            parse_age(bad)


def test_archive_and_restore_round_trip_with_checksums(warehouse_url, tmp_path):
    _seed(warehouse_url)
    before = _snapshot(warehouse_url)
    root = tmp_path / "cold"
    report = archive_events(warehouse_url, root=str(root), older_than=timedelta(days=90), now=NOW)
    cutoff = NOW - timedelta(days=90)
    after = _snapshot(warehouse_url)
    # only old rows left the tables; pending outbox rows never do
    assert all(r["created_at"] >= cutoff.isoformat() for r in after["event_log"].values())
    assert all(r["created_at"] >= cutoff.isoformat() or r["dispatched_at"] is None for r in after["outbox"].values())
    assert any(r["dispatched_at"] is None and r["created_at"] < cutoff.isoformat() for r in after["outbox"].values())
    moved = {t: set(before[t]) - set(after[t]) for t in before}
    assert report.rows == sum(len(v) for v in moved.values()) > 0
    assert {(f.table, f.month) for f in report.files} >= {("event_log", "2026-05"), ("event_log", "2026-06"), ("event_log", "2026-07"), ("outbox", "2026-05")}
    assert {f.tenant for f in report.files} == {"acme", "globex", "_global"}
    # each file: month x tenant layout, manifest with count, id range and the file's SHA-256
    for f in report.files:
        path = Path(f.path)
        assert path.parent == root / f.table / f.month / f.tenant
        manifest = json.loads(Path(f.path + ".manifest.json").read_text())
        blob = path.read_bytes()
        assert manifest["sha256"] == hashlib.sha256(blob).hexdigest() == f.sha256
        lines = gzip.decompress(blob).splitlines()
        assert manifest["row_count"] == len(lines) == f.rows
        assert (manifest["first_id"], manifest["last_id"]) == (str(json.loads(lines[0])["id"]), str(json.loads(lines[-1])["id"]))
    archived = _archived_rows(warehouse_url)
    assert {str(r["id"]) for r in archived["event_log"]} == moved["event_log"]
    assert {r["id"] for r in archived["outbox"]} == moved["outbox"]
    # archiving again finds nothing more
    assert archive_events(warehouse_url, root=str(root), older_than=timedelta(days=90), now=NOW).rows == 0

    # one tenant's month, then the rest of the month: restored exactly, original ids
    first = restore_events(warehouse_url, month="2026-06", tenant="acme")
    assert first.rows_restored > 0 and first.rows_already_present == 0
    restore_events(warehouse_url, month="2026-06")
    for month in ("2026-05", "2026-07"):
        restore_events(warehouse_url, month=month)
    assert _snapshot(warehouse_url) == before
    with pytest.raises(ArchiveError, match="no archived events for 2026-06"):
        restore_events(warehouse_url, month="2026-06")


def test_audit_can_include_archived_months(warehouse_url, tmp_path):
    _seed(warehouse_url)
    with session_scope(warehouse_url) as session:
        everything, _ = query_audit(session, AuditFilters(tenant="acme"), limit=500)
    archive_events(warehouse_url, root=str(tmp_path / "cold"), older_than=timedelta(days=90), now=NOW)
    with session_scope(warehouse_url) as session:
        live, _ = query_audit(session, AuditFilters(tenant="acme"), limit=500)
        assert len(live) < len(everything)
        combined, _ = query_audit(session, AuditFilters(tenant="acme"), limit=500, include_archived=True)
        # paging through archived and live rows together yields each event once, in id order
        paged, cursor = [], None
        while True:
            page, cursor = query_audit(session, AuditFilters(tenant="acme"), limit=3, cursor=cursor, include_archived=True)
            paged += page
            if cursor is None:
                break
        june, _ = query_audit(session, AuditFilters(tenant="acme", since=datetime(2026, 6, 1, tzinfo=timezone.utc), until=datetime(2026, 7, 1, tzinfo=timezone.utc)), include_archived=True)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "archived"} for r in rows]  # noqa: E731
    assert strip(combined) == everything == strip(paged)
    assert june and all(r["at"].startswith("2026-06") and r.get("archived") for r in june)
    # the archived v1 event is upcast like a live one
    completed = [r for r in combined if r["event_type"] == "automation.run.completed"]
    assert completed[0]["schema_version"] == 2 and completed[0]["payload"]["counts"] == {"applied": 1, "failed": 0, "total": 1}


def test_parquet_archives_round_trip(sqlite_warehouse_url, tmp_path):
    _seed(sqlite_warehouse_url)
    before = _snapshot(sqlite_warehouse_url)
    report = archive_events(sqlite_warehouse_url, root=f"file://{tmp_path}/cold", older_than=timedelta(days=90), now=NOW, file_format="parquet")
    assert report.files and all(f.path.endswith(".parquet") for f in report.files)
    import pyarrow.parquet as pq

    assert pq.read_table(report.files[0].path).num_rows == report.files[0].rows
    for month in ("2026-05", "2026-06", "2026-07"):
        restore_events(sqlite_warehouse_url, month=month)
    assert _snapshot(sqlite_warehouse_url) == before


def test_a_damaged_archive_is_refused_and_nothing_is_restored(sqlite_warehouse_url, tmp_path):
    _seed(sqlite_warehouse_url)
    report = archive_events(sqlite_warehouse_url, root=str(tmp_path), older_than=timedelta(days=90), now=NOW, tables=("event_log",))
    target = next(f for f in report.files if f.month == "2026-05")
    Path(target.path).write_bytes(Path(target.path).read_bytes()[:-3] + b"xyz")
    with pytest.raises(ArchiveError, match="does not match its manifest"):
        restore_events(sqlite_warehouse_url, month="2026-05", tenant=target.tenant)
    with session_scope(sqlite_warehouse_url) as session:
        assert session.scalar(select(EventArchive.state).where(EventArchive.path == target.path)) == "archived"


def test_cli_archive_restore_and_errors(sqlite_warehouse_url, tmp_path, capsys):
    _seed(sqlite_warehouse_url)
    args = ["--warehouse-url", sqlite_warehouse_url]
    assert main([*args, "events", "archive", "--older-than", "1d", "--root", str(tmp_path)]) == 0
    assert "archived" in capsys.readouterr().err
    assert list_archives(sqlite_warehouse_url)
    assert main([*args, "events", "archive", "--older-than", "ninety"]) == 2
    assert "expected a positive number" in capsys.readouterr().err
    assert main([*args, "events", "restore", "--month", "2026-13"]) == 2
    assert main([*args, "events", "restore", "--month", "2026-05", "--tenant", "nobody"]) == 2
    assert "unknown tenant 'nobody'" in capsys.readouterr().err
    assert main([*args, "events", "restore", "--month", "2026-05"]) == 0
    assert "restored" in capsys.readouterr().out


KILL_CHILD = textwrap.dedent("""
    import os, sys
    from datetime import datetime, timedelta, timezone
    from calibr_pipeline.events.archive import archive_events
    url, root, step, nth = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    seen = {"n": 0}
    def checkpoint(name):
        if name == step:
            seen["n"] += 1
            if seen["n"] == nth:
                os._exit(137)  # as abrupt as kill -9: no cleanup, no finally, no flush
    archive_events(url, root=root, older_than=timedelta(days=90), now=datetime(2026, 11, 20, 12, tzinfo=timezone.utc),
                   batch_rows=2, checkpoint=checkpoint)
    os._exit(0)
""")
STEPS = ["selected", "writing", "written", "verified", "renamed", "manifest_written", "deleting", "committed"]


@pytest.mark.integration
def test_killing_the_archiver_at_any_step_loses_nothing_and_duplicates_nothing(tmp_path):
    from calibr_pipeline.warehouse.engine import get_engine, upgrade_to_head

    template = tmp_path / "template.db"
    upgrade_to_head(f"sqlite:///{template}")
    _seed(f"sqlite:///{template}")
    get_engine(f"sqlite:///{template}").dispose()
    for step in STEPS:
        db = tmp_path / f"{step}.db"
        db.write_bytes(template.read_bytes())
        url, root = f"sqlite:///{db}", str(tmp_path / f"cold-{step}")
        before = _snapshot(url)
        child = subprocess.run([sys.executable, "-c", KILL_CHILD, url, root, step, "3"], capture_output=True, text=True, timeout=120)
        assert child.returncode == 137, f"{step}: {child.stderr[-2000:]}"
        # killed mid-way: every row is in the table or in a committed archive, exactly once
        middle, archived = _snapshot(url), _archived_rows(url)
        for table in ("event_log", "outbox"):
            archived_ids = [str(r["id"]) for r in archived[table]]
            assert len(archived_ids) == len(set(archived_ids)), step
            assert not set(archived_ids) & set(middle[table]), step
            assert set(archived_ids) | set(middle[table]) == set(before[table]), step
        # the next run finishes the job; restoring every month gives back exactly the rows
        archive_events(url, root=root, older_than=timedelta(days=90), now=NOW, batch_rows=2)
        for month in ("2026-05", "2026-06", "2026-07"):
            restore_events(url, month=month)
        assert _snapshot(url) == before, step
        get_engine(url).dispose()


def test_monthly_schedule_runs_the_archive_job(sqlite_warehouse_url, tmp_path, instance):


    from calibr_pipeline.defs.resources import WarehouseResource
    from calibr_pipeline.definitions import build_definitions

    defs = build_definitions(warehouse=WarehouseResource(url=sqlite_warehouse_url))
    schedule = defs.resolve_schedule_def("monthly_event_archive")
    assert schedule.cron_schedule == "0 2 1 * *" and schedule.job_name == "archive_events_job"
    _seed(sqlite_warehouse_url)
    result = defs.resolve_job_def("archive_events_job").execute_in_process(
        instance=instance, run_config={"ops": {"archive_old_events": {"config": {"older_than": "30d", "root": str(tmp_path)}}}}
    )
    assert result.success
    summary = result.output_for_node("archive_old_events")
    assert summary["rows"] > 0 and summary["files"] == len(list_archives(sqlite_warehouse_url))



def test_an_archived_id_is_never_given_to_a_new_event(warehouse_url, tmp_path):
    """SQLite reuses the largest rowid once it is deleted unless the table is AUTOINCREMENT."""
    with session_scope(warehouse_url) as session:
        tenant = get_or_create_tenant(session, "acme").id
        row = record_event(session, "rule.saved", {"rule_id": 1, "name": "old"}, tenant_id=tenant, actor="t")
        row.created_at = MOMENTS[0]
    archive_events(warehouse_url, root=str(tmp_path), older_than=timedelta(days=90), now=NOW, tables=("event_log",))
    with session_scope(warehouse_url) as session:
        assert session.scalar(select(EventLog.id)) is None  # the table is empty: the archived row had the largest id
        new = record_event(session, "rule.saved", {"rule_id": 2, "name": "new"}, tenant_id=tenant, actor="t")
        new.created_at = MOMENTS[0]
    restore_events(warehouse_url, month="2026-05")
    with session_scope(warehouse_url) as session:
        names = sorted(r.payload["name"] for r in session.scalars(select(EventLog)))
    assert names == ["new", "old"]


def test_restored_months_can_be_archived_and_restored_again(sqlite_warehouse_url, tmp_path):
    _seed(sqlite_warehouse_url)
    before = _snapshot(sqlite_warehouse_url)
    for _ in range(2):
        first = archive_events(sqlite_warehouse_url, root=str(tmp_path), older_than=timedelta(days=90), now=NOW)
        assert first.rows > 0
        for month in ("2026-05", "2026-06", "2026-07"):
            restore_events(sqlite_warehouse_url, month=month)
        assert _snapshot(sqlite_warehouse_url) == before
    with session_scope(sqlite_warehouse_url) as session:
        assert {a.state for a in session.scalars(select(EventArchive))} == {"restored"}

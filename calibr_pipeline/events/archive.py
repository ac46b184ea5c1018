"""Event archival: old ``event_log`` rows and dispatched ``outbox`` rows to cold storage and back.

Files are compressed JSON Lines (``.jsonl.gz``, the default) or Parquet (pyarrow), one per
source table × month × tenant × batch, under a root that is any fsspec URL (a local folder
by default, ``s3://bucket/prefix`` when configured)::

    <root>/<table>/<YYYY-MM>/<tenant>/<table>-<YYYY-MM>-<tenant>-<first id>-<last id>-<sha256[:12]>.<format>
    ... and the same name + ``.manifest.json`` (row count, id range, SHA-256, created_at range)

Crash safety — the order of one batch:

1. read the batch (keyset pagination by id);
2. write it to ``<name>.tmp``, flush and fsync, close;
3. read the temporary file back: SHA-256, row count and ids must match what was read;
4. move it to its final name and write the manifest next to it;
5. in ONE database transaction: insert the ``event_archives`` row and delete exactly the
   archived rows (the delete must remove ``row_count`` rows, else it rolls back).

A kill before 5 commits leaves the rows in the table and, at worst, a file that no
``event_archives`` row names: an orphan that nothing reads (restore and audit read only
committed archives) and that a later run overwrites (same rows → same name) or removes.
A kill after 5 has nothing left to do. So nothing is lost and nothing is duplicated;
``calibr_pipeline_tests/events/test_archive.py`` kills a real process at every step.

Restore reads the committed archives of a month, verifies each file's SHA-256 against its
manifest, and inserts the rows whose ids are not in the table (original ids preserved),
marking the archive ``restored`` in the same transaction.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterator

import fsspec
from sqlalchemy import and_, delete, func, insert, select
from sqlalchemy.orm import Session

from calibr_pipeline.domain.errors import CalibrError
from calibr_pipeline.warehouse.engine import session_scope
from calibr_pipeline.warehouse.models import EventArchive, EventLog, OutboxEvent, Tenant
from calibr_pipeline.warehouse.types import utcnow

FORMATS = ("jsonl.gz", "parquet")
SOURCE_TABLES = ("event_log", "outbox")
GLOBAL_TENANT = "_global"
DEFAULT_BATCH_ROWS = 50_000
_DURATION = re.compile(r"^(?P<n>[0-9]+)(?P<unit>[dhw])$")

Checkpoint = Callable[[str], None]


class ArchiveError(CalibrError):
    pass


def parse_age(text: str) -> timedelta:
    """``90d``, ``12w``, ``36h`` -> timedelta (a user error otherwise)."""
    match = _DURATION.match(text.strip().lower())
    if match is None or int(match["n"]) == 0:
        raise ArchiveError(f"--older-than {text!r}: expected a positive number of days, weeks or hours such as 90d, 12w or 36h")
    n = int(match["n"])
    return {"d": timedelta(days=n), "h": timedelta(hours=n), "w": timedelta(weeks=n)}[match["unit"]]


def parse_month(text: str) -> tuple[datetime, datetime]:
    try:
        start = datetime.strptime(text, "%Y-%m").replace(tzinfo=timezone.utc)
    except ValueError:
        raise ArchiveError(f"--month {text!r}: expected YYYY-MM, e.g. 2026-08") from None
    end = (start + timedelta(days=32)).replace(day=1)
    return start, end


def _model(table: str):
    return {"event_log": EventLog, "outbox": OutboxEvent}[table]


def _columns(table: str) -> list[str]:
    return [c.name for c in _model(table).__table__.columns]


# --- serialization -------------------------------------------------------------------------


def _to_json_value(value):
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat()
    return value


def _from_stored(table: str, row: dict) -> dict:
    """A row read from a file, typed for insertion."""
    out = dict(row)
    for name in ("created_at", "dispatched_at"):
        if out.get(name):
            out[name] = datetime.fromisoformat(out[name])
    return out


def _comparable(row: dict) -> dict:
    return {k: (_to_json_value(v) if isinstance(v, datetime) else v) for k, v in row.items()}


def encode_rows(rows: list[dict], file_format: str) -> bytes:
    if file_format == "jsonl.gz":
        buffer = io.BytesIO()
        # mtime=0: the same rows always give the same bytes (and the same SHA-256).
        with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz:
            for row in rows:
                gz.write(json.dumps({k: _to_json_value(v) for k, v in row.items()}, sort_keys=True, separators=(",", ":")).encode() + b"\n")
        return buffer.getvalue()
    if file_format == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns = list(rows[0]) if rows else []
        data = {c: [_to_json_value(r[c]) for r in rows] for c in columns}
        # payload as JSON text: its shape varies by event type and version.
        data["payload"] = [json.dumps(p, sort_keys=True) for p in data.get("payload", [])]
        buffer = io.BytesIO()
        pq.write_table(pa.table(data), buffer, compression="zstd")
        return buffer.getvalue()
    raise ArchiveError(f"unknown archive format {file_format!r} (use one of {', '.join(FORMATS)})")


def decode_rows(blob: bytes, file_format: str) -> list[dict]:
    if file_format == "jsonl.gz":
        return [json.loads(line) for line in gzip.decompress(blob).splitlines() if line]
    if file_format == "parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(io.BytesIO(blob)).to_pylist()
        for row in rows:
            row["payload"] = json.loads(row["payload"])
        return rows
    raise ArchiveError(f"unknown archive format {file_format!r}")


def iter_decoded(blob: bytes, file_format: str) -> Iterator[dict]:
    """Rows of an archive file one at a time (JSON Lines is streamed, not materialized)."""
    if file_format == "jsonl.gz":
        with gzip.GzipFile(fileobj=io.BytesIO(blob)) as gz:
            for line in gz:
                if line.strip():
                    yield json.loads(line)
        return
    yield from decode_rows(blob, file_format)


# --- archive -------------------------------------------------------------------------------


@dataclass
class ArchivedFile:
    table: str
    month: str
    tenant: str
    path: str
    rows: int
    first_id: str
    last_id: str
    sha256: str


@dataclass
class ArchiveReport:
    cutoff: datetime
    files: list[ArchivedFile] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)


def _fs(root: str):
    fs, path = fsspec.core.url_to_fs(root)
    return fs, path.rstrip("/")


def _predicate(table: str, tenant_id: int | None, start: datetime, end: datetime):
    model = _model(table)
    conditions = [model.created_at >= start, model.created_at < end, model.tenant_id.is_(None) if tenant_id is None else model.tenant_id == tenant_id]
    if table == "outbox":
        conditions.append(model.dispatched_at.is_not(None))  # pending work is never archived
    return and_(*conditions)


def _month_start(moment: datetime) -> datetime:
    return datetime(moment.year, moment.month, 1, tzinfo=timezone.utc)


def _months(first: datetime, cutoff: datetime) -> Iterator[tuple[str, datetime, datetime]]:
    start = _month_start(first)
    while start < cutoff:
        end = (start + timedelta(days=32)).replace(day=1)
        yield f"{start:%Y-%m}", start, min(end, cutoff)
        start = end


def _write_verified(fs, path: str, blob: bytes, file_format: str, expected_ids: list[str], checkpoint: Checkpoint) -> str:
    """Write ``blob`` to ``path`` via a temporary file, verified by reading it back; returns its SHA-256."""
    digest = hashlib.sha256(blob).hexdigest()
    tmp = path + ".tmp"
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(tmp, "wb") as handle:
        half = len(blob) // 2
        handle.write(blob[:half])
        checkpoint("writing")
        handle.write(blob[half:])
        handle.flush()
        raw = getattr(handle, "f", None)  # fsspec's local file wraps a real file: make it durable
        if raw is not None and hasattr(raw, "fileno"):
            os.fsync(raw.fileno())
    checkpoint("written")
    with fs.open(tmp, "rb") as handle:
        read_back = handle.read()
    if hashlib.sha256(read_back).hexdigest() != digest:
        raise ArchiveError(f"archive file {tmp} does not read back as written (SHA-256 mismatch)")
    ids = [str(r["id"]) for r in decode_rows(read_back, file_format)]
    if ids != expected_ids:
        raise ArchiveError(f"archive file {tmp} holds {len(ids)} rows, expected {len(expected_ids)}")
    checkpoint("verified")
    fs.mv(tmp, path)
    checkpoint("renamed")
    return digest


def archive_events(
    warehouse_url: str,
    *,
    root: str,
    older_than: timedelta,
    now: datetime | None = None,
    file_format: str = "jsonl.gz",
    batch_rows: int = DEFAULT_BATCH_ROWS,
    tables: tuple[str, ...] = SOURCE_TABLES,
    checkpoint: Checkpoint | None = None,
) -> ArchiveReport:
    """Move rows created before ``now - older_than`` to files under ``root``; see the module doc."""
    if file_format not in FORMATS:
        raise ArchiveError(f"unknown archive format {file_format!r} (use one of {', '.join(FORMATS)})")
    checkpoint = checkpoint or (lambda _step: None)
    cutoff = (now or utcnow()) - older_than
    report = ArchiveReport(cutoff)
    fs, base = _fs(root)
    with session_scope(warehouse_url) as session:
        slugs = dict(session.execute(select(Tenant.id, Tenant.slug)).all())
    for table in tables:
        model = _model(table)
        columns = _columns(table)
        with session_scope(warehouse_url) as session:
            oldest = session.execute(
                select(model.tenant_id, func.min(model.created_at)).where(model.created_at < cutoff).group_by(model.tenant_id)
            ).all()
        for tenant_id, first in sorted(oldest, key=lambda r: (r[0] is None, r[0] or 0)):
            tenant = slugs.get(tenant_id, GLOBAL_TENANT) if tenant_id is not None else GLOBAL_TENANT
            for month, start, end in _months(first, cutoff):
                after = None
                while True:
                    with session_scope(warehouse_url) as session:
                        query = select(*[model.__table__.c[c] for c in columns]).where(_predicate(table, tenant_id, start, end))
                        if after is not None:
                            query = query.where(model.id > after)
                        rows = [dict(r._mapping) for r in session.execute(query.order_by(model.id).limit(batch_rows))]
                    if not rows:
                        break
                    checkpoint("selected")
                    after = rows[-1]["id"]
                    archived = _archive_batch(warehouse_url, fs, base, table, month, tenant, tenant_id, start, end, rows, file_format, checkpoint)
                    report.files.append(archived)
    return report


def _archive_batch(warehouse_url, fs, base, table, month, tenant, tenant_id, start, end, rows, file_format, checkpoint) -> ArchivedFile:
    model = _model(table)
    first_id, last_id = str(rows[0]["id"]), str(rows[-1]["id"])
    blob = encode_rows(rows, file_format)
    # The name carries the id range and the content's hash: the same rows always get the same
    # file (a re-run after a crash overwrites its own orphan), different rows never share one.
    name = f"{table}-{month}-{tenant}-{first_id}-{last_id}-{hashlib.sha256(blob).hexdigest()[:12]}.{file_format}"
    path = f"{base}/{table}/{month}/{tenant}/{name}"
    with session_scope(warehouse_url) as session:
        if session.scalar(select(EventArchive.state).where(EventArchive.path == path)) == "archived":
            raise ArchiveError(f"{path} is already a committed archive; another archiver is running")
    ids = [str(r["id"]) for r in rows]
    digest = _write_verified(fs, path, blob, file_format, ids, checkpoint)
    manifest = {
        "table": table, "month": month, "tenant": tenant, "format": file_format, "file": name, "row_count": len(rows),
        "first_id": first_id, "last_id": last_id, "sha256": digest,
        "created_at_min": _to_json_value(min(r["created_at"] for r in rows)), "created_at_max": _to_json_value(max(r["created_at"] for r in rows)),
        "schema_versions": sorted({r.get("schema_version") or 1 for r in rows}),
    }
    with fs.open(path + ".manifest.json", "w") as handle:
        handle.write(json.dumps(manifest, indent=2, sort_keys=True))
    checkpoint("manifest_written")
    with session_scope(warehouse_url) as session:
        archive = session.scalar(select(EventArchive).where(EventArchive.path == path))
        if archive is not None and archive.state == "archived":
            raise ArchiveError(f"{path} is already a committed archive; another archiver is running")
        if archive is None:  # (a restored archive of exactly these rows is archived again in place)
            archive = EventArchive(source_table=table, month=month, tenant_key=tenant, path=path, file_format=file_format)
            session.add(archive)
        archive.row_count, archive.first_id, archive.last_id, archive.sha256 = len(rows), first_id, last_id, digest
        archive.state, archive.archived_at, archive.restored_at = "archived", utcnow(), None
        result = session.execute(
            delete(model).where(_predicate(table, tenant_id, start, end), model.id >= rows[0]["id"], model.id <= rows[-1]["id"])
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != len(rows):
            # Someone else changed these rows since they were read (a concurrent archiver):
            # roll back; the file stays an orphan that nothing reads.
            raise ArchiveError(f"{table} {month} {tenant}: expected to delete {len(rows)} archived rows, found {result.rowcount}; nothing deleted")
        checkpoint("deleting")
    checkpoint("committed")
    return ArchivedFile(table, month, tenant, path, len(rows), first_id, last_id, digest)


# --- reading archives ----------------------------------------------------------------------


def read_archive(archive: EventArchive) -> list[dict]:
    """The rows of one committed archive, after checking the file against its manifest."""
    fs, _ = _fs(archive.path)
    with fs.open(archive.path, "rb") as handle:
        blob = handle.read()
    digest = hashlib.sha256(blob).hexdigest()
    if digest != archive.sha256:
        raise ArchiveError(f"{archive.path}: SHA-256 {digest[:12]}… does not match its manifest ({archive.sha256[:12]}…); the file is damaged")
    rows = decode_rows(blob, archive.file_format)
    if len(rows) != archive.row_count or (rows and (str(rows[0]["id"]), str(rows[-1]["id"])) != (archive.first_id, archive.last_id)):
        raise ArchiveError(f"{archive.path}: {len(rows)} rows do not match its manifest ({archive.row_count})")
    return rows


def committed_archives(session: Session, *, table: str, month: str | None = None, tenant: str | None = None,
                       months: tuple[str, str] | None = None) -> list[EventArchive]:
    query = select(EventArchive).where(EventArchive.source_table == table, EventArchive.state == "archived")
    if month:
        query = query.where(EventArchive.month == month)
    if months:
        query = query.where(EventArchive.month >= months[0], EventArchive.month <= months[1])
    if tenant:
        query = query.where(EventArchive.tenant_key == tenant)
    return list(session.scalars(query.order_by(EventArchive.month, EventArchive.tenant_key, EventArchive.id)))


@dataclass
class RestoreReport:
    archives: int = 0
    rows_restored: int = 0
    rows_already_present: int = 0


def restore_events(warehouse_url: str, *, month: str, tenant: str | None = None, tables: tuple[str, ...] = SOURCE_TABLES) -> RestoreReport:
    """Bring a month's archived rows back into their tables (original ids); see the module doc."""
    parse_month(month)
    report = RestoreReport()
    with session_scope(warehouse_url) as session:
        if tenant and tenant != GLOBAL_TENANT and session.scalar(select(Tenant.id).where(Tenant.slug == tenant)) is None:
            raise ArchiveError(f"unknown tenant {tenant!r}")
        archive_ids = [a.id for table in tables for a in committed_archives(session, table=table, month=month, tenant=tenant)]
    if not archive_ids:
        raise ArchiveError(f"no archived events for {month}" + (f" and tenant {tenant}" if tenant else "") + " (see `calibr events archives`)")
    for archive_id in archive_ids:
        with session_scope(warehouse_url) as session:
            archive = session.get(EventArchive, archive_id)
            if archive.state != "archived":
                continue
            model = _model(archive.source_table)
            rows = [_from_stored(archive.source_table, r) for r in read_archive(archive)]
            by_id = {r["id"]: r for r in rows}
            present: set = set()
            ids = list(by_id)
            columns = [model.__table__.c[c] for c in _columns(archive.source_table)]
            for i in range(0, len(ids), 900):
                for existing in session.execute(select(*columns).where(model.id.in_(ids[i:i + 900]))):
                    existing = dict(existing._mapping)
                    # A row already back (an earlier, interrupted restore) must be the same row:
                    # a different row under the same id would be silently lost.
                    if _comparable(existing) != _comparable(by_id[existing["id"]]):
                        raise ArchiveError(f"{archive.path}: id {existing['id']} is in {archive.source_table} with different content; nothing restored")
                    present.add(existing["id"])
            missing = [r for r in rows if r["id"] not in present]
            for i in range(0, len(missing), 5000):
                session.execute(insert(model.__table__), missing[i:i + 5000])
            archive.state, archive.restored_at = "restored", utcnow()
            report.archives += 1
            report.rows_restored += len(missing)
            report.rows_already_present += len(present)
    return report


def archived_event_log_rows(session: Session, *, tenant: str | None, since: datetime | None, until: datetime | None) -> Iterator[dict]:
    """Raw ``event_log`` rows of the committed archives that can match the filters (for audit)."""
    low = f"{since:%Y-%m}" if since else "0000-00"
    high = f"{until:%Y-%m}" if until else "9999-99"
    for archive in committed_archives(session, table="event_log", tenant=tenant, months=(low, high)):
        for row in read_archive(archive):
            row = _from_stored("event_log", row)
            row["tenant_key"] = archive.tenant_key
            yield row


def list_archives(warehouse_url: str) -> list[dict]:
    with session_scope(warehouse_url) as session:
        return [
            {"table": a.source_table, "month": a.month, "tenant": a.tenant_key, "rows": a.row_count, "first_id": a.first_id,
             "last_id": a.last_id, "sha256": a.sha256, "state": a.state, "path": a.path, "format": a.file_format}
            for a in session.scalars(select(EventArchive).order_by(EventArchive.month, EventArchive.tenant_key, EventArchive.id))
        ]

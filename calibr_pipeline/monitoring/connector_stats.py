"""Connector request figures that outlive the process that made the requests.

Shopify Admin calls happen inside Dagster run processes, so the ``calibr serve`` process
cannot count them in memory. Run processes aggregate their requests in memory
(:class:`ConnectorStatsRecorder`, fed by :class:`RecordingSession` around the client's
``requests`` session, see :func:`recording_clients`) and add them to
``connector_request_stats`` with :func:`record` (one row per connector, status class,
tenant, Dagster run and minute; repeated calls add to the row). The metrics collector sums the table at scrape time into
``calibr_connector_requests_total`` and ``calibr_connector_request_duration_seconds``.

Until ``warehouse/models.py`` declares ``ConnectorRequestStat`` (see the patch in
``docs/metrics-reference.md``), the table is declared here on its own metadata with
the identical shape, so this module works either way and tests can create it.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    func,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from calibr_pipeline.warehouse import models
from calibr_pipeline.warehouse.types import UTCDateTime, utcnow

log = logging.getLogger(__name__)

TABLE_NAME = "connector_request_stats"
CONNECTORS = ("storefront", "shopify_admin")
STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx", "429", "throttled", "error")
# Upper bounds (seconds) of the request-duration histogram; +Inf is ``count``.
DURATION_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def bucket_column(le: float) -> str:
    """``0.05`` -> ``le_0_05``, ``10.0`` -> ``le_10``: the column counting requests <= le seconds."""
    text = f"{le:g}".replace(".", "_")
    return f"le_{text}"


BUCKET_COLUMNS: tuple[str, ...] = tuple(bucket_column(le) for le in DURATION_BUCKETS)


def _define_table(metadata: MetaData) -> Table:
    id_type = BigInteger().with_variant(Integer(), "sqlite")
    return Table(
        TABLE_NAME,
        metadata,
        Column("id", id_type, primary_key=True),
        Column("connector", String(32), nullable=False),
        Column("status", String(16), nullable=False),
        # 0 = no tenant (kept NOT NULL so the unique key works the same on both backends)
        Column("tenant_id", id_type, nullable=False, default=0),
        Column("dagster_run_id", String(64), nullable=False, default=""),
        Column("minute", UTCDateTime, nullable=False),
        Column("count", Integer, nullable=False, default=0),
        Column("sum_seconds", Float, nullable=False, default=0.0),
        *(Column(name, Integer, nullable=False, default=0) for name in BUCKET_COLUMNS),
        Column("updated_at", UTCDateTime, nullable=False, default=utcnow),
        UniqueConstraint("connector", "status", "tenant_id", "dagster_run_id", "minute", name="uq_connector_request_stats_key"),
        Index("ix_connector_request_stats_minute", "minute"),
    )


def _table() -> Table:
    model = getattr(models, "ConnectorRequestStat", None)
    if model is not None:  # declared in the warehouse models (after the patch)
        return model.__table__
    return _define_table(MetaData(naming_convention=models.NAMING_CONVENTION))


connector_request_stats: Table = _table()


def status_class(http_status: int | None, *, throttled: bool = False) -> str:
    """The ``status`` label: ``throttled`` (GraphQL THROTTLED answer), ``429``, ``2xx``..``5xx``,
    or ``error`` (no HTTP answer: timeout, connection, TLS, DNS)."""
    if throttled:
        return "throttled"
    if http_status is None or http_status <= 0:
        return "error"
    if http_status == 429:
        return "429"
    return f"{http_status // 100}xx"


def minute_of(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


@dataclass
class Aggregate:
    """Requests of one (connector, status, tenant) in one minute."""

    count: int = 0
    sum_seconds: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * len(DURATION_BUCKETS))  # cumulative (<= le)

    def observe(self, seconds: float) -> None:
        self.count += 1
        self.sum_seconds += max(0.0, seconds)
        for i in range(bisect.bisect_left(DURATION_BUCKETS, seconds), len(DURATION_BUCKETS)):
            self.buckets[i] += 1

    @classmethod
    def of(cls, durations: Iterable[float]) -> Aggregate:
        aggregate = cls()
        for seconds in durations:
            aggregate.observe(seconds)
        return aggregate


def record(
    connection: Connection,
    connector: str,
    status: str,
    aggregate: Aggregate,
    *,
    tenant_id: int | None = None,
    dagster_run_id: str | None = None,
    minute: datetime | None = None,
) -> None:
    """Add ``aggregate`` to the row of (connector, status, tenant, run, minute), creating it.

    Call inside a transaction (``engine.begin()`` or a session's connection). Safe with
    concurrent writers: an insert that loses the race becomes an update.
    """
    if connector not in CONNECTORS:
        raise ValueError(f"connector must be one of {CONNECTORS}, got {connector!r}")
    if status not in STATUS_CLASSES:
        raise ValueError(f"status must be one of {STATUS_CLASSES}, got {status!r}")
    if aggregate.count <= 0:
        return
    t = connector_request_stats
    key = {
        "connector": connector,
        "status": status,
        "tenant_id": tenant_id or 0,
        "dagster_run_id": (dagster_run_id or "")[:64],
        "minute": minute_of(minute or utcnow()),
    }
    where = [t.c[name] == value for name, value in key.items()]
    increments = {
        "count": t.c["count"] + aggregate.count,
        "sum_seconds": t.c.sum_seconds + float(aggregate.sum_seconds),
        "updated_at": utcnow(),
        **{name: t.c[name] + n for name, n in zip(BUCKET_COLUMNS, aggregate.buckets) if n},
    }
    if connection.execute(update(t).where(*where).values(increments)).rowcount:
        return
    row = {
        **key,
        "count": aggregate.count,
        "sum_seconds": float(aggregate.sum_seconds),
        "updated_at": utcnow(),
        **dict(zip(BUCKET_COLUMNS, aggregate.buckets)),
    }
    savepoint = connection.begin_nested()
    try:
        connection.execute(t.insert().values(row))
        savepoint.commit()
    except IntegrityError:
        savepoint.rollback()
        connection.execute(update(t).where(*where).values(increments))


class ConnectorStatsRecorder:
    """Thread-safe in-memory aggregation of one process's connector requests.

    ``observe`` is cheap (a lock and a few additions) and is meant to be called for
    every HTTP request. ``flush`` writes what was observed since the last flush and
    never raises (monitoring must not fail a pricing run); with ``warehouse_url`` set,
    ``observe`` also flushes by itself every ``flush_every_s`` seconds, so a long run
    shows up while it is running. The tenant is given, or resolved from ``project_id``
    at the first flush.
    """

    def __init__(
        self,
        connector: str,
        *,
        tenant_id: int | None = None,
        project_id: int | None = None,
        dagster_run_id: str | None = None,
        warehouse_url: str | None = None,
        flush_every_s: float = 60.0,
    ):
        if connector not in CONNECTORS:
            raise ValueError(f"connector must be one of {CONNECTORS}, got {connector!r}")
        self.connector = connector
        self.tenant_id = tenant_id
        self.project_id = project_id
        self.dagster_run_id = dagster_run_id
        self.warehouse_url = warehouse_url
        self.flush_every_s = flush_every_s
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, datetime], Aggregate] = {}
        self._last_flush = time.monotonic()

    def observe(self, status: str, seconds: float, *, at: datetime | None = None) -> None:
        if status not in STATUS_CLASSES:
            status = "error"
        key = (status, minute_of(at or utcnow()))
        with self._lock:
            self._pending.setdefault(key, Aggregate()).observe(seconds)
            due = self.warehouse_url is not None and time.monotonic() - self._last_flush >= self.flush_every_s
            if due:
                self._last_flush = time.monotonic()
        if due:
            self.flush()

    def observe_http(self, http_status: int | None, seconds: float, *, throttled: bool = False) -> None:
        self.observe(status_class(http_status, throttled=throttled), seconds)

    def pending(self) -> dict[tuple[str, datetime], Aggregate]:
        with self._lock:
            return dict(self._pending)

    def flush(self, warehouse_url: str | None = None) -> int:
        """Write and forget the pending aggregates; returns the number of requests written."""
        url = warehouse_url or self.warehouse_url
        with self._lock:
            pending, self._pending = self._pending, {}
            self._last_flush = time.monotonic()
        if not pending or url is None:
            self._restore(pending)
            return 0
        from calibr_pipeline.warehouse.engine import get_engine

        try:
            with get_engine(url).begin() as connection:
                if self.tenant_id is None and self.project_id is not None:
                    self.tenant_id = connection.scalar(select(models.Project.tenant_id).where(models.Project.id == self.project_id))
                for (status, minute), aggregate in pending.items():
                    record(
                        connection, self.connector, status, aggregate,
                        tenant_id=self.tenant_id, dagster_run_id=self.dagster_run_id, minute=minute,
                    )
        except Exception as exc:  # noqa: BLE001 - figures are best effort; the run goes on
            log.warning("could not record %s request stats: %s", self.connector, type(exc).__name__)
            self._restore(pending)  # kept for the next flush
            return 0
        return sum(a.count for a in pending.values())

    def _restore(self, pending: dict[tuple[str, datetime], Aggregate]) -> None:
        with self._lock:
            for key, aggregate in pending.items():
                mine = self._pending.setdefault(key, Aggregate())
                mine.count += aggregate.count
                mine.sum_seconds += aggregate.sum_seconds
                mine.buckets = [a + b for a, b in zip(mine.buckets, aggregate.buckets)]


class RecordingSession:
    """Wraps a ``requests.Session``: every ``post`` is timed and counted in a recorder.

    The Shopify Admin client sends everything through ``self.session.post``, so
    replacing ``client.session`` with this wrapper records every HTTP attempt (retries
    included) without changing the client. A 200 answer whose body carries a
    ``THROTTLED`` error code counts as ``throttled``; a request that got no answer
    (timeout, connection error) counts as ``error``.
    """

    def __init__(self, inner: Any, recorder: ConnectorStatsRecorder):
        self._inner = inner
        self._recorder = recorder

    def post(self, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            response = self._inner.post(*args, **kwargs)
        except Exception:
            self._recorder.observe("error", time.perf_counter() - started)
            raise
        elapsed = time.perf_counter() - started
        try:
            throttled = response.status_code == 200 and b'"THROTTLED"' in (response.content or b"")
            self._recorder.observe_http(response.status_code, elapsed, throttled=throttled)
        except Exception:
            log.debug("could not count a request", exc_info=True)
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@contextmanager
def recording_clients(
    client_for: Callable[[Any], Any],
    warehouse_url: str,
    *,
    connector: str = "shopify_admin",
    dagster_run_id: str | None = None,
) -> Iterator[Callable[[Any], Any]]:
    """A ``client_for(shop)`` factory whose clients record their requests; flushed on exit.

    Usage in an asset (``shopify_admin.client_for`` is the resource's factory)::

        with recording_clients(shopify_admin.client_for, warehouse.resolved_url, dagster_run_id=context.run_id) as client_for:
            summary = apply_run(warehouse.resolved_url, run_id, client_for, ...)
    """
    recorders: list[ConnectorStatsRecorder] = []

    def factory(shop: Any) -> Any:
        client = client_for(shop)
        try:
            recorder = ConnectorStatsRecorder(
                connector,
                project_id=getattr(shop, "project_id", None),
                dagster_run_id=dagster_run_id,
                warehouse_url=warehouse_url,
            )
            client.session = RecordingSession(client.session, recorder)
            recorders.append(recorder)
        except Exception:
            log.debug("could not attach a request recorder", exc_info=True)
        return client

    try:
        yield factory
    finally:
        for recorder in recorders:
            recorder.flush()


@dataclass(frozen=True)
class ConnectorTotals:
    """Sums over the whole table, for the collector."""

    requests: dict[tuple[str, str], int]  # (connector, status) -> count
    durations: dict[str, tuple[list[int], float, int]]  # connector -> (cumulative buckets, sum, count)
    by_tenant_status: dict[tuple[int, str], int]  # (tenant_id, status) of shopify_admin


def read_totals(connection: Connection) -> ConnectorTotals:
    t = connector_request_stats
    requests = {
        (c, s): int(n or 0)
        for c, s, n in connection.execute(select(t.c.connector, t.c.status, func.sum(t.c["count"])).group_by(t.c.connector, t.c.status))
    }
    durations: dict[str, tuple[list[int], float, int]] = {}
    columns: Sequence = [func.sum(t.c[name]) for name in BUCKET_COLUMNS]
    for row in connection.execute(select(t.c.connector, func.sum(t.c.sum_seconds), func.sum(t.c["count"]), *columns).group_by(t.c.connector)):
        connector, total_seconds, count, *buckets = row
        durations[connector] = ([int(b or 0) for b in buckets], float(total_seconds or 0.0), int(count or 0))
    by_tenant_status = {
        (int(tenant), status): int(n or 0)
        for tenant, status, n in connection.execute(
            select(t.c.tenant_id, t.c.status, func.sum(t.c["count"]))
            .where(t.c.connector == "shopify_admin")
            .group_by(t.c.tenant_id, t.c.status)
        )
    }
    return ConnectorTotals(requests, durations, by_tenant_status)

"""Prometheus metrics for Calibrate, read from the warehouse and the Dagster instance at scrape time.

Nothing here keeps business state in memory: every scrape asks the warehouse (and the
Dagster instance, when one is configured), so any number of ``calibr serve`` processes
report the same figures and a restart loses nothing. Only the server's own HTTP traffic
(``calibr_http_*``) and the collector's query timings are process-local.

Every family and label is listed in ``docs/metrics-reference.md``; alert rules and
dashboards are built on these exact names.

Robustness: each section (runs, targets, DLQ, scrapes, connectors, outbox, probes,
Dagster) is read on its own and fails on its own. A failing warehouse section is logged,
turns ``calibr_warehouse_up`` to 0 and leaves its families out of that scrape; the
remaining sections still report. Scrapes never raise.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import (
    Numeric,
    and_,
    case,
    cast,
    func,
    inspect,
    literal_column,
    select,
    text,
)
from sqlalchemy.engine import Connection, Engine

from calibr_pipeline.monitoring import connector_stats
from calibr_pipeline.monitoring._engine import (
    describe_error,
    monitoring_engine,
    sqlite_file_missing,
)
from calibr_pipeline.warehouse.models import (
    CompetitorListing,
    CompetitorPriceObservation,
    DeadLetter,
    OutboxEvent,
    Project,
    RuleRun,
    RuleRunMetrics,
    RuleTarget,
    Tenant,
)
from calibr_pipeline.warehouse.types import utcnow

log = logging.getLogger(__name__)

RULE_RUN_DURATION_BUCKETS: tuple[float, ...] = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600)
CONNECTOR_DURATION_BUCKETS = connector_stats.DURATION_BUCKETS
HTTP_DURATION_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
WAREHOUSE_QUERY_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

FINISHED_RUN_STATES = ("APPLIED", "PARTIAL", "FAILED")
SUCCESS_RATIO_WINDOW = timedelta(hours=24)
# The schedules whose last success is reported even before the instance has any tick of them.
SCHEDULE_NAMES: tuple[str, ...] = ("daily_competitor_monitoring", "daily_reconciliation", "hourly_dlq_drain")
PROBE_TABLE = "probe_results"
STRIPE_SYNC_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


def _timestamp(value: Any) -> float:
    """A DATETIME from SQLite (ISO text) or Postgres (datetime) as unix seconds; 0 when none."""
    if value is None:
        return 0.0
    if isinstance(value, str):
        from datetime import timezone

        parsed = datetime.fromisoformat(value.replace(" ", "T"))
        value = parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    return value.timestamp()


def _num(value: Any) -> float:
    return 0.0 if value is None else float(value)


def _bucket_counts(bounds: Iterable[float], cumulative: list[int], count: int) -> list[tuple[str, float]]:
    """HistogramMetricFamily buckets: cumulative counts per upper bound, then +Inf."""
    buckets = [(_le(b), float(n)) for b, n in zip(bounds, cumulative)]
    buckets.append(("+Inf", float(count)))
    return buckets


def _le(bound: float) -> str:
    # Prometheus client libraries print bounds as floats ("1.0", "0.05"); keep that form so
    # le labels match across exporters.
    return repr(float(bound))


def _histogram_sums(value, bounds: Iterable[float], scale: float = 1.0) -> list:
    """SUM(CASE WHEN value <= bound THEN 1 ELSE 0 END) for every bound (scale: value units per second)."""
    return [func.sum(case((value <= bound * scale, 1), else_=0)) for bound in bounds]


class HttpMetrics:
    """This server's own traffic; ``handler`` is the route, never the raw path (bounded cardinality)."""

    def __init__(self, registry: CollectorRegistry):
        self.requests = Counter(
            "calibr_http_requests_total",
            "HTTP requests answered by the calibr monitoring server.",
            ["handler", "method", "code"],
            registry=registry,
        )
        self.duration = Histogram(
            "calibr_http_request_duration_seconds",
            "Time to answer an HTTP request of the calibr monitoring server.",
            ["handler"],
            buckets=HTTP_DURATION_BUCKETS,
            registry=registry,
        )

    def observe(self, handler: str, method: str, code: int, seconds: float) -> None:
        self.requests.labels(handler=handler, method=method, code=str(code)).inc()
        self.duration.labels(handler=handler).observe(seconds)


class CalibrCollector(Collector):
    """Reads the warehouse and the Dagster instance on every ``collect()``."""

    def __init__(
        self,
        warehouse_url: str,
        *,
        instance: Any | None = None,
        query_duration: Histogram | None = None,
        engine: Engine | None = None,
        clock: Callable[[], datetime] = utcnow,
        instance_lock: threading.Lock | None = None,
        schedule_names: Iterable[str] = SCHEDULE_NAMES,
    ):
        self.warehouse_url = warehouse_url
        self.instance = instance
        self.engine = engine
        self.query_duration = query_duration
        self.clock = clock
        self.schedule_names = tuple(schedule_names)
        self._lock = threading.Lock()  # one scrape at a time reads the warehouse
        self.instance_lock = instance_lock or threading.Lock()

    def describe(self) -> list[Metric]:
        # Families depend on the data; an empty describe keeps registration from calling collect().
        return []

    def _engine(self) -> Engine:
        if self.engine is None:
            self.engine = monitoring_engine(self.warehouse_url)
        return self.engine

    # -- collect ------------------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            families: list[Metric] = []
            try:
                families.extend(self._collect_warehouse())
            except Exception:
                log.exception("warehouse metrics failed")
                families.append(_gauge("calibr_warehouse_up", "1 when every warehouse query of this scrape succeeded.", value=0))
            try:
                families.extend(self._collect_dagster())
            except Exception:
                log.exception("Dagster instance metrics failed")
        yield from families

    def _collect_warehouse(self) -> list[Metric]:
        families: list[Metric] = []
        started = time.perf_counter()
        up = 1
        missing = sqlite_file_missing(self.warehouse_url)
        if missing:
            log.warning("warehouse file %s does not exist", missing)
            up = 0
        else:
            try:
                with self._engine().connect() as connection:
                    connection.execute(text("SELECT 1"))
                    tables = set(inspect(connection).get_table_names())
                    now = self.clock()
                    for section in (
                        self._rule_runs,
                        self._rule_targets,
                        self._dlq,
                        self._scrapes,
                        self._connectors,
                        self._shopify,
                        self._outbox,
                        self._probes,
                        self._events,
                        self._stripe,
                        self._analytics,
                    ):
                        try:
                            families.extend(section(connection, tables, now))
                        except Exception as exc:  # noqa: BLE001
                            up = 0
                            log.warning("metrics section %s failed: %s", section.__name__, describe_error(exc))
                            connection.rollback()  # Postgres: leave the aborted transaction
            except Exception as exc:  # noqa: BLE001
                up = 0
                log.warning("warehouse unreachable: %s", describe_error(exc))
        if self.query_duration is not None:
            self.query_duration.observe(time.perf_counter() - started)
        families.append(_gauge("calibr_warehouse_up", "1 when every warehouse query of this scrape succeeded.", value=up))
        return families

    # -- pricing ------------------------------------------------------------------------------

    def _rule_runs(self, connection: Connection, _tables: set[str], now: datetime) -> list[Metric]:
        runs = GaugeMetricFamily("calibr_rule_runs", "Rule runs by state.", labels=["tenant", "state"])
        for tenant, state, count in connection.execute(
            select(Tenant.slug, RuleRun.state, func.count())
            .join(Tenant, Tenant.id == RuleRun.tenant_id)
            .group_by(Tenant.slug, RuleRun.state)
            .order_by(Tenant.slug, RuleRun.state)
        ):
            runs.add_metric([tenant, state], count)

        duration = HistogramMetricFamily(
            "calibr_rule_run_duration_seconds",
            "Duration of finished rule runs (started to completed/failed), from rule_run_metrics.",
            labels=["tenant"],
        )
        seconds = cast(RuleRunMetrics.duration_seconds, Numeric)
        for tenant, total, count, *cumulative in connection.execute(
            select(Tenant.slug, func.sum(seconds), func.count(), *_histogram_sums(seconds, RULE_RUN_DURATION_BUCKETS))
            .join(Tenant, Tenant.id == RuleRunMetrics.tenant_id)
            .where(RuleRunMetrics.duration_seconds.is_not(None), RuleRunMetrics.state.in_(FINISHED_RUN_STATES))
            .group_by(Tenant.slug)
            .order_by(Tenant.slug)
        ):
            duration.add_metric(
                [tenant], _bucket_counts(RULE_RUN_DURATION_BUCKETS, [int(c or 0) for c in cumulative], int(count)), _num(total)
            )

        ratio = GaugeMetricFamily(
            "calibr_rule_apply_success_ratio",
            "Applied / write targets over rule runs finished in the last 24 hours (absent without such targets).",
            labels=["tenant"],
        )
        since = now - SUCCESS_RATIO_WINDOW
        for tenant, writes, applied in connection.execute(
            select(Tenant.slug, func.count(), func.sum(case((RuleTarget.state == "APPLIED", 1), else_=0)))
            .select_from(RuleTarget)
            .join(RuleRun, RuleRun.id == RuleTarget.run_id)
            .join(Tenant, Tenant.id == RuleRun.tenant_id)
            .where(
                RuleTarget.action == "write",
                RuleRun.state.in_(FINISHED_RUN_STATES),
                # coalesce() loses the column type on SQLite; compare each column instead
                ((RuleRun.completed_at.is_not(None)) & (RuleRun.completed_at >= since))
                | ((RuleRun.completed_at.is_(None)) & (RuleRun.failed_at >= since)),
            )
            .group_by(Tenant.slug)
            .order_by(Tenant.slug)
        ):
            if writes:
                ratio.add_metric([tenant], _num(applied) / writes)
        return [runs, duration, ratio]

    def _rule_targets(self, connection: Connection, _tables: set[str], _now: datetime) -> list[Metric]:
        targets = GaugeMetricFamily(
            "calibr_rule_targets", "Write targets of rule runs by state (skip targets have no state).", labels=["tenant", "state"]
        )
        for tenant, state, count in connection.execute(
            select(Tenant.slug, RuleTarget.state, func.count())
            .join(Tenant, Tenant.id == RuleTarget.tenant_id)
            .where(RuleTarget.state.is_not(None))
            .group_by(Tenant.slug, RuleTarget.state)
            .order_by(Tenant.slug, RuleTarget.state)
        ):
            targets.add_metric([tenant, state], count)
        return [targets]

    def _dlq(self, connection: Connection, _tables: set[str], _now: datetime) -> list[Metric]:
        dlq = GaugeMetricFamily(
            "calibr_dlq_size", "Unresolved price-write dead letters (0 for every project without any).", labels=["tenant", "project"]
        )
        sizes = {
            (tenant, project): count
            for tenant, project, count in connection.execute(
                select(Tenant.slug, Project.slug, func.count())
                .select_from(DeadLetter)
                .join(RuleRun, RuleRun.id == DeadLetter.run_id)
                .join(Project, Project.id == RuleRun.project_id)
                .join(Tenant, Tenant.id == Project.tenant_id)
                .where(DeadLetter.resolved_at.is_(None))
                .group_by(Tenant.slug, Project.slug)
            )
        }
        for tenant, project in connection.execute(select(Tenant.slug, Project.slug).join(Tenant, Tenant.id == Project.tenant_id)):
            sizes.setdefault((tenant, project), 0)
        for (tenant, project), count in sorted(sizes.items()):
            dlq.add_metric([tenant, project], count)
        return [dlq]

    # -- competitor monitoring ----------------------------------------------------------------

    def _scrapes(self, connection: Connection, _tables: set[str], _now: datetime) -> list[Metric]:
        o = CompetitorPriceObservation
        scrapes = CounterMetricFamily(
            "calibr_competitor_scrapes",
            "Competitor fetch outcomes recorded in competitor_price_observations (re-scraping a day replaces its rows).",
            labels=["tenant", "outcome", "error_class"],
        )
        for tenant, status, error_class, count in connection.execute(
            select(Tenant.slug, o.status, o.error_class, func.count())
            .join(Tenant, Tenant.id == o.tenant_id)
            .group_by(Tenant.slug, o.status, o.error_class)
            .order_by(Tenant.slug, o.status, o.error_class)
        ):
            outcome = "ok" if status == "ok" else "error"
            scrapes.add_metric([tenant, outcome, "" if outcome == "ok" else (error_class or "unknown")], count)

        failures = GaugeMetricFamily(
            "calibr_competitor_listing_consecutive_failures",
            "Failed fetches of an active listing since its last successful one (listings with at least one).",
            labels=["tenant", "listing_id"],
        )
        last_ok = (
            select(o.listing_id.label("listing_id"), func.max(o.fetched_at).label("last_ok"))
            .where(o.status == "ok")
            .group_by(o.listing_id)
            .subquery()
        )
        for tenant, listing_id, count in connection.execute(
            select(Tenant.slug, o.listing_id, func.count())
            .join(Tenant, Tenant.id == o.tenant_id)
            .join(CompetitorListing, and_(CompetitorListing.id == o.listing_id, CompetitorListing.active.is_(True)))
            .outerjoin(last_ok, last_ok.c.listing_id == o.listing_id)
            .where(o.status != "ok", (last_ok.c.last_ok.is_(None)) | (o.fetched_at > last_ok.c.last_ok))
            .group_by(Tenant.slug, o.listing_id)
            .order_by(Tenant.slug, o.listing_id)
        ):
            failures.add_metric([tenant, str(listing_id)], count)
        return [scrapes, failures]

    # -- connectors ---------------------------------------------------------------------------

    def _connectors(self, connection: Connection, tables: set[str], _now: datetime) -> list[Metric]:
        requests = CounterMetricFamily(
            "calibr_connector_requests",
            "Requests of the outbound connectors by HTTP status class (2xx, 4xx, 5xx, 429, throttled, error).",
            labels=["connector", "status"],
        )
        duration = HistogramMetricFamily(
            "calibr_connector_request_duration_seconds", "Duration of outbound connector requests.", labels=["connector"]
        )
        recorded = connector_stats.read_totals(connection) if connector_stats.TABLE_NAME in tables else None
        recorded_connectors = {c for c, _s in recorded.requests} if recorded else set()

        for connector in connector_stats.CONNECTORS:
            if connector in recorded_connectors:
                for (c, status), count in sorted(recorded.requests.items()):
                    if c == connector:
                        requests.add_metric([connector, status], count)
                cumulative, total, count = recorded.durations.get(connector, ([0] * len(CONNECTOR_DURATION_BUCKETS), 0.0, 0))
                duration.add_metric([connector], _bucket_counts(CONNECTOR_DURATION_BUCKETS, cumulative, count), total)
            elif connector == "storefront":
                self._storefront_from_observations(connection, requests, duration)
        return [requests, duration]

    @staticmethod
    def _storefront_from_observations(connection: Connection, requests: CounterMetricFamily, duration: HistogramMetricFamily) -> None:
        """One request per fetch that sent any (attempts >= 1), with its final HTTP status class."""
        o = CompetitorPriceObservation
        klass = case(
            (o.http_status.is_(None), literal_column("'error'")),
            (o.http_status == 429, literal_column("'429'")),
            (o.http_status < 300, literal_column("'2xx'")),
            (o.http_status < 400, literal_column("'3xx'")),
            (o.http_status < 500, literal_column("'4xx'")),
            else_=literal_column("'5xx'"),
        ).label("klass")
        sent = o.attempts >= 1
        for status, count in connection.execute(
            select(klass, func.count()).where(sent).group_by(klass).order_by(klass)
        ):
            requests.add_metric(["storefront", status], count)
        row = connection.execute(
            select(func.sum(o.elapsed_ms), func.count(), *_histogram_sums(o.elapsed_ms, CONNECTOR_DURATION_BUCKETS, scale=1000))
            .where(sent, o.elapsed_ms.is_not(None))
        ).one()
        total_ms, count, *cumulative = row
        if count:
            duration.add_metric(
                ["storefront"], _bucket_counts(CONNECTOR_DURATION_BUCKETS, [int(c or 0) for c in cumulative], int(count)), _num(total_ms) / 1000
            )

    def _shopify(self, connection: Connection, tables: set[str], _now: datetime) -> list[Metric]:
        throttled = CounterMetricFamily(
            "calibr_shopify_throttled",
            "THROTTLED answers of the Shopify Admin API during price writes (rule_run_metrics.throttled_count).",
            labels=["tenant"],
        )
        for tenant, count in connection.execute(
            select(Tenant.slug, func.sum(RuleRunMetrics.throttled_count))
            .join(Tenant, Tenant.id == RuleRunMetrics.tenant_id)
            .group_by(Tenant.slug)
            .order_by(Tenant.slug)
        ):
            throttled.add_metric([tenant], _num(count))
        rate_limited = CounterMetricFamily(
            "calibr_shopify_rate_limited",
            "HTTP 429 answers of the Shopify Admin API (from connector_request_stats; absent until runs record them).",
            labels=["tenant"],
        )
        if connector_stats.TABLE_NAME in tables:
            t = connector_stats.connector_request_stats
            for tenant, count in connection.execute(
                select(func.coalesce(Tenant.slug, ""), func.sum(t.c["count"]))
                .select_from(t)
                .outerjoin(Tenant, Tenant.id == t.c.tenant_id)
                .where(t.c.connector == "shopify_admin", t.c.status == "429")
                .group_by(Tenant.slug)
                .order_by(Tenant.slug)
            ):
                rate_limited.add_metric([tenant], _num(count))
        return [throttled, rate_limited]

    # -- event bus ----------------------------------------------------------------------------

    def _outbox(self, connection: Connection, _tables: set[str], now: datetime) -> list[Metric]:
        backlog = GaugeMetricFamily("calibr_outbox_backlog", "Outbox events not yet dispatched.", labels=["event_type"])
        oldest = GaugeMetricFamily(
            "calibr_outbox_oldest_pending_age_seconds", "Age of the oldest undispatched outbox event (0 when none).", labels=["event_type"]
        )
        pending = {
            event_type: (count, first)
            for event_type, count, first in connection.execute(
                select(OutboxEvent.event_type, func.count(), func.min(OutboxEvent.created_at))
                .where(OutboxEvent.dispatched_at.is_(None))
                .group_by(OutboxEvent.event_type)
            )
        }
        event_types = set(connection.scalars(select(OutboxEvent.event_type).distinct())) | set(pending)
        for event_type in sorted(event_types):
            count, first = pending.get(event_type, (0, None))
            backlog.add_metric([event_type], count)
            oldest.add_metric([event_type], max(0.0, (now - first).total_seconds()) if first is not None else 0.0)
        return [backlog, oldest]

    # -- synthetic probes (table owned by the prober) -----------------------------------------

    def _probes(self, connection: Connection, tables: set[str], _now: datetime) -> list[Metric]:
        if PROBE_TABLE not in tables:
            return []
        shape = probe_table_shape(connection)
        if shape is None:
            log.debug("%s has no recognisable columns; skipped", PROBE_TABLE)
            return []
        success = GaugeMetricFamily("calibr_probe_success", "1 when the newest synthetic probe of the target succeeded.", labels=["target"])
        duration = GaugeMetricFamily("calibr_probe_duration_seconds", "Duration of the newest synthetic probe of the target.", labels=["target"])
        newest = {str(target): (ok, elapsed) for target, ok, elapsed in connection.execute(text(shape.newest_sql()))}
        for target, (ok, elapsed) in sorted(newest.items()):  # one sample per target even on timestamp ties
            success.add_metric([target], 1.0 if _truthy(ok) else 0.0)
            if elapsed is not None:
                duration.add_metric([target], float(elapsed) * shape.duration_scale)
        return [success, duration]

    # -- events registry and archive (issue 11) ------------------------------------------------

    def _events(self, connection: Connection, tables: set[str], _now: datetime) -> list[Metric]:
        if "event_archives" not in tables:
            return []
        rows = GaugeMetricFamily("calibr_event_archive_rows", "Event rows held in cold-storage archives (not restored).", labels=["table"])
        newest = GaugeMetricFamily("calibr_event_archive_last_success_timestamp_seconds", "When the newest archive file was committed (0: never).")
        latest = 0.0
        for table, count, last in connection.execute(
            text("SELECT source_table, COALESCE(SUM(row_count), 0), MAX(archived_at) FROM event_archives WHERE state = 'archived' GROUP BY source_table")
        ):
            rows.add_metric([table], _num(count))
            stamp = _timestamp(last)
            latest = max(latest, stamp)
        newest.add_metric([], latest)
        return [rows, newest]

    # -- Stripe connector (issue 11; tables exist whatever STRIPE_CONNECT_ENABLED says) --------

    def _stripe(self, connection: Connection, tables: set[str], _now: datetime) -> list[Metric]:
        if "stripe_sync_runs" not in tables:
            return []
        runs = CounterMetricFamily("calibr_stripe_sync_runs", "Stripe account-day syncs by outcome.", labels=["tenant", "outcome"])
        duration = HistogramMetricFamily("calibr_stripe_sync_duration_seconds", "Time to sync one Stripe account's day (latency).", labels=["tenant"])
        samples: dict[str, list[float]] = {}
        outcomes: dict[tuple[str, str], int] = {}
        for tenant, error, seconds in connection.execute(
            text("SELECT t.slug, r.error, r.seconds FROM stripe_sync_runs r JOIN tenants t ON t.id = r.tenant_id")
        ):
            samples.setdefault(tenant, []).append(float(seconds))
            key = (tenant, "error" if error else "ok")
            outcomes[key] = outcomes.get(key, 0) + 1
        for tenant in sorted(samples):
            for outcome in ("ok", "error"):
                runs.add_metric([tenant, outcome], float(outcomes.get((tenant, outcome), 0)))
            values = samples[tenant]
            buckets = [(_le(b), float(sum(1 for x in values if x <= b))) for b in STRIPE_SYNC_BUCKETS] + [("+Inf", float(len(values)))]
            duration.add_metric([tenant], buckets, sum(values))
        backlog = GaugeMetricFamily("calibr_stripe_webhook_backlog", "Verified Stripe webhook events waiting in the outbox for the sync sensor.")
        backlog.add_metric([], _num(connection.execute(
            text("SELECT COUNT(*) FROM outbox WHERE event_type = 'stripe.webhook.received' AND dispatched_at IS NULL")).scalar()))
        counted = dict(connection.execute(text("SELECT reason, COUNT(*) FROM stripe_webhook_rejections GROUP BY reason")).all())
        failures = CounterMetricFamily("calibr_stripe_webhook_signature_failures", "Stripe webhook requests refused before being trusted.", labels=["reason"])
        for reason in sorted({"signature", "timestamp", "body"} | set(counted)):
            failures.add_metric([reason], _num(counted.get(reason, 0)))
        events = CounterMetricFamily("calibr_stripe_webhook_events", "Verified Stripe webhook events by outcome.", labels=["status"])
        for status, count in connection.execute(text("SELECT status, COUNT(*) FROM stripe_webhook_events GROUP BY status")):
            events.add_metric([status], _num(count))
        return [runs, duration, backlog, failures, events]

    # -- analytics (issue 8: the dbt models' tables, once the analytics_models job has built them) --

    def _analytics(self, connection: Connection, tables: set[str], now: datetime) -> list[Metric]:
        """Per project: revenue, gross margin %, price index and units of the last complete day
        (the latest day of ``analytics_overview`` before today, UTC) and of the 7 days ending on it."""
        if not {"analytics_overview", "sales_daily"} <= tables:
            return []
        from datetime import date as _date
        from datetime import timezone

        from sqlalchemy import Date, bindparam

        from calibr_pipeline.domain.money import minor_unit_exponent

        labels = ["tenant", "project", "window"]
        revenue = GaugeMetricFamily(
            "calibr_analytics_revenue", "Revenue (gross - discounts - refunds) in the project currency, last complete day (1d) and the 7 days ending on it (7d).",
            labels=["tenant", "project", "currency", "window"],
        )
        margin = GaugeMetricFamily(
            "calibr_analytics_gross_margin_percent", "Gross margin in % of revenue, over the SKUs with a known cost (no sample without such revenue).", labels=labels
        )
        index = GaugeMetricFamily(
            "calibr_analytics_price_index", "Our price / median competitor price, mean over SKUs with market data (1 = at the market); 7d: mean of the daily indices.", labels=labels
        )
        units = GaugeMetricFamily("calibr_analytics_units", "Units sold and kept (net of refunds).", labels=labels)
        last_day = GaugeMetricFamily(
            "calibr_analytics_last_complete_day_timestamp_seconds", "Start (00:00 UTC) of the last complete day the analytics models hold for the project.",
            labels=["tenant", "project"],
        )

        def day(value: Any) -> _date:
            return value if isinstance(value, _date) else _date.fromisoformat(str(value)[:10])

        today = bindparam("today", now.date(), type_=Date)
        latest = {
            project_id: day(last)
            for project_id, last in connection.execute(
                text("SELECT project_id, MAX(day) FROM analytics_overview WHERE day < :today GROUP BY project_id").bindparams(today)
            )
            if last is not None
        }
        if not latest:
            return [revenue, margin, index, units, last_day]
        since = bindparam("since", min(latest.values()) - timedelta(days=6), type_=Date)
        overview = connection.execute(
            text(
                "SELECT o.project_id, t.slug, p.slug, p.currency, o.day, o.units, o.revenue_minor, o.price_index "
                "FROM analytics_overview o JOIN projects p ON p.id = o.project_id JOIN tenants t ON t.id = p.tenant_id "
                "WHERE o.day >= :since AND o.day < :today"
            ).bindparams(since, today)
        ).all()
        margins = {
            (project_id, day(d)): (_num(m), _num(r))
            for project_id, d, m, r in connection.execute(
                text(
                    "SELECT project_id, day, SUM(margin_minor), SUM(CASE WHEN margin_minor IS NOT NULL THEN revenue_minor END) "
                    "FROM sales_daily WHERE day >= :since AND day < :today GROUP BY project_id, day"
                ).bindparams(since, today)
            )
        }
        windows: dict[tuple, dict[str, list]] = {}
        names: dict[int, tuple[str, str, str]] = {}
        for project_id, tenant, project, currency, d, n, rev, pi in overview:
            d, end = day(d), latest.get(project_id)
            if end is None or d > end or d < end - timedelta(days=6):
                continue
            names[project_id] = (tenant, project, currency)
            m, r = margins.get((project_id, d), (0.0, 0.0))
            for window in (("1d",) if d == end else ()) + ("7d",):
                acc = windows.setdefault((project_id, window), {"units": [], "revenue": [], "margin": [], "with_cost": [], "index": []})
                acc["units"].append(_num(n))
                acc["revenue"].append(_num(rev))
                acc["margin"].append(m)
                acc["with_cost"].append(r)
                if pi is not None:
                    acc["index"].append(float(pi))
        for (project_id, window), acc in sorted(windows.items(), key=lambda kv: (names[kv[0][0]], kv[0][1])):
            tenant, project, currency = names[project_id]
            divisor = 10 ** (0 if minor_unit_exponent(currency) == 0 else 2)  # as the models' minor_units macro
            revenue.add_metric([tenant, project, currency, window], sum(acc["revenue"]) / divisor)
            units.add_metric([tenant, project, window], sum(acc["units"]))
            if sum(acc["with_cost"]) > 0:
                margin.add_metric([tenant, project, window], round(100 * sum(acc["margin"]) / sum(acc["with_cost"]), 2))
            if acc["index"]:
                index.add_metric([tenant, project, window], round(sum(acc["index"]) / len(acc["index"]), 4))
            if window == "1d":
                end = latest[project_id]
                last_day.add_metric([tenant, project], datetime(end.year, end.month, end.day, tzinfo=timezone.utc).timestamp())
        return [revenue, margin, index, units, last_day]

    # -- Dagster ------------------------------------------------------------------------------

    def _collect_dagster(self) -> list[Metric]:
        if self.instance is None:
            return []
        with self.instance_lock:
            facts = dagster_facts(self.instance, self.schedule_names)
        families: list[Metric] = []
        last = GaugeMetricFamily(
            "calibr_schedule_last_success_timestamp_seconds",
            "End time (Unix seconds) of the newest successful run launched by the schedule.",
            labels=["schedule"],
        )
        for name, timestamp in sorted(facts["schedule_last_success"].items()):
            if timestamp is not None:
                last.add_metric([name], timestamp)
        families.append(last)
        families.append(_gauge("calibr_dagster_queued_runs", "Runs waiting in the Dagster run queue.", value=facts["queued_runs"]))
        if facts["heartbeat_age_seconds"] is not None:
            families.append(
                _gauge(
                    "calibr_dagster_daemon_heartbeat_age_seconds",
                    "Seconds since the stalest required Dagster daemon last sent a heartbeat.",
                    value=facts["heartbeat_age_seconds"],
                )
            )
        return families


def _gauge(name: str, documentation: str, *, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "t", "true", "ok", "success", "up", "yes")
    return bool(value)


class ProbeTableShape:
    TARGET = ("target", "probe", "name")
    SUCCESS = ("success", "ok", "up", "succeeded")
    DURATION = (("duration_seconds", 1.0), ("elapsed_seconds", 1.0), ("duration_ms", 0.001), ("elapsed_ms", 0.001), ("latency_ms", 0.001))
    ORDER = ("probed_at", "checked_at", "finished_at", "observed_at", "created_at", "timestamp", "id")

    def __init__(self, target: str, success: str, duration: str | None, duration_scale: float, order: str):
        self.target, self.success, self.duration, self.duration_scale, self.order = target, success, duration, duration_scale, order

    def newest_sql(self) -> str:
        # Column names come from the allow-lists above, never from the data.
        duration = f"p.{self.duration}" if self.duration else "NULL"
        return (
            f"SELECT p.{self.target}, p.{self.success}, {duration} FROM {PROBE_TABLE} p "
            f"JOIN (SELECT {self.target} AS t, MAX({self.order}) AS newest FROM {PROBE_TABLE} GROUP BY {self.target}) n "
            f"ON n.t = p.{self.target} AND n.newest = p.{self.order} ORDER BY p.{self.target}, p.{self.order}"
        )


def probe_table_shape(connection: Connection) -> ProbeTableShape | None:
    columns = {c["name"].lower() for c in inspect(connection).get_columns(PROBE_TABLE)}
    target = next((c for c in ProbeTableShape.TARGET if c in columns), None)
    success = next((c for c in ProbeTableShape.SUCCESS if c in columns), None)
    order = next((c for c in ProbeTableShape.ORDER if c in columns), None)
    if not (target and success and order):
        return None
    duration, scale = next(((c, s) for c, s in ProbeTableShape.DURATION if c in columns), (None, 1.0))
    return ProbeTableShape(target, success, duration, scale, order)


def known_schedule_names(instance: Any) -> set[str]:
    """Schedules the instance has state for (started or stopped once); empty if it cannot say."""
    try:
        from dagster._core.scheduler.instigation import InstigatorType

        return {state.instigator_name for state in instance.all_instigator_state(instigator_type=InstigatorType.SCHEDULE)}
    except Exception:
        log.debug("could not list schedule states", exc_info=True)
        return set()


def dagster_facts(instance: Any, schedule_names: Iterable[str] = SCHEDULE_NAMES, *, include_schedules: bool = True) -> dict[str, Any]:
    """Schedule last successes, queued runs and daemon heartbeat age from a Dagster instance."""
    from dagster import DagsterRunStatus, RunsFilter

    names = set(schedule_names) | (known_schedule_names(instance) if include_schedules else set())
    last_success: dict[str, float | None] = {}
    for name in sorted(names):
        records = instance.get_run_records(
            RunsFilter(statuses=[DagsterRunStatus.SUCCESS], tags={"dagster/schedule_name": name}), limit=1
        )
        record = records[0] if records else None
        last_success[name] = None if record is None else (record.end_time or record.update_timestamp.timestamp())
    queued = instance.get_runs_count(RunsFilter(statuses=[DagsterRunStatus.QUEUED]))
    return {
        "schedule_last_success": last_success,
        "queued_runs": queued,
        "heartbeat_age_seconds": heartbeat_age(instance),
        "heartbeats": heartbeat_ages(instance),
    }


def heartbeat_ages(instance: Any) -> dict[str, float]:
    now = time.time()
    return {str(kind): max(0.0, now - beat.timestamp) for kind, beat in instance.get_daemon_heartbeats().items()}


def heartbeat_age(instance: Any) -> float | None:
    """Age of the stalest heartbeat among the required daemons (any daemon if none is required); None without heartbeats."""
    ages = heartbeat_ages(instance)
    if not ages:
        return None
    try:
        required = set(instance.get_required_daemon_types())
    except Exception:  # noqa: BLE001
        required = set()
    relevant = [age for kind, age in ages.items() if kind in required] or list(ages.values())
    return max(relevant)


def build_registry(
    warehouse_url: str,
    *,
    instance: Any | None = None,
    instance_lock: threading.Lock | None = None,
    engine: Engine | None = None,
) -> tuple[CollectorRegistry, HttpMetrics, CalibrCollector]:
    """A fresh registry (not the process-global one) with the collector and the HTTP metrics."""
    registry = CollectorRegistry(auto_describe=False)
    query_duration = Histogram(
        "calibr_warehouse_query_duration_seconds",
        "Time the collector spent reading the warehouse for one scrape.",
        buckets=WAREHOUSE_QUERY_BUCKETS,
        registry=None,
    )
    collector = CalibrCollector(
        warehouse_url, instance=instance, query_duration=query_duration, engine=engine, instance_lock=instance_lock
    )
    registry.register(collector)  # first: its query timing is in the same scrape's histogram
    registry.register(_SingleMetric(query_duration))
    http = HttpMetrics(registry)
    return registry, http, collector


class _SingleMetric(Collector):
    """Registers a metric object after the collector so the registry reads it later."""

    def __init__(self, metric: Histogram):
        self.metric = metric

    def collect(self) -> Iterable[Metric]:
        return self.metric.collect()

    def describe(self) -> list[Metric]:
        return []


__all__ = [
    "CONNECTOR_DURATION_BUCKETS",
    "RULE_RUN_DURATION_BUCKETS",
    "SCHEDULE_NAMES",
    "CalibrCollector",
    "HttpMetrics",
    "build_registry",
    "dagster_facts",
    "heartbeat_age",
]

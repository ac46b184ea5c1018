"""Liveness and dependency health for ``calibr serve``.

``/health`` says only that the process answers. ``/health/detailed`` checks each
dependency and reports it under ``checks``:

* ``database``: ``SELECT 1`` on the warehouse and its Alembic revision against the head
  this code expects;
* ``connectors``: one cheap authenticated GraphQL query (``{ shop { currencyCode } }``)
  per configured Shopify shop, in parallel, each with a short timeout;
* ``event_bus``: outbox backlog, age of the oldest undispatched event, dead letters;
* ``worker_queue``: Dagster daemon heartbeat age and queued runs (``skipped`` without a
  Dagster instance).

Each check has ``"ok": true|false`` (or ``"skipped": true``) and, when not ok, a one-line
``reason``. Any failed check makes the overall ``status`` ``"degraded"`` (and lists the
failing checks under ``failing``). The server answers 200 either way, so a degraded
dependency is not counted as a server error (``?strict=1`` makes it 503). No check raises.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine

from calibr_pipeline.monitoring._engine import (
    describe_error,
    monitoring_engine,
    sqlite_file_missing,
)
from calibr_pipeline.warehouse.models import (
    OutboxDeadLetter,
    OutboxEvent,
    Project,
    Shop,
)
from calibr_pipeline.warehouse.types import utcnow

log = logging.getLogger(__name__)

SHOP_QUERY = "query CalibrHealth { shop { currencyCode } }"


@dataclass(frozen=True)
class HealthThresholds:
    shop_timeout_s: float = 2.0  # connect and read timeout of each shop check
    max_shops: int = 50  # shops checked per call (the rest are reported as not checked)
    shop_workers: int = 8
    outbox_max_pending_age_s: float = 600.0  # older undispatched events: sensors are not keeping up
    heartbeat_max_age_s: float = 120.0  # Dagster's own "daemon not running" threshold is 60-120 s
    connectors_cache_s: float = 5.0  # shop checks are reused for this long (0: always fresh)


DEFAULT_THRESHOLDS = HealthThresholds()


def iso_now() -> str:
    return datetime.now(UTC).isoformat()


def liveness() -> dict[str, Any]:
    return {"status": "healthy", "timestamp": iso_now()}


def expected_revision(warehouse_url: str) -> str | None:
    """The Alembic head this code expects (no database access)."""
    try:
        from alembic.script import ScriptDirectory

        from calibr_pipeline.warehouse.engine import alembic_config

        return ScriptDirectory.from_config(alembic_config(warehouse_url)).get_current_head()
    except Exception:
        log.debug("cannot read the Alembic head", exc_info=True)
        return None


class HealthChecker:
    def __init__(
        self,
        warehouse_url: str,
        *,
        instance: Any | None = None,
        instance_lock: threading.Lock | None = None,
        engine: Engine | None = None,
        thresholds: HealthThresholds = DEFAULT_THRESHOLDS,
        clock: Callable[[], datetime] = utcnow,
        http: requests.Session | None = None,
    ):
        self.warehouse_url = warehouse_url
        self.instance = instance
        self.instance_lock = instance_lock or threading.Lock()
        self.engine = engine or monitoring_engine(warehouse_url)
        self.thresholds = thresholds
        self.clock = clock
        self.http = http
        self.head = expected_revision(warehouse_url)
        self._cache_lock = threading.Lock()
        self._connectors_cache: tuple[float, dict[str, Any]] | None = None

    # -- the whole report -------------------------------------------------------------------

    def detailed(self) -> dict[str, Any]:
        checks = {
            "database": self._guard("database", self.check_database),
            "connectors": self._guard("connectors", self.check_connectors),
            "event_bus": self._guard("event_bus", self.check_event_bus),
            "worker_queue": self._guard("worker_queue", self.check_worker_queue),
        }
        failing = [name for name, check in checks.items() if check.get("ok") is False]
        report: dict[str, Any] = {"status": "degraded" if failing else "healthy", "timestamp": iso_now(), "checks": checks}
        if failing:
            report["failing"] = failing
        return report

    @staticmethod
    def _guard(name: str, check: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        try:
            return check()
        except Exception as exc:  # noqa: BLE001 - a check reports, it never raises
            log.warning("health check %s failed: %s", name, describe_error(exc))
            return {"ok": False, "reason": describe_error(exc)}

    # -- database ---------------------------------------------------------------------------

    def check_database(self) -> dict[str, Any]:
        missing = sqlite_file_missing(self.warehouse_url)
        if missing:
            return {"ok": False, "reason": f"warehouse file does not exist: {missing}"}
        started = time.perf_counter()
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
                latency_ms = round((time.perf_counter() - started) * 1000, 1)
                try:
                    revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
                except Exception:  # noqa: BLE001 - no alembic_version table: never migrated
                    connection.rollback()
                    revision = None
        except Exception as exc:  # noqa: BLE001
            return {"ok": False, "reason": f"cannot reach the warehouse: {describe_error(exc)}", "backend": self.engine.dialect.name}
        result: dict[str, Any] = {
            "ok": True,
            "backend": self.engine.dialect.name,
            "latency_ms": latency_ms,
            "revision": revision,
            "expected_revision": self.head,
        }
        if revision is None:
            result.update(ok=False, reason="the warehouse has no schema (run `calibr db upgrade`)")
        elif self.head is not None and revision != self.head:
            result.update(ok=False, reason=f"schema at revision {revision}, this code expects {self.head} (run `calibr db upgrade`)")
        return result

    # -- connectors -------------------------------------------------------------------------

    def check_connectors(self) -> dict[str, Any]:
        ttl = self.thresholds.connectors_cache_s
        with self._cache_lock:
            cached = self._connectors_cache
            if cached is not None and ttl > 0 and time.monotonic() - cached[0] < ttl:
                return cached[1]
        result = self._check_connectors()
        with self._cache_lock:
            self._connectors_cache = (time.monotonic(), result)
        return result

    def _check_connectors(self) -> dict[str, Any]:
        try:
            with self.engine.connect() as connection:
                shops = connection.execute(
                    select(Project.slug, Shop.name, Shop.admin_endpoint, Shop.api_version, Shop.access_token, Shop.currency)
                    .join(Project, Project.id == Shop.project_id)
                    .where(Shop.platform == "shopify")
                    .order_by(Project.slug, Shop.name)
                ).all()
        except Exception as exc:  # noqa: BLE001
            return {"ok": False, "reason": f"cannot list shops: {describe_error(exc)}", "shops": {}}
        checked = shops[: self.thresholds.max_shops]
        results: dict[str, dict[str, Any]] = {}
        if checked:
            with ThreadPoolExecutor(max_workers=min(self.thresholds.shop_workers, len(checked)), thread_name_prefix="calibr-health") as pool:
                futures = {f"{shop[0]}/{shop[1]}": pool.submit(self.check_shop, *shop) for shop in checked}
                for key, future in futures.items():
                    results[key] = future.result()
        unreachable = sorted(key for key, r in results.items() if not r["reachable"])
        summary: dict[str, Any] = {"ok": not unreachable, "shops": results}
        if len(shops) > len(checked):
            summary["not_checked"] = len(shops) - len(checked)
        if unreachable:
            summary["reason"] = f"{len(unreachable)} of {len(results)} shop(s) unreachable: {', '.join(unreachable[:10])}"
        return summary

    def check_shop(
        self, _project: str, _name: str, endpoint: str | None, api_version: str | None, token: str | None, currency: str | None
    ) -> dict[str, Any]:
        """One authenticated request; the token is sent, never reported."""
        from calibr_pipeline.connectors.shopify_admin.client import (
            ACCESS_TOKEN_HEADER,
            admin_graphql_url,
        )

        if not endpoint or not token:
            return {"reachable": False, "reason": "no Admin API endpoint or access token configured"}
        url = admin_graphql_url(endpoint, api_version or "2025-01")
        timeout = self.thresholds.shop_timeout_s
        started = time.perf_counter()
        try:
            post = (self.http or requests).post
            response = post(
                url,
                data=json.dumps({"query": SHOP_QUERY, "operationName": "CalibrHealth"}),
                headers={ACCESS_TOKEN_HEADER: token, "Content-Type": "application/json", "Accept": "application/json"},
                timeout=(timeout, timeout),
                allow_redirects=False,
            )
        except requests.Timeout:
            return {"reachable": False, "reason": f"no answer within {timeout:g}s", "latency_ms": _ms(started)}
        except requests.RequestException as exc:
            return {"reachable": False, "reason": f"cannot connect: {type(exc).__name__}", "latency_ms": _ms(started)}
        result: dict[str, Any] = {"latency_ms": _ms(started), "http_status": response.status_code}
        if response.status_code in (401, 403):
            return {**result, "reachable": False, "reason": f"HTTP {response.status_code}: access token rejected"}
        if response.status_code == 429:
            # The shop answered and knows us: reachable, but our rate limit is spent.
            return {**result, "reachable": True, "rate_limited": True}
        if response.status_code >= 400:
            return {**result, "reachable": False, "reason": f"HTTP {response.status_code}"}
        try:
            payload = response.json()
        except ValueError:
            return {**result, "reachable": False, "reason": "answer is not JSON"}
        data = payload.get("data") if isinstance(payload, dict) else None
        shop = data.get("shop") if isinstance(data, dict) else None
        if not isinstance(shop, dict):
            errors = payload.get("errors") if isinstance(payload, dict) else None
            throttled = isinstance(errors, list) and any(
                isinstance(e, dict) and (e.get("extensions") or {}).get("code") == "THROTTLED" for e in errors
            )
            if throttled:
                return {**result, "reachable": True, "throttled": True}
            return {**result, "reachable": False, "reason": "answer has no shop data"}
        result.update(reachable=True, currency=shop.get("currencyCode"))
        if currency and shop.get("currencyCode") and shop["currencyCode"] != currency:
            result["currency_mismatch"] = f"configured {currency}, shop says {shop['currencyCode']}"
        return result

    # -- event bus --------------------------------------------------------------------------

    def check_event_bus(self) -> dict[str, Any]:
        now = self.clock()
        with self.engine.connect() as connection:
            backlog, oldest = connection.execute(
                select(func.count(), func.min(OutboxEvent.created_at)).where(OutboxEvent.dispatched_at.is_(None))
            ).one()
            dead_letters = connection.scalar(select(func.count()).select_from(OutboxDeadLetter)) or 0
            recent_dead = connection.scalar(
                select(func.count()).select_from(OutboxDeadLetter).where(OutboxDeadLetter.created_at >= now - timedelta(hours=24))
            ) or 0
        age = max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
        result: dict[str, Any] = {
            "ok": True,
            "outbox_backlog": int(backlog or 0),
            "oldest_pending_age_seconds": round(age, 1),
            "dead_letters": int(dead_letters),
            "dead_letters_24h": int(recent_dead),
        }
        if age > self.thresholds.outbox_max_pending_age_s:
            result.update(
                ok=False,
                reason=f"oldest undispatched outbox event is {age:.0f}s old (> {self.thresholds.outbox_max_pending_age_s:g}s): are the sensors running?",
            )
        return result

    # -- worker queue -----------------------------------------------------------------------

    def check_worker_queue(self) -> dict[str, Any]:
        if self.instance is None:
            return {"skipped": True, "reason": "no Dagster instance configured"}
        from calibr_pipeline.monitoring.metrics import dagster_facts

        with self.instance_lock:
            facts = dagster_facts(self.instance, (), include_schedules=False)
        age = facts["heartbeat_age_seconds"]
        result: dict[str, Any] = {
            "ok": True,
            "queued_runs": facts["queued_runs"],
            "daemon_heartbeat_age_seconds": None if age is None else round(age, 1),
            "daemons": {kind: round(a, 1) for kind, a in sorted(facts["heartbeats"].items())},
        }
        if age is None:
            result.update(ok=False, reason="no Dagster daemon heartbeat: schedules, sensors and the run queue are not running")
        elif age > self.thresholds.heartbeat_max_age_s:
            result.update(ok=False, reason=f"Dagster daemon heartbeat is {age:.0f}s old (> {self.thresholds.heartbeat_max_age_s:g}s)")
        return result


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)

"""Dagster resources: thin wrappers that hand configuration to the domain and connectors."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Iterator

import dagster as dg
from pydantic import PrivateAttr
from sqlalchemy.orm import Session

from calibr_pipeline import settings
from calibr_pipeline.connectors.alerts import Alert, AlertDispatcher
from calibr_pipeline.connectors.shopify_admin import ShopifyAdminClient
from calibr_pipeline.connectors.storefront import StorefrontScraper
from calibr_pipeline.domain.backoff import RetryPolicy
from calibr_pipeline.warehouse.engine import session_scope, upgrade_to_head
from calibr_pipeline.warehouse.models import AlertDelivery, Shop

_migrated: set[str] = set()
_migrated_lock = threading.Lock()


class WarehouseResource(dg.ConfigurableResource):
    """The analyst-facing warehouse. ``url`` empty means CALIBR_WAREHOUSE_URL or embedded SQLite."""

    url: str = ""

    @property
    def resolved_url(self) -> str:
        return self.url or settings.warehouse_url()

    def ensure_schema(self) -> None:
        url = self.resolved_url
        with _migrated_lock:
            if url not in _migrated:
                upgrade_to_head(url)
                _migrated.add(url)

    @contextmanager
    def session(self) -> Iterator[Session]:
        self.ensure_schema()
        with session_scope(self.resolved_url) as session:
            yield session


class ScraperResource(dg.ConfigurableResource):
    """Competitor page fetching: timeouts, retries and politeness per competitor domain."""

    connect_timeout_s: float = 3.0
    read_timeout_s: float = 10.0
    max_attempts: int = 3
    backoff_base_s: float = 2.0
    per_domain_concurrency: int = 4
    max_workers: int = 32
    # Extra hosts allowed although private/loopback (the sandbox). Joined with
    # CALIBR_SANDBOX_ALLOWED_HOSTS from the environment.
    allowed_hosts: list[str] = []

    def build(self) -> StorefrontScraper:
        return StorefrontScraper(
            timeout=(self.connect_timeout_s, self.read_timeout_s),
            retry_policy=RetryPolicy(max_attempts=self.max_attempts, base_seconds=self.backoff_base_s),
            per_domain_concurrency=self.per_domain_concurrency,
            max_workers=self.max_workers,
            allowed_hosts=tuple(self.allowed_hosts) + settings.sandbox_allowed_hosts(),
        )


class ShopifyAdminResource(dg.ConfigurableResource):
    """Builds Admin API clients for the shops stored in the warehouse."""

    timeout_s: float = 30.0
    # Multiplies the write retry waits (2/4/8 s, 16/32/64 s, Retry-After). 1.0 in
    # production; tests and benchmarks compress time with a smaller factor.
    write_wait_scale: float = 1.0

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds * self.write_wait_scale)

    def client_for(self, shop: Shop) -> ShopifyAdminClient:
        return ShopifyAdminClient(
            shop.admin_endpoint, shop.access_token, api_version=shop.api_version or "2025-01", timeout=self.timeout_s
        )


class AlertsResource(dg.ConfigurableResource):
    """Delivers alerts to Slack, a generic webhook, email and PagerDuty (configured by env vars).

    Each delivery attempt is recorded in ``alert_deliveries`` so a lost alert is visible.
    """

    _dispatcher: AlertDispatcher | None = PrivateAttr(default=None)

    def dispatcher(self) -> AlertDispatcher:
        if self._dispatcher is None:
            self._dispatcher = AlertDispatcher.from_env()
        return self._dispatcher

    def send(self, alert: Alert, warehouse: WarehouseResource, tenant_id: int | None = None) -> list:
        results = self.dispatcher().dispatch(alert)
        with warehouse.session() as session:
            for result in results:
                session.add(
                    AlertDelivery(
                        tenant_id=tenant_id,
                        severity=alert.severity,
                        title=alert.title[:500],
                        source=alert.source[:300],
                        destination=result.destination[:64],
                        ok=result.ok,
                        error=result.error,
                    )
                )
        return results

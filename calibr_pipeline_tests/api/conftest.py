"""One real API server (uvicorn on an ephemeral loopback port) per test module and backend,
over a warehouse seeded with two tenants against the sandbox shop."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
import requests
import uvicorn
from sqlalchemy import func, select, update

from calibr_pipeline.api.app import create_app
from calibr_pipeline.connectors.shopify_admin import ShopifyAdminClient
from calibr_pipeline.domain.state_machine import RunState, TargetState
from calibr_pipeline.sandbox.runner import SandboxWorld, TenantSpec
from calibr_pipeline.services import price_apply
from calibr_pipeline.services.api_tokens import create_token, revoke_token
from calibr_pipeline.services.catalog_sync import sync_shop
from calibr_pipeline.services.competitor_monitoring import register_listing
from calibr_pipeline.services.rule_runs import compute_targets, create_run, save_rule
from calibr_pipeline.warehouse.engine import get_engine, session_scope, upgrade_to_head
from calibr_pipeline.warehouse.models import (
    ApiToken,
    CompetitorPriceObservation,
    EventLog,
    OutboxEvent,
    PricingRule,
    Project,
    RuleRun,
    RuleTarget,
    Shop,
)

TENANTS = ("acme", "rival")
RAISE = {"name": "Raise 10%", "transform": {"kind": "percent_change", "value": "10"}, "scope": {"kind": "project"}}
LOWER = {"name": "Lower 5%", "transform": {"kind": "percent_change", "value": "-5"}, "scope": {"kind": "project"}}


def client_for(shop):
    return ShopifyAdminClient(shop.admin_endpoint, shop.access_token, api_version=shop.api_version or "2025-01", timeout=10)


class ApiServer:
    """uvicorn in a thread of this process, on 127.0.0.1 and a port the OS picks."""

    def __init__(self, app):
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error", access_log=False, lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@dataclass
class TenantData:
    slug: str
    tenant_id: int
    project: str
    read_token: str
    write_token: str
    write_token_id: int
    rule_id: int
    queued_run: str
    applied_run: str
    partial_run: str
    applying_run: str
    target_id: int  # a target of the applied run
    failed_target_ids: list[int]
    listing_id: int
    sku: str
    competitor_url: str


@dataclass
class ApiWorld:
    base: str
    url: str
    backend: str
    world: SandboxWorld
    tenants: dict[str, TenantData] = field(default_factory=dict)
    revoked_token: str = ""
    expired_token: str = ""
    http: requests.Session = field(default_factory=requests.Session)

    def request(self, method: str, path: str, token: str | None = None, **kwargs) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}) or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.http.request(method, self.base + path, headers=headers, timeout=30, **kwargs)

    def counts(self) -> dict[str, int]:
        """Rows of every table an API write touches: equal before and after a refused request."""
        with session_scope(self.url) as session:
            return {
                model.__tablename__: session.scalar(select(func.count()).select_from(model))
                for model in (EventLog, OutboxEvent, RuleRun, RuleTarget, PricingRule, ApiToken)
            } | {
                "targets_applying": session.scalar(select(func.count()).select_from(RuleTarget).where(RuleTarget.state == "APPLYING")),
                "listings": session.scalar(select(func.count()).select_from(CompetitorPriceObservation)),
            }


def _seed(url: str, world: SandboxWorld) -> dict[str, TenantData]:
    from calibr_pipeline.demo import seed_tenant_shops

    ids = seed_tenant_shops(url, world)
    with session_scope(url) as session:
        shops = {s.project.slug: s.id for s in session.scalars(select(Shop))}
    for slug in TENANTS:
        sync_shop(url, shops[slug], client_for)
    out = {}
    for slug in TENANTS:
        listing = world.listings_for(slug)[0]
        with session_scope(url) as session:
            added = register_listing(session, project_slug=slug, sku=listing.our_sku, url=listing.url, allowed_hosts=world.allowed_hosts,
                                     currency=listing.expected_currency, actor="test")
            project = session.scalar(select(Project).where(Project.slug == slug))
            session.add(CompetitorPriceObservation(
                tenant_id=project.tenant_id, project_id=project.id, listing_id=added.listing_id, observation_date=world.today(), url=listing.url,
                status="ok", amount=Decimal("12.34"), currency=listing.expected_currency, attempts=1, fetched_at=datetime.now(timezone.utc),
            ))
            rule = save_rule(session, project_slug=slug, definition=RAISE, actor="test")
            save_rule(session, project_slug=slug, definition=LOWER, actor="test")
            read = create_token(session, tenant_slug=slug, scope="read", actor="test")
            write = create_token(session, tenant_slug=slug, scope="write", actor="test")
            runs = {}
            for name in ("queued", "applied", "applying"):
                run = create_run(session, project_slug=slug, rule_name=RAISE["name"], actor="test")
                runs[name] = run.id
                session.flush()
                compute_targets(session, run.id)
            rule_id = rule.id
        summary = price_apply.apply_run(url, runs["applied"], client_for, actor="test", sleep=lambda s: None)
        assert summary.state == "APPLIED", summary
        # Previewed after the first run was applied: a preview of the prices as they are (a
        # preview from before would be refused as stale at write time).
        with session_scope(url) as session:
            runs["partial"] = create_run(session, project_slug=slug, rule_name=LOWER["name"], actor="test").id
            session.flush()
            compute_targets(session, runs["partial"])
        summary = price_apply.apply_run(url, runs["partial"], client_for, actor="test", sleep=lambda s: None)
        assert summary.state == "APPLIED" and not summary.skipped, summary
        with session_scope(url) as session:
            # A write failure of two targets (what a shop outage leaves behind).
            failed = session.scalars(select(RuleTarget.id).where(RuleTarget.run_id == runs["partial"]).order_by(RuleTarget.id).limit(2)).all()
            session.execute(update(RuleTarget).where(RuleTarget.id.in_(failed)).values(
                state=TargetState.FAILED.value, error="http_5xx: Shopify answered 503", attempts=3, applied_at=None))
            session.execute(update(RuleRun).where(RuleRun.id == runs["partial"]).values(state=RunState.PARTIAL.value))
            # Being applied right now by another writer (a live lease).
            session.execute(update(RuleRun).where(RuleRun.id == runs["applying"]).values(
                state=RunState.APPLYING.value, started_at=datetime.now(timezone.utc), lease_owner="another-writer",
                lease_expires_at=datetime.now(timezone.utc) + timedelta(days=1)))
            target_id = session.scalar(select(RuleTarget.id).where(RuleTarget.run_id == runs["applied"]).order_by(RuleTarget.id).limit(1))
        out[slug] = TenantData(
            slug=slug, tenant_id=ids[slug], project=slug, read_token=read.token, write_token=write.token, write_token_id=write.id,
            rule_id=rule_id, queued_run=runs["queued"], applied_run=runs["applied"], partial_run=runs["partial"], applying_run=runs["applying"],
            target_id=target_id, failed_target_ids=list(failed), listing_id=added.listing_id, sku=listing.our_sku, competitor_url=listing.url,
        )
    return out


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def api(request, tmp_path_factory):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('api') / 'warehouse.db'}"
        drop = lambda: get_engine(url).dispose()  # noqa: E731
    else:
        from calibr_pipeline_tests.conftest import _fresh_postgres_database

        url, drop = _fresh_postgres_database(request.getfixturevalue("postgres_admin_url"))
    upgrade_to_head(url)
    specs = [TenantSpec(slug, "USD", 10, n_competitors=2) for slug in TENANTS]
    previous = os.environ.get("CALIBR_SANDBOX_ALLOWED_HOSTS")
    try:
        with SandboxWorld(specs, seed=13) as world:
            os.environ["CALIBR_SANDBOX_ALLOWED_HOSTS"] = ",".join(world.allowed_hosts)
            tenants = _seed(url, world)
            with session_scope(url) as session:
                revoked = create_token(session, tenant_slug="acme", scope="write", actor="test")
                session.flush()
                revoke_token(session, revoked.id, actor="test")
                expired = create_token(session, tenant_slug="acme", scope="write", expires_in=timedelta(seconds=1), actor="test")
                session.execute(update(ApiToken).where(ApiToken.id == expired.id).values(expires_at=datetime.now(timezone.utc) - timedelta(minutes=1)))
            app = create_app(url, rate_limit_per_minute=100_000)
            with ApiServer(app) as base:
                yield ApiWorld(base=base, url=url, backend=request.param, world=world, tenants=tenants,
                               revoked_token=revoked.token, expired_token=expired.token)
    finally:
        if previous is None:
            os.environ.pop("CALIBR_SANDBOX_ALLOWED_HOSTS", None)
        else:
            os.environ["CALIBR_SANDBOX_ALLOWED_HOSTS"] = previous
        drop()

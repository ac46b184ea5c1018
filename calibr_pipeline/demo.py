"""The demo: sandbox world + seeded tenants + the full pipeline, then the Dagster UI.

``make demo`` runs :func:`run_demo`. The seeding functions are also used by the tests and
benchmarks, so the demo exercises exactly the code paths an operator would use: shops are
configured like ``calibr shops add``, listings go through the URL policy and the outbox
like ``calibr competitors add``, and the pipeline runs as Dagster jobs on the instance the
UI shows.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from sqlalchemy import func, select, update

from calibr_pipeline import settings
from calibr_pipeline.domain.url_policy import validate_competitor_url
from calibr_pipeline.sandbox.demo_catalog import DEMO_FX_PER_USD
from calibr_pipeline.sandbox.runner import SandboxWorld, TenantSpec
from calibr_pipeline.warehouse.competitor_store import add_competitor_listing, upsert_fx_rate
from calibr_pipeline.warehouse.engine import session_scope, upgrade_to_head
from calibr_pipeline.warehouse.models import CompetitorListing, OutboxEvent, Project
from calibr_pipeline.warehouse.outbox import mark_dispatched
from calibr_pipeline.warehouse.tenancy import get_or_create_project, get_or_create_tenant, upsert_shop

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_TENANTS: tuple[TenantSpec, ...] = (
    TenantSpec("acme-outdoor", "USD", 60, n_competitors=3),
    TenantSpec("berlin-living", "EUR", 56, n_competitors=3),
)
DEMO_SEED = 7
# Days of order history the demo reads before today (analytics, digest, trends).
DEMO_HISTORY_DAYS = 60
FX_SOURCE = "sandbox-reference"
DEMO_RULE = {
    "name": "Beat lowest competitor by 5%",
    "transform": {"kind": "competitor", "reference": "lowest", "mode": "beat", "by_percent": "5"},
    "scope": {"kind": "project"},
    "guardrails": {"min_margin_pct": "20", "max_change_pct": "15", "max_observation_age_hours": 48},
    "rounding": {"mode": "charm", "ending": "0.99"},
}


def seed_fx_rates(warehouse_url: str, rate_date: dt.date) -> int:
    """Every cross rate between the sandbox currencies, from its fixed per-USD table."""
    count = 0
    with session_scope(warehouse_url) as session:
        for base, base_per_usd in DEMO_FX_PER_USD.items():
            for quote, quote_per_usd in DEMO_FX_PER_USD.items():
                if base != quote:
                    rate = (quote_per_usd / base_per_usd).quantize(Decimal("0.000001"))
                    upsert_fx_rate(session, rate_date, base, quote, rate, FX_SOURCE)
                    count += 1
    return count


def seed_tenant_shops(warehouse_url: str, world: SandboxWorld) -> dict[str, int]:
    """Tenant, project and Shopify shop per sandbox tenant; returns tenant slug -> id."""
    ids = {}
    with session_scope(warehouse_url) as session:
        for name, handle in world.tenants.items():
            tenant = get_or_create_tenant(session, name, name.replace("-", " ").title())
            project = get_or_create_project(session, tenant, name, name=f"{tenant.name} store", currency=handle.currency)
            upsert_shop(
                session,
                project,
                "main",
                platform="shopify",
                admin_endpoint=handle.admin_endpoint,
                api_version="2025-01",
                access_token=handle.access_token,
                rate_limit_preset=handle.admin_shop.preset.name,
                currency=handle.currency,
            )
            ids[name] = tenant.id
    return ids


@dataclass(frozen=True)
class RegisteredListings:
    created: int
    pending_event_ids: list[str]


def register_sandbox_listings(
    warehouse_url: str, world: SandboxWorld, tenant: str, *, leave_pending: int = 0, limit: int | None = None
) -> RegisteredListings:
    """Register the tenant's sandbox competitor URLs as listings, as ``calibr competitors add`` does.

    Listings of earlier demo runs (other sandbox ports) are deactivated first. All but
    ``leave_pending`` outbox events are marked dispatched: the full pipeline run covers
    those listings, and the rest show the sensor at work.
    """
    allowed = world.allowed_hosts
    listings = world.listings_for(tenant)[:limit]
    event_ids: list[str] = []
    with session_scope(warehouse_url) as session:
        project_id = session.scalar(select(Project.id).where(Project.slug == tenant))
        session.execute(update(CompetitorListing).where(CompetitorListing.project_id == project_id).values(active=False))
        for listing in listings:
            url = validate_competitor_url(listing.url, allowed_hosts=allowed)
            added = add_competitor_listing(
                session,
                project_slug=tenant,
                sku=listing.our_sku,
                url=url,
                competitor_name=listing.competitor_name,
                currency=listing.expected_currency,
                actor="demo",
            )
            if added.created:
                event_ids.append(added.event_id)
            else:
                session.execute(update(CompetitorListing).where(CompetitorListing.id == added.listing_id).values(active=True))
        keep = set(event_ids[len(event_ids) - leave_pending :]) if leave_pending else set()
        for event_id in event_ids:
            if event_id not in keep:
                mark_dispatched(session, event_id, run_key="seeded-with-full-run")
    return RegisteredListings(created=len(event_ids), pending_event_ids=sorted(keep))


def run_demo_rule(defs, instance, warehouse_url: str, tenant: str) -> dict:
    """Preview, apply (through the outbox event's run key) and reconcile the demo rule."""
    from dagster._core.storage.tags import RUN_KEY_TAG

    from calibr_pipeline.defs.pricing.assets import RULE_RUN_PARTITIONS
    from calibr_pipeline.services.rule_runs import create_run, request_apply_of, save_rule

    with session_scope(warehouse_url) as session:
        save_rule(session, project_slug=tenant, definition=DEMO_RULE, actor="demo")
        run_id = create_run(session, project_slug=tenant, rule_name=DEMO_RULE["name"], actor="demo").id
    instance.add_dynamic_partitions(RULE_RUN_PARTITIONS.name, [run_id])
    outcome = {"run_id": run_id}

    def execute(job: str, tags: dict | None = None) -> bool:
        return defs.resolve_job_def(job).execute_in_process(
            instance=instance, partition_key=run_id, run_config=_quiet_run_config(), tags={"calibr/actor": "demo", **(tags or {})}, raise_on_error=False
        ).success

    outcome["preview"] = execute("preview_rule")
    with session_scope(warehouse_url) as session:
        from calibr_pipeline.services.rule_runs import get_run

        event_id = request_apply_of(session, get_run(session, run_id), actor="demo")
    # Same run key as the outbox event: the sensor will see this run and not launch another.
    outcome["apply"] = execute("apply_run", {RUN_KEY_TAG: event_id})
    outcome["reconcile"] = execute("reconcile_run")
    with session_scope(warehouse_url) as session:
        from calibr_pipeline.warehouse.models import RuleRunMetrics

        run = get_run(session, run_id)
        metrics = session.get(RuleRunMetrics, run_id)
        outcome.update(state=run.state, applied=metrics.targets_applied if metrics else 0, targets=metrics.targets_total if metrics else 0)
    return outcome


DEMO_COPILOT_QUESTION = "Which of my SKUs are the most expensive vs the market?"
DEMO_COPILOT_PROPOSAL = "Undercut the cheapest competitor by 2% but keep 25% margin, round to .99"


def run_demo_copilot(warehouse_url: str, project: str) -> str:
    """One copilot question and one proposal (saved disabled) for a demo tenant; a failure is reported, not fatal."""
    try:
        from calibr_pipeline.copilot.service import OfflineBackend, run_copilot

        question = run_copilot(warehouse_url, command="simulate", project_slug=project, prompt=DEMO_COPILOT_QUESTION, actor="demo",
                               entry_point="demo", backend=OfflineBackend())
        proposal = run_copilot(warehouse_url, command="propose", project_slug=project, prompt=DEMO_COPILOT_PROPOSAL, actor="demo",
                               entry_point="demo", backend=OfflineBackend())
        top = ", ".join(f"{r['sku']} (index {r.get('price_index')})" for r in question["rows"][:3]) or "no market data"
        lines = [f"  copilot {project}: asked {DEMO_COPILOT_QUESTION!r} -> {question['status']}: {top}"]
        if proposal["status"] == "ok":
            preview = proposal["preview"]
            lines.append(f"  copilot {project}: proposed {proposal['rule']['name']!r} (saved DISABLED), preview run {preview['run_id']}: "
                         f"{preview['skus_affected']} of {preview['skus_in_scope']} SKUs would change; review: {proposal['handoff']['review_preview']}")
        else:
            lines.append(f"  copilot {project}: proposal refused: {proposal['refusal']}")
        return "\n".join(lines)
    except Exception as exc:  # the demo goes on: the copilot step is reported, never fatal
        return f"  copilot {project}: FAILED ({type(exc).__name__}: {str(exc)[:200]})"


def _prepare_dagster_home(home: Path) -> Path:
    dagster_home = home / "dagster_home"
    dagster_home.mkdir(parents=True, exist_ok=True)
    template = REPO_ROOT / ("deploy/dagster.postgres.yaml" if os.environ.get("CALIBR_DAGSTER_PG_URL") else "dagster.yaml")
    shutil.copyfile(template, dagster_home / "dagster.yaml")
    return dagster_home


def _quiet_run_config() -> dict:
    return {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def run_job_for_day(defs, instance, job_name: str, tenants: list[str], day: dt.date) -> dict[str, bool]:
    """Execute a partitioned job on ``instance`` for each tenant's partition of ``day``."""
    from calibr_pipeline.defs.partitions import TENANT_PARTITIONS, DayTenant

    known = set(instance.get_dynamic_partitions(TENANT_PARTITIONS.name))
    instance.add_dynamic_partitions(TENANT_PARTITIONS.name, [t for t in tenants if t not in known])
    job = defs.resolve_job_def(job_name)
    return {
        tenant: job.execute_in_process(
            instance=instance, partition_key=DayTenant(day, tenant).key, run_config=_quiet_run_config(), raise_on_error=False
        ).success
        for tenant in tenants
    }


def _summary(warehouse_url: str) -> str:
    from sqlalchemy import text

    lines = []
    with session_scope(warehouse_url) as session:
        for tenant, variants, listings, observations, failed, positions in session.execute(
            text(
                """
                SELECT t.slug,
                  (SELECT COUNT(*) FROM variants v JOIN projects p ON p.id = v.project_id WHERE p.tenant_id = t.id),
                  (SELECT COUNT(*) FROM competitor_listings l JOIN projects p ON p.id = l.project_id WHERE p.tenant_id = t.id AND l.active = TRUE),
                  (SELECT COUNT(*) FROM competitor_price_observations o WHERE o.tenant_id = t.id),
                  (SELECT COUNT(*) FROM competitor_price_observations o WHERE o.tenant_id = t.id AND o.status <> 'ok'),
                  (SELECT COUNT(*) FROM market_positions m WHERE m.tenant_id = t.id)
                FROM tenants t ORDER BY t.slug
                """
            )
        ).all():
            lines.append(
                f"  {tenant:<15} {variants:>4} SKUs  {listings:>4} listings  {observations:>4} observations "
                f"({failed} failed)  {positions:>4} market positions"
            )
        pending = session.scalar(select(func.count()).select_from(OutboxEvent).where(OutboxEvent.dispatched_at.is_(None)))
    lines.append(f"  {pending} competitor.added event(s) pending in the outbox for the sensor")
    return "\n".join(lines)


def run_demo(*, ui: bool = True, host: str = "127.0.0.1", port: int = 3000) -> int:
    import dagster as dg

    home = Path(os.environ.get(settings.HOME_ENV) or REPO_ROOT / ".calibr" / "demo").resolve()
    if not os.environ.get(settings.WAREHOUSE_URL_ENV):
        # The embedded demo starts from a clean slate: its sandbox ports change per run.
        shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True, exist_ok=True)
    os.environ[settings.HOME_ENV] = str(home)
    os.environ["DAGSTER_HOME"] = str(_prepare_dagster_home(home))
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    warehouse_url = settings.warehouse_url()
    from calibr_pipeline.secrets.rotation import init as init_secrets

    created, key_path = init_secrets()  # shop tokens are encrypted at rest with this key
    print(f"secrets key: {key_path} ({'created' if created else 'existing'})")
    upgrade_to_head(warehouse_url)

    world = SandboxWorld(DEMO_TENANTS, seed=DEMO_SEED).start()
    stoppers: list = []
    try:
        os.environ[settings.SANDBOX_ALLOWED_HOSTS_ENV] = ",".join(world.allowed_hosts)
        today = world.today()
        print(f"sandbox: Shopify Admin at {world.admin.base_url}, {len(world.allowed_hosts) - 1} competitor storefronts")
        seed_fx_rates(warehouse_url, today - dt.timedelta(days=30))
        seed_tenant_shops(warehouse_url, world)
        # Partitions start on the first day of the demo's history (before the definitions
        # load), so the UI's fill figures count the days the demo can have data for.
        os.environ.setdefault(settings.HISTORY_START_ENV, (today - dt.timedelta(days=DEMO_HISTORY_DAYS)).isoformat())

        from calibr_pipeline.definitions import defs

        instance = dg.DagsterInstance.get()
        tenants = list(world.tenants)
        # The catalog must be in the warehouse before listings can name our SKUs.
        catalog_results = run_job_for_day(defs, instance, "catalog_sync", tenants, today)
        if not all(catalog_results.values()):
            print(f"catalog sync failed: {catalog_results}; see the runs in the Dagster UI", file=sys.stderr)
        for index, tenant in enumerate(tenants):
            registered = register_sandbox_listings(warehouse_url, world, tenant, leave_pending=1 if index == 0 else 0)
            print(f"{tenant}: {registered.created} competitor listings registered")
        print(f"running the pipeline for {today} ...")
        results = run_job_for_day(defs, instance, "competitor_monitoring", tenants, today)
        print(_summary(warehouse_url))
        for tenant, ok in results.items():
            print(f"  competitor_monitoring {tenant} {today}: {'SUCCESS' if ok else 'FAILED (see the run in the UI)'}")
        for tenant in tenants:
            rule = run_demo_rule(defs, instance, warehouse_url, tenant)
            print(
                f"  rule '{DEMO_RULE['name']}' for {tenant}: run {rule['run_id']} {rule['state']}, "
                f"{rule['applied']} of {rule['targets']} SKUs repriced, reconciled: {'yes' if rule['reconcile'] else 'FAILED'}"
            )
            results[f"{tenant} rule"] = rule["preview"] and rule["apply"] and rule["reconcile"]
        for tenant in tenants:
            print(run_demo_copilot(warehouse_url, tenant))
        from calibr_pipeline.defs.analytics.history import materialize_history

        print(f"analytics: {DEMO_HISTORY_DAYS} days of order history, dbt models, trend flags, last week's digest ...")
        # Reading 60 days of orders costs ~50,000 query points; a standard plan restores
        # 100 a second (8+ minutes), so the sandbox shops read their history on Plus.
        plans = {tenant: world.tenant(tenant).admin_shop.set_preset("plus") for tenant in tenants}
        try:
            analytics = materialize_history(defs, instance, warehouse_url, tenants, today, days=DEMO_HISTORY_DAYS)
        finally:
            for tenant, plan in plans.items():
                world.tenant(tenant).admin_shop.set_preset(plan)
        print(f"  analytics: {analytics}")
        results["analytics"] = all(v for k, v in analytics.items() if k not in ("orders", "seconds"))
        from calibr_pipeline.services.audit import render_audit_report

        with session_scope(warehouse_url) as session:
            (home / "audit-sample.md").write_text(render_audit_report(session, tenants=tenants))
        print(f"  audit report: {home / 'audit-sample.md'}  (or: calibr audit --markdown)")
        if settings.stripe_connect_enabled():  # docs/stripe.md
            from calibr_pipeline.demo_stripe import run_stripe_demo

            stripe_results, stop_stripe = run_stripe_demo(defs, instance, warehouse_url, tenants, today)
            results |= stripe_results
            stoppers.append(stop_stripe)
        demo_token, probe_token = create_demo_tokens(warehouse_url, tenants[0])
        print(f"\nTo use the calibr CLI on the demo's data: export CALIBR_HOME={home} DAGSTER_HOME={home / 'dagster_home'} {settings.HISTORY_START_ENV}={os.environ[settings.HISTORY_START_ENV]} PATH=\"{Path(sys.executable).parent}:$PATH\"")
        print(f"Demo API token ({tenants[0]}, write scope, 30 days): {demo_token}")
        if not ui:
            print(f"Start the API and runs console with: calibr api   (then open http://{host}:{os.environ.get(API_PORT_ENV) or DEFAULT_API_PORT}/console)")
            return 0 if all(results.values()) else 1
        api_port = int(os.environ.get(API_PORT_ENV) or DEFAULT_API_PORT)
        os.environ["CALIBR_API_PROBE_TOKEN"] = probe_token  # the synthetic probes of the API read with it
        os.environ.setdefault("CALIBR_API_URL", f"http://{host}:{api_port}")
        side = _start_side_servers(host, api_port)
        print(f"\nDagster UI:     http://{host}:{port}")
        print(f"Runs console:   http://{host}:{api_port}/console   (sign in with the demo token below)")
        print(f"HTTP API:       http://{host}:{api_port}/api/v1/docs")
        print(f"Demo token:     {demo_token}   ({tenants[0]}, write scope)")
        print(f"Metrics/health: http://{host}:9464/metrics  (calibr serve)")
        print("Ctrl-C stops the UI, the API and the sandbox.\n")
        try:
            return _run_dagster_dev(host, port)
        finally:
            for process in side:
                _stop(process)
    finally:
        for stop in stoppers:
            stop()
        world.stop()


API_PORT_ENV = "CALIBR_API_PORT"
DEFAULT_API_PORT = 8000


def create_demo_tokens(warehouse_url: str, tenant: str) -> tuple[str, str]:
    """A write token for the console and a read-only token for the synthetic probes (shown once)."""
    from calibr_pipeline.services.api_tokens import create_token

    with session_scope(warehouse_url) as session:
        write = create_token(session, tenant_slug=tenant, scope="write", name="demo console", expires_in=dt.timedelta(days=30), actor="demo")
        probe = create_token(session, tenant_slug=tenant, scope="read", name="synthetic probes", actor="demo")
    return write.token, probe.token


def _start_side_servers(host: str, api_port: int) -> list[subprocess.Popen]:
    """`calibr api` (API + console) and `calibr serve` (/metrics, /health for the probes)."""
    calibr = str(Path(sys.executable).with_name("calibr"))
    return [
        subprocess.Popen([calibr, "api", "--host", host, "--port", str(api_port)], cwd=REPO_ROOT),
        subprocess.Popen([calibr, "serve", "--host", host, "--port", "9464"], cwd=REPO_ROOT),
    ]


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def _run_dagster_dev(host: str, port: int) -> int:
    dagster = Path(sys.executable).with_name("dagster")
    command = [str(dagster), "dev", "-w", str(REPO_ROOT / "workspace.yaml"), "-h", host, "-p", str(port)]
    process = subprocess.Popen(command, cwd=REPO_ROOT)
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.send_signal(signal.SIGINT)
        try:
            return process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            return 130

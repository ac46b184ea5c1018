"""``calibr``: administration and diagnostics.

Every error a user can cause is printed as one clear line on stderr with exit code 2;
a traceback appears only with ``CALIBR_DEBUG=1``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Sequence

from calibr_pipeline import settings
from calibr_pipeline.copilot.cli import add_copilot_commands
from calibr_pipeline.catalog_cli import add_catalog_commands
from calibr_pipeline.cli_platform import add_platform_commands
from calibr_pipeline.domain.errors import CalibrError

EXIT_USER_ERROR = 2


def _warehouse_url(args) -> str:
    from calibr_pipeline.warehouse.engine import upgrade_to_head

    url = args.warehouse_url or settings.warehouse_url()
    new_file = url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).exists()
    upgrade_to_head(url)
    if new_file:  # say so: a command run outside the demo's CALIBR_HOME would otherwise see an empty warehouse silently
        print(f"calibr: note: created a new, empty warehouse at {url[len('sqlite:///'):]} "
              f"(the demo's is under .calibr/demo: export CALIBR_HOME=.calibr/demo, or set {settings.WAREHOUSE_URL_ENV})", file=sys.stderr)
    return url


def _print_json(data) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str))


def _currency(value: str, what: str) -> str:
    """An ISO 4217 code (any case) or a user error naming the option."""
    from calibr_pipeline.domain.currency import normalize_code

    code = normalize_code(value)
    if code is None:
        raise CalibrError(f"{what} {value!r} is not an ISO 4217 currency code such as USD or EUR")
    return code


def _debug_enabled() -> bool:
    return os.environ.get("CALIBR_DEBUG", "").strip().lower() not in ("", "0", "false", "no", "off")


# --- diagnostics -----------------------------------------------------------------------


def cmd_parse_price(args) -> int:
    from calibr_pipeline.domain.price_parsing import parse_price

    parsed = parse_price(args.text, currency_hint=args.currency_hint, locale_hint=args.locale)
    _print_json({"amount": str(parsed.amount), "currency": parsed.currency, "raw": parsed.raw})
    return 0


def cmd_extract_offer(args) -> int:
    from calibr_pipeline.domain.offer_extraction import extract_offer

    source = args.source
    if args.currency_hint:
        args.currency_hint = _currency(args.currency_hint, "--currency-hint")
    if source.startswith(("http://", "https://")):
        from calibr_pipeline.connectors.storefront import ListingTarget, StorefrontScraper
        from calibr_pipeline.domain.backoff import RetryPolicy
        from calibr_pipeline.warehouse.competitor_store import guess_page_kind

        retry_policy = RetryPolicy()
        if args.max_attempts is not None:
            retry_policy = replace(retry_policy, max_attempts=args.max_attempts)
        if args.retry_base_seconds is not None:
            retry_policy = replace(retry_policy, base_seconds=args.retry_base_seconds)
        scraper = StorefrontScraper(allowed_hosts=settings.sandbox_allowed_hosts(), retry_policy=retry_policy)
        kind = args.kind if args.kind != "auto" else guess_page_kind(source)
        outcome = scraper.scrape(
            ListingTarget(listing_id=0, url=source, kind=kind, variant_hint=args.variant, currency_hint=args.currency_hint)
        )
        if outcome.offer is None:
            raise CalibrError(
                f"{outcome.error_class.value if outcome.error_class else 'error'}: {outcome.error_message} "
                f"(url {outcome.url}, HTTP {outcome.http_status}, {outcome.attempts} attempt(s))"
            )
        _print_json(outcome.offer.to_json_dict() | {"fetched_url": outcome.url})
        return 0
    path = Path(source)
    if not path.is_file():
        raise CalibrError(f"{source!r} is neither an http(s) URL nor a readable file")
    page_url = args.url or path.resolve().as_uri()
    offer = extract_offer(path.read_bytes(), page_url, variant_hint=args.variant, currency_hint=args.currency_hint)
    _print_json(offer.to_json_dict())
    return 0


# --- administration --------------------------------------------------------------------


def cmd_db_upgrade(args) -> int:
    from calibr_pipeline.warehouse.engine import current_revision

    url = _warehouse_url(args)
    print(f"warehouse at revision {current_revision(url)}")
    return 0


def cmd_tenants_add(args) -> int:
    from calibr_pipeline.warehouse.engine import session_scope
    from calibr_pipeline.warehouse.tenancy import get_or_create_tenant

    with session_scope(_warehouse_url(args)) as session:
        tenant = get_or_create_tenant(session, args.slug, args.name)
        print(f"tenant {tenant.slug} (id {tenant.id})")
    return 0


def cmd_projects_add(args) -> int:
    from calibr_pipeline.warehouse.engine import session_scope
    from calibr_pipeline.warehouse.tenancy import get_or_create_project, tenant_by_slug

    currency = _currency(args.currency, "--currency")
    with session_scope(_warehouse_url(args)) as session:
        tenant = tenant_by_slug(session, args.tenant)
        project = get_or_create_project(session, tenant, args.slug, name=args.name, currency=currency)
        print(f"project {project.slug} (id {project.id}, tenant {tenant.slug}, {project.currency})")
    return 0


def cmd_shops_add(args) -> int:
    from calibr_pipeline.warehouse.engine import session_scope
    from calibr_pipeline.warehouse.tenancy import project_by_slug, upsert_shop

    currency = _currency(args.currency, "--currency")
    if args.platform == "shopify":
        if not args.endpoint:
            raise CalibrError("--endpoint is required for a Shopify shop (https://SHOP.myshopify.com/admin/api/2025-01/graphql.json)")
        from calibr_pipeline.domain.shop_endpoint import validate_shop_endpoint

        args.endpoint = validate_shop_endpoint(args.endpoint, allowed_hosts=settings.sandbox_allowed_hosts())
        token = os.environ.get(args.token_env or "", "")
        if not token:
            raise CalibrError(f"set the Admin API access token in the environment variable named by --token-env (got {args.token_env!r})")
        fields = dict(platform="shopify", admin_endpoint=args.endpoint, api_version=args.api_version, access_token=token, rate_limit_preset=args.preset)
    else:
        if not args.csv or not Path(args.csv).is_file():
            raise CalibrError(f"--csv must name an existing catalog CSV file, got {args.csv!r}")
        fields = dict(platform="csv", catalog_csv_path=str(Path(args.csv).resolve()))
    with session_scope(_warehouse_url(args)) as session:
        project = project_by_slug(session, args.project)
        shop = upsert_shop(session, project, args.name, currency=currency, **fields)
        print(f"shop {shop.name} (id {shop.id}, {shop.platform}) in project {project.slug}")
    return 0


def cmd_competitors_add(args) -> int:
    from calibr_pipeline.services.competitor_monitoring import register_listing
    from calibr_pipeline.warehouse.engine import session_scope

    currency = _currency(args.currency, "--currency") if args.currency else None
    with session_scope(_warehouse_url(args)) as session:
        added = register_listing(
            session,
            project_slug=args.project,
            sku=args.sku,
            url=args.url,
            allowed_hosts=settings.sandbox_allowed_hosts(),
            competitor_name=args.name,
            currency=currency,
            page_kind=args.kind,
            match_type=args.match,
            variant_hint=args.variant,
            actor=args.actor,
        )
    if added.created:
        print(f"listing {added.listing_id} added for SKU {args.sku}; event {added.event_id} queued (competitor.added)")
    else:
        print(f"listing {added.listing_id} already exists for SKU {args.sku}; nothing queued")
    return 0


def cmd_competitors_list(args) -> int:
    from sqlalchemy import select

    from calibr_pipeline.warehouse.engine import session_scope
    from calibr_pipeline.warehouse.models import Competitor, CompetitorListing, Variant
    from calibr_pipeline.warehouse.tenancy import project_by_slug

    with session_scope(_warehouse_url(args)) as session:
        project = project_by_slug(session, args.project)
        rows = session.execute(
            select(CompetitorListing.id, Variant.sku, Competitor.name, CompetitorListing.page_kind, CompetitorListing.url)
            .join(Variant, Variant.id == CompetitorListing.variant_id)
            .join(Competitor, Competitor.id == CompetitorListing.competitor_id)
            .where(CompetitorListing.project_id == project.id)
            .order_by(CompetitorListing.id)
        ).all()
    for listing_id, sku, name, kind, url in rows:
        print(f"{listing_id}\t{sku}\t{name}\t{kind}\t{url}")
    return 0


def cmd_fx_set(args) -> int:
    from calibr_pipeline.domain.money import to_decimal
    from calibr_pipeline.warehouse.competitor_store import upsert_fx_rate
    from calibr_pipeline.warehouse.engine import session_scope

    try:
        rate = to_decimal(args.rate)
    except ValueError as exc:
        raise CalibrError(str(exc)) from exc
    if rate <= 0:
        raise CalibrError(f"rate must be positive, got {args.rate}")
    # The warehouse stores rates as NUMERIC(20, 6): refuse what it would reject or round to zero.
    if rate >= _MAX_FX_RATE or rate < _MIN_FX_RATE:
        raise CalibrError(f"rate must be between {_MIN_FX_RATE} and {_MAX_FX_RATE - _MIN_FX_RATE}, got {args.rate}")
    base = _currency(args.base, "base currency")
    quote = _currency(args.quote, "quote currency")
    if base == quote:
        raise CalibrError(f"base and quote currency are both {base}")
    with session_scope(_warehouse_url(args)) as session:
        upsert_fx_rate(session, args.date, base, quote, rate, source=args.source)
    print(f"1 {base} = {rate} {quote} from {args.date}")
    return 0


_MAX_FX_RATE = Decimal(10) ** 14
_MIN_FX_RATE = Decimal("0.000001")


def cmd_sandbox(args) -> int:
    from calibr_pipeline.sandbox.runner import main as sandbox_main

    return sandbox_main(args.sandbox_args)


def cmd_demo(args) -> int:
    from calibr_pipeline.demo import run_demo

    from calibr_pipeline.demo_stripe import prepare_environment

    prepare_environment()  # STRIPE_CONNECT_ENABLED: unset CALIBR_STRIPE_* point at the sandbox
    settings.require_valid_environment()  # refuse to start on an invalid environment, with one line
    return run_demo(ui=not args.no_ui, port=args.port, host=args.host)


def _iso_date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}") from exc


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"not a whole number >= 1: {value!r}")
    return number


def _non_negative_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not (0 <= number < float("inf")):
        raise argparse.ArgumentTypeError(f"not a number of seconds >= 0: {value!r}")
    return number


# --- monitoring ------------------------------------------------------------------------


def cmd_serve(args) -> int:
    """Prometheus /metrics and /health endpoints (docs/metrics-reference.md); runs until Ctrl-C/SIGTERM."""
    from calibr_pipeline.monitoring.server import serve

    if not 0 <= args.port <= 65535:
        raise CalibrError(f"--port {args.port} is not a TCP port (0-65535)")
    settings.require_valid_environment()  # refuse to start on an invalid environment, with one line
    url = args.warehouse_url or settings.warehouse_url()  # read only: the server never migrates
    instance = None if args.no_dagster else _dagster_instance()
    try:
        serve(args.host, args.port, url, instance)
    except OSError as exc:  # address in use, permission denied
        raise CalibrError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from exc
    return 0


# --- pricing rules and runs ------------------------------------------------------------


def _dagster_instance():
    """The Dagster instance the UI shows (DAGSTER_HOME, default $CALIBR_HOME/dagster_home)."""
    import dagster as dg

    if not os.environ.get("DAGSTER_HOME"):
        home = settings.calibr_home() / "dagster_home"
        home.mkdir(parents=True, exist_ok=True)
        if not (home / "dagster.yaml").exists():
            template = Path(__file__).resolve().parents[1] / "dagster.yaml"
            (home / "dagster.yaml").write_text(template.read_text() if template.exists() else "telemetry:\n  enabled: false\n")
        os.environ["DAGSTER_HOME"] = str(home)
    return dg.DagsterInstance.get()


def execute_job(warehouse_url: str, job_name: str, run_id: str, *, run_config: dict | None = None, tags: dict | None = None) -> tuple[str, bool]:
    """Run a pricing job in this process on the instance the UI shows; returns (dagster run id, success)."""
    from calibr_pipeline.definitions import build_definitions
    from calibr_pipeline.defs.pricing.assets import RULE_RUN_PARTITIONS
    from calibr_pipeline.defs.resources import WarehouseResource

    instance = _dagster_instance()
    if not instance.has_dynamic_partition(RULE_RUN_PARTITIONS.name, run_id):
        instance.add_dynamic_partitions(RULE_RUN_PARTITIONS.name, [run_id])
    defs = build_definitions(warehouse=WarehouseResource(url=warehouse_url))
    result = defs.resolve_job_def(job_name).execute_in_process(
        instance=instance,
        partition_key=run_id,
        run_config=(run_config or {}) | {"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        tags=tags or {},
        raise_on_error=False,
    )
    return result.run_id, result.success


def _print_run(url: str, run_id: str, dagster_run_id: str | None = None) -> None:
    from sqlalchemy import func, select

    from calibr_pipeline.services.rule_runs import get_run
    from calibr_pipeline.warehouse.engine import session_scope
    from calibr_pipeline.warehouse.models import DeadLetter, RuleTarget

    with session_scope(url) as session:
        run = get_run(session, run_id)
        counts = dict(
            session.execute(
                select(RuleTarget.proposal_status, func.count()).where(RuleTarget.run_id == run_id).group_by(RuleTarget.proposal_status)
            ).all()
        )
        states = dict(
            session.execute(
                select(RuleTarget.state, func.count()).where(RuleTarget.run_id == run_id, RuleTarget.action == "write").group_by(RuleTarget.state)
            ).all()
        )
        dlq = session.scalar(select(func.count()).select_from(DeadLetter).where(DeadLetter.run_id == run_id, DeadLetter.resolved_at.is_(None)))
        info = {
            "run_id": run.id,
            "kind": run.kind,
            "state": run.state,
            "targets_by_proposal": counts,
            "write_targets_by_state": states,
            "dlq": dlq,
            "estimated_apply_seconds": (run.run_metadata or {}).get("estimated_apply_seconds"),
            "error": run.error,
        }
    if dagster_run_id:
        info["dagster_run_id"] = dagster_run_id
    _print_json(info)


def cmd_rules_add(args) -> int:
    from calibr_pipeline.services.rule_runs import save_rule
    from calibr_pipeline.warehouse.engine import session_scope

    if args.file and not Path(args.file).is_file():
        raise CalibrError(f"--file {args.file!r} is not a readable file")
    raw = Path(args.file).read_text(encoding="utf-8") if args.file else args.json
    if not raw:
        raise CalibrError("give the rule as --file RULE.json or --json '{...}'")
    try:
        definition = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CalibrError(f"the rule is not valid JSON: {exc}") from exc
    if not isinstance(definition, dict):
        raise CalibrError("the rule must be a JSON object")
    with session_scope(_warehouse_url(args)) as session:
        rule = save_rule(session, project_slug=args.project, definition=definition, actor=args.actor)
        print(f"rule {rule.name!r} saved (id {rule.id}) in project {args.project}")
    return 0


def cmd_rules_list(args) -> int:
    from sqlalchemy import select

    from calibr_pipeline.warehouse.engine import session_scope
    from calibr_pipeline.warehouse.models import PricingRule
    from calibr_pipeline.warehouse.tenancy import project_by_slug

    with session_scope(_warehouse_url(args)) as session:
        project = project_by_slug(session, args.project)
        for rule in session.scalars(select(PricingRule).where(PricingRule.project_id == project.id).order_by(PricingRule.name)):
            print(json.dumps({"id": rule.id, "name": rule.name, "active": rule.active, "definition": rule.definition}, sort_keys=True))
    return 0


def cmd_runs_preview(args) -> int:
    from calibr_pipeline.services.rule_runs import create_run, get_run
    from calibr_pipeline.warehouse.engine import session_scope

    url = _warehouse_url(args)
    with session_scope(url) as session:
        if args.run:
            run = get_run(session, args.run)
            if run.state != "QUEUED":
                raise CalibrError(f"run {run.id} is {run.state}; only a QUEUED run's preview can be computed again")
        elif args.project and args.rule:
            run = create_run(session, project_slug=args.project, rule_name=args.rule, actor=args.actor)
        else:
            raise CalibrError("give --project and --rule to preview a new run, or --run RUN_ID to preview a queued run again")
        run_id = run.id
    dagster_run_id, ok = execute_job(url, "preview_rule", run_id, tags={"calibr/actor": args.actor})
    _print_run(url, run_id, dagster_run_id)
    return 0 if ok else 1


def _apply(url: str, run_id: str, event_id: str, *, wait: bool, actor: str, job: str = "apply_run") -> int:
    if not wait:
        print(f"apply of run {run_id} requested (outbox event {event_id}); the rules_apply_sensor launches it")
        _print_run(url, run_id)
        return 0
    from dagster._core.storage.tags import RUN_KEY_TAG

    # The run key is the event id, so the sensor sees this run and does not launch another.
    dagster_run_id, ok = execute_job(url, job, run_id, tags={RUN_KEY_TAG: event_id, "calibr/outbox_event": event_id, "calibr/actor": actor})
    _print_run(url, run_id, dagster_run_id)
    return _apply_exit_code(url, run_id, ok)


def _apply_exit_code(url: str, run_id: str, ok: bool) -> int:
    """0 only when the run ended APPLIED; a run left PARTIAL/FAILED or taken by another writer is not success."""
    from sqlalchemy import func, select

    from calibr_pipeline.services.rule_runs import get_run
    from calibr_pipeline.warehouse.engine import session_scope
    from calibr_pipeline.warehouse.models import RuleTarget

    with session_scope(url) as session:
        run = get_run(session, run_id)
        state, owner, until = run.state, run.lease_owner, run.lease_expires_at
        failed = session.scalar(select(func.count()).select_from(RuleTarget).where(RuleTarget.run_id == run_id, RuleTarget.state == "FAILED"))
    if not ok:
        return 1
    if state in ("PARTIAL", "FAILED"):
        print(f"calibr: run {run_id} ended {state}: {failed} target(s) failed; see `calibr runs status {run_id}` and `calibr runs retry {run_id}`", file=sys.stderr)
        return 1
    if state == "APPLYING":
        print(f"calibr: error: run {run_id} is being applied by {owner} (lease until {until}); nothing done by this command", file=sys.stderr)
        return EXIT_USER_ERROR
    return 0


def cmd_runs_apply(args) -> int:
    from calibr_pipeline.services.rule_runs import create_run, get_run, request_apply_of
    from calibr_pipeline.warehouse.engine import session_scope

    url = _warehouse_url(args)
    with session_scope(url) as session:
        if args.run_id:
            run = get_run(session, args.run_id)
        elif args.project and args.rule:
            run = create_run(session, project_slug=args.project, rule_name=args.rule, actor=args.actor)
        else:
            raise CalibrError("give a RUN_ID, or --project and --rule to create and apply a new run")
        event_id = request_apply_of(session, run, actor=args.actor)
        run_id, kind = run.id, run.kind
    return _apply(url, run_id, event_id, wait=args.wait, actor=args.actor, job="revert_run" if kind == "revert" else "apply_run")


def cmd_runs_status(args) -> int:
    _print_run(_warehouse_url(args), args.run_id)
    return 0


def cmd_runs_retry(args) -> int:
    url = _warehouse_url(args)
    from calibr_pipeline.services.rule_runs import get_run
    from calibr_pipeline.warehouse.engine import session_scope

    with session_scope(url) as session:
        get_run(session, args.run_id)
    config = {"ops": {"applied_prices": {"config": {"retry_failed": True, "target_ids": args.target or None}}}}
    dagster_run_id, ok = execute_job(url, "retry_failed", args.run_id, run_config=config, tags={"calibr/actor": args.actor})
    _print_run(url, args.run_id, dagster_run_id)
    return _apply_exit_code(url, args.run_id, ok)


def cmd_dlq_drain(args) -> int:
    from calibr_pipeline.defs.resources import ShopifyAdminResource
    from calibr_pipeline.services.reconciliation import drain_dead_letters

    url = _warehouse_url(args)
    if args.project:
        from calibr_pipeline.warehouse.engine import session_scope
        from calibr_pipeline.warehouse.tenancy import project_by_slug

        with session_scope(url) as session:
            project_by_slug(session, args.project)
    result = drain_dead_letters(url, ShopifyAdminResource().client_for, actor=args.actor, project_slug=args.project, dry_run=args.dry_run)
    _print_json(result)
    return 1 if any(state in ("PARTIAL", "FAILED") for state in result.get("runs", {}).values()) else 0


def cmd_runs_reconcile(args) -> int:
    url = _warehouse_url(args)
    from calibr_pipeline.services.rule_runs import get_run
    from calibr_pipeline.warehouse.engine import session_scope

    with session_scope(url) as session:
        get_run(session, args.run_id)
    config = {"ops": {"reconciliation_report": {"config": {"schedule_retry": args.schedule_retry}}}}
    dagster_run_id, ok = execute_job(url, "reconcile_run", args.run_id, run_config=config, tags={"calibr/actor": args.actor})
    from sqlalchemy import select

    from calibr_pipeline.warehouse.models import ReconciliationMismatch

    with session_scope(url) as session:
        mismatches = [
            {"sku": m.sku, "expected": str(m.expected_price), "actual": None if m.actual_price is None else str(m.actual_price), "retry_run_id": m.retry_run_id}
            for m in session.scalars(select(ReconciliationMismatch).where(ReconciliationMismatch.run_id == args.run_id).order_by(ReconciliationMismatch.sku))
        ]
    _print_json({"run_id": args.run_id, "dagster_run_id": dagster_run_id, "mismatches": mismatches})
    return 0 if ok else 1


def cmd_runs_revert(args) -> int:
    from calibr_pipeline.services.rule_runs import create_run, get_run, request_apply_of
    from calibr_pipeline.warehouse.engine import session_scope
    from calibr_pipeline.warehouse.models import Project

    url = _warehouse_url(args)
    with session_scope(url) as session:
        source = get_run(session, args.run_id)
        if source.state not in ("APPLIED", "PARTIAL"):
            raise CalibrError(f"run {args.run_id} is {source.state}; only APPLIED or PARTIAL runs can be reverted")
        project_slug = session.get(Project, source.project_id).slug
        run = create_run(session, project_slug=project_slug, actor=args.actor, kind="revert", source_run_id=source.id)
        event_id = request_apply_of(session, run, actor=args.actor)
        run_id = run.id
    return _apply(url, run_id, event_id, wait=args.wait, actor=args.actor, job="revert_run")


def _iso_datetime(value: str):
    from datetime import datetime, timezone

    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO date/time: {value!r}") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def cmd_audit(args) -> int:
    from calibr_pipeline.services.audit import AuditFilters, query_audit
    from calibr_pipeline.warehouse.engine import session_scope
    from calibr_pipeline.warehouse.tenancy import project_by_slug, tenant_by_slug

    with session_scope(_warehouse_url(args)) as session:  # an unknown tenant or project is an error, not an empty list
        if args.tenant:
            tenant_by_slug(session, args.tenant)
        if args.project:
            project_by_slug(session, args.project)

    filters = AuditFilters(
        tenant=args.tenant, project=args.project, run_id=args.run, event_types=tuple(args.event_type or ()), since=args.since, until=args.until
    )
    if getattr(args, "copilot", False):
        from calibr_pipeline.copilot.service import list_copilot_audit

        with session_scope(_warehouse_url(args)) as session:
            rows = list_copilot_audit(session, tenant=args.tenant, project=args.project, limit=args.limit)
        if args.json:
            _print_json({"copilot_calls": rows})
        for row in rows if not args.json else ():
            print(f"{row['id']}\t{row['at']}\t{row['tenant'] or '-'}\t{row['project'] or '-'}\t{row['command']}\t{row['actor']}\t"
                  f"{row['backend']}/{row['model'] or '-'}\t{row['status']}{':' + row['refusal_code'] if row['refusal_code'] else ''}\t"
                  f"{len(row['tool_calls'])} tool call(s), {row['row_count']} row(s)\t{json.dumps(row['prompt'])[:120]}")
        return 0
    if args.markdown:
        from calibr_pipeline.services.audit import render_audit_report

        with session_scope(_warehouse_url(args)) as session:
            print(render_audit_report(session, tenants=[args.tenant] if args.tenant else None), end="")
        return 0
    with session_scope(_warehouse_url(args)) as session:
        rows, next_cursor = query_audit(session, filters, limit=args.limit, cursor=args.cursor, newest_first=not args.oldest_first,
                                        include_archived=args.include_archived)
    if args.json:
        _print_json({"events": rows, "next_cursor": next_cursor})
        return 0
    print(f"# {len(rows)} event(s), {'oldest' if args.oldest_first else 'newest'} first", file=sys.stderr)
    print("id\tat\ttenant\tproject\tevent_type\tactor\trun_id\tdetail")
    for row in rows:
        payload = row["payload"] or {}
        detail = f"{payload.get('sku')} {payload.get('from')} -> {payload.get('to')}" if "to" in payload else json.dumps(payload, sort_keys=True)[:160]
        print(f"{row['id']}\t{row['at']}\t{row['tenant'] or '-'}\t{row['project'] or '-'}\t{row['event_type']}\t{row['actor']}\t{row['run_id'] or '-'}\t{detail}")
    print(f"next cursor: {next_cursor}" if next_cursor else "(end)", file=sys.stderr)
    return 0


def add_pricing_commands(sub) -> None:
    actor = os.environ.get("USER", "cli")
    rules = sub.add_parser("rules", help="pricing rules").add_subparsers(dest="rules_command", required=True)
    p = rules.add_parser("add", help="validate and save a rule (JSON; see docs/rules.md)")
    p.add_argument("--project", required=True)
    p.add_argument("--file", help="rule JSON file")
    p.add_argument("--json", help="rule JSON text")
    p.add_argument("--actor", default=actor)
    p.set_defaults(func=cmd_rules_add)
    p = rules.add_parser("list")
    p.add_argument("--project", required=True)
    p.set_defaults(func=cmd_rules_list)

    runs = sub.add_parser("runs", help="rule runs: preview, apply, status, retry, reconcile, revert").add_subparsers(dest="runs_command", required=True)
    p = runs.add_parser("preview", help="create a run and compute its targets (no writes); prints the run id and state")
    p.add_argument("--project")
    p.add_argument("--rule")
    p.add_argument("--run", help="compute the targets of this QUEUED run again (an expired preview)")
    p.add_argument("--actor", default=actor)
    p.set_defaults(func=cmd_runs_preview)
    p = runs.add_parser("apply", help="request the apply of a run (outbox -> sensor), or run it now with --wait")
    p.add_argument("run_id", nargs="?")
    p.add_argument("--project")
    p.add_argument("--rule")
    p.add_argument("--wait", action="store_true", help="apply in this process and print the final state")
    p.add_argument("--actor", default=actor)
    p.set_defaults(func=cmd_runs_apply)
    p = runs.add_parser("status")
    p.add_argument("run_id")
    p.set_defaults(func=cmd_runs_status)
    p = runs.add_parser("retry", help="retry FAILED targets (all, or --target ID ...), attempts reset")
    p.add_argument("run_id")
    p.add_argument("--target", type=int, action="append")
    p.add_argument("--actor", default=actor)
    p.set_defaults(func=cmd_runs_retry)
    p = runs.add_parser("reconcile", help="read applied prices back from the shop")
    p.add_argument("run_id")
    p.add_argument("--schedule-retry", action="store_true", help="queue a run that re-applies mismatched prices")
    p.add_argument("--actor", default=actor)
    p.set_defaults(func=cmd_runs_reconcile)
    p = runs.add_parser("revert", help="restore the previous prices of a run's applied targets (stale ones are skipped)")
    p.add_argument("run_id")
    p.add_argument("--wait", action="store_true")
    p.add_argument("--actor", default=actor)
    p.set_defaults(func=cmd_runs_revert)

    dlq = sub.add_parser("dlq", help="price-write dead letters").add_subparsers(dest="dlq_command", required=True)
    p = dlq.add_parser("drain", help="retry transient dead letters that are still the latest decision (see docs/runbook.md)")
    p.add_argument("--project", help="only this project's dead letters")
    p.add_argument("--dry-run", action="store_true", help="print what would be retried and closed, change nothing")
    p.add_argument("--actor", default=actor)
    p.set_defaults(func=cmd_dlq_drain)

    p = sub.add_parser("audit", help="audit trail with filters and cursor pagination")
    p.add_argument("--tenant")
    p.add_argument("--project")
    p.add_argument("--run")
    p.add_argument("--event-type", action="append", help="repeatable, e.g. price.applied")
    p.add_argument("--since", type=_iso_datetime)
    p.add_argument("--until", type=_iso_datetime)
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--oldest-first", action="store_true", help="oldest events first (default: newest first)")
    p.add_argument("--cursor")
    p.add_argument("--json", action="store_true")
    p.add_argument("--markdown", action="store_true", help="a report per tenant: runs, price writes with explain trace, events")
    p.add_argument("--copilot", action="store_true", help="copilot calls instead of events: prompt, tool calls, executed SQL, refusal (newest first)")
    p.add_argument("--include-archived", action="store_true", help="also read months moved to cold storage by `calibr events archive`")
    p.set_defaults(func=cmd_audit)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="calibr", description="Calibrate pricing pipeline administration")
    parser.add_argument("--warehouse-url", help=f"SQLAlchemy URL (default: ${settings.WAREHOUSE_URL_ENV} or embedded SQLite)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("parse-price", help="parse a price string into an exact amount and ISO currency (JSON)")
    p.add_argument("text")
    p.add_argument("--currency-hint", help="ISO 4217 code the page declares, used for ambiguous symbols")
    p.add_argument("--locale", help="page locale, e.g. en-CA")
    p.set_defaults(func=cmd_parse_price)

    p = sub.add_parser("extract-offer", help="extract the offer from an HTML file or a URL (JSON)")
    p.add_argument("source", help="HTML file or http(s) URL")
    p.add_argument("--url", help="the page's URL when SOURCE is a file (used for relative hints)")
    p.add_argument("--variant", help="variant id or SKU to pick among several offers")
    p.add_argument("--currency-hint", help="currency when the page does not declare one")
    p.add_argument("--kind", choices=["auto", "shopify", "html"], default="auto", help="for URLs: Shopify .js endpoint or HTML")
    p.add_argument("--max-attempts", type=_positive_int, help="for URLs: attempts per request on transient errors (default 3)")
    p.add_argument("--retry-base-seconds", type=_non_negative_float, help="for URLs: first backoff delay in seconds (default 2)")
    p.set_defaults(func=cmd_extract_offer)

    db = sub.add_parser("db", help="warehouse schema").add_subparsers(dest="db_command", required=True)
    p = db.add_parser("upgrade", help="apply all migrations")
    p.set_defaults(func=cmd_db_upgrade)

    tenants = sub.add_parser("tenants", help="tenants").add_subparsers(dest="tenants_command", required=True)
    p = tenants.add_parser("add")
    p.add_argument("slug")
    p.add_argument("--name")
    p.set_defaults(func=cmd_tenants_add)

    projects = sub.add_parser("projects", help="projects").add_subparsers(dest="projects_command", required=True)
    p = projects.add_parser("add")
    p.add_argument("slug")
    p.add_argument("--tenant", required=True)
    p.add_argument("--currency", required=True, help="ISO 4217 currency of the shop's prices")
    p.add_argument("--name")
    p.set_defaults(func=cmd_projects_add)

    shops = sub.add_parser("shops", help="merchant shops").add_subparsers(dest="shops_command", required=True)
    p = shops.add_parser("add")
    p.add_argument("--project", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--platform", choices=["shopify", "csv"], default="shopify")
    p.add_argument("--currency", required=True)
    p.add_argument("--endpoint", help="Admin GraphQL endpoint URL")
    p.add_argument("--api-version", default="2025-01")
    p.add_argument("--token-env", help="name of the environment variable holding the Admin API token (never pass the token itself)")
    p.add_argument("--preset", choices=["standard", "plus"], default="standard")
    p.add_argument("--csv", help="catalog CSV file (platform csv)")
    p.set_defaults(func=cmd_shops_add)

    competitors = sub.add_parser("competitors", help="competitor listings").add_subparsers(dest="competitors_command", required=True)
    p = competitors.add_parser("add", help="register a competitor product page for one of our SKUs")
    p.add_argument("--project", required=True)
    p.add_argument("--sku", required=True)
    p.add_argument("--url", required=True)
    p.add_argument("--name", help="competitor display name (default: the domain)")
    p.add_argument("--currency", help="the competitor store's currency, used when the page does not declare one")
    p.add_argument("--kind", choices=["auto", "shopify", "html"], default="auto")
    p.add_argument("--match", choices=["exact", "similar", "manual"], default="exact")
    p.add_argument("--variant", help="competitor variant id or SKU on a multi-variant page")
    p.add_argument("--actor", default=os.environ.get("USER", "cli"))
    p.set_defaults(func=cmd_competitors_add)
    p = competitors.add_parser("list")
    p.add_argument("--project", required=True)
    p.set_defaults(func=cmd_competitors_list)

    fx = sub.add_parser("fx", help="reference exchange rates").add_subparsers(dest="fx_command", required=True)
    p = fx.add_parser("set", help="1 BASE = RATE QUOTE from DATE on")
    p.add_argument("base")
    p.add_argument("quote")
    p.add_argument("rate")
    p.add_argument("--date", type=_iso_date, default=date.today())
    p.add_argument("--source", default="manual")
    p.set_defaults(func=cmd_fx_set)

    p = sub.add_parser("sandbox", help="run the loopback sandbox servers (Shopify Admin, competitor storefronts)")
    p.add_argument("sandbox_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_sandbox)

    p = sub.add_parser("demo", help="seed demo tenants against the sandbox, run the pipeline, start the Dagster UI")
    p.add_argument("--no-ui", action="store_true", help="stop after the pipeline run")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3000)
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("serve", help="serve Prometheus /metrics, /health and /health/detailed (see docs/metrics-reference.md)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: loopback only)")
    p.add_argument("--port", type=int, default=9464, help="TCP port (default 9464)")
    p.add_argument("--no-dagster", action="store_true", help="do not open the Dagster instance (no schedule, queue or daemon figures)")
    p.set_defaults(func=cmd_serve)
    add_pricing_commands(sub)
    add_copilot_commands(sub)
    from calibr_pipeline.api.commands import add_api_commands  # cheap: its heavy imports are lazy
    add_api_commands(sub)
    add_catalog_commands(sub)
    add_platform_commands(sub)
    from calibr_pipeline.amazon_cli import add_amazon_commands
    add_amazon_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # usage errors and --help: return the code instead of exiting
        if exc.code is None:
            return 0
        return exc.code if isinstance(exc.code, int) else EXIT_USER_ERROR
    try:
        return args.func(args)
    except CalibrError as exc:
        message = getattr(exc, "message", None) or str(exc)
        error_class = getattr(exc, "error_class", None)
        if error_class is not None:
            message = f"{getattr(error_class, 'value', error_class)}: {message}"
        message = " ".join(message.split())  # one line, whatever the message contains
        print(f"calibr: error: {message}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the CLI is a user interface: no traceback unless asked for
        if _debug_enabled():
            raise
        print(f"calibr: unexpected error: {_describe_unexpected(exc)} (set CALIBR_DEBUG=1 for details)", file=sys.stderr)
        return 1


def _describe_unexpected(exc: BaseException) -> str:
    """One line about an unexpected error, without SQL parameters (they may hold secrets)."""
    from sqlalchemy.exc import StatementError

    if isinstance(exc, StatementError) and exc.orig is not None:
        # str(StatementError) appends "[SQL: ...] [parameters: ...]": a shop insert would
        # print its access token. The driver's own error says what went wrong.
        exc = exc.orig
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= 500 else text[:499] + "…"


if __name__ == "__main__":
    sys.exit(main())

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
from calibr_pipeline.domain.errors import CalibrError

EXIT_USER_ERROR = 2


def _warehouse_url(args) -> str:
    from calibr_pipeline.warehouse.engine import upgrade_to_head

    url = args.warehouse_url or settings.warehouse_url()
    upgrade_to_head(url)
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
    from calibr_pipeline.domain.errors import ErrorClass
    from calibr_pipeline.domain.url_policy import UrlPolicyError, validate_competitor_url
    from calibr_pipeline.warehouse.competitor_store import add_competitor_listing
    from calibr_pipeline.warehouse.engine import session_scope
    from calibr_pipeline.warehouse.models import CompetitorListing

    url = validate_competitor_url(args.url, allowed_hosts=settings.sandbox_allowed_hosts())
    max_length = CompetitorListing.url.type.length
    if len(url) > max_length:
        # The URL policy allows a little more than the column holds (Postgres would refuse it).
        raise UrlPolicyError(ErrorClass.INVALID_URL, f"The competitor URL is longer than {max_length} characters.")
    currency = _currency(args.currency, "--currency") if args.currency else None
    with session_scope(_warehouse_url(args)) as session:
        added = add_competitor_listing(
            session,
            project_slug=args.project,
            sku=args.sku,
            url=url,
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

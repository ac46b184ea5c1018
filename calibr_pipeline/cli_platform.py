"""``calibr events ...``, ``calibr doctor``, ``calibr env ...`` (and ``calibr stripe ...`` when enabled).

Registered in ``cli.build_parser`` by ``add_platform_commands(sub)``. User errors raise
``CalibrError`` (one line, exit 2), like every other command.
"""

from __future__ import annotations

import json
import sys

from calibr_pipeline import settings
from calibr_pipeline.domain.errors import CalibrError


def _url(args) -> str:
    from calibr_pipeline.warehouse.engine import upgrade_to_head

    url = args.warehouse_url or settings.warehouse_url()
    upgrade_to_head(url)
    return url


# --- events ----------------------------------------------------------------------------------


def cmd_events_archive(args) -> int:
    from calibr_pipeline.events.archive import archive_events, parse_age

    loaded = settings.require_valid_environment()
    age = parse_age(args.older_than or loaded.EVENTS_ARCHIVE_OLDER_THAN)
    report = archive_events(_url(args), root=args.root or loaded.events_archive_url, older_than=age,
                            file_format=args.format or loaded.EVENTS_ARCHIVE_FORMAT)
    for f in report.files:
        print(f"{f.table}\t{f.month}\t{f.tenant}\t{f.rows}\tids {f.first_id}..{f.last_id}\tsha256 {f.sha256[:16]}…\t{f.path}")
    print(f"archived {report.rows} row(s) created before {report.cutoff:%Y-%m-%d %H:%M} UTC into {len(report.files)} file(s)", file=sys.stderr)
    return 0


def cmd_events_restore(args) -> int:
    from calibr_pipeline.events.archive import restore_events

    report = restore_events(_url(args), month=args.month, tenant=args.tenant)
    print(f"restored {report.rows_restored} row(s) from {report.archives} archive file(s); {report.rows_already_present} were already present")
    return 0


def cmd_events_archives(args) -> int:
    from calibr_pipeline.events.archive import list_archives

    rows = list_archives(_url(args))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        print(f"{r['table']}\t{r['month']}\t{r['tenant']}\t{r['rows']}\t{r['state']}\t{r['path']}")
    if not rows:
        print("(no archives)", file=sys.stderr)
    return 0


def cmd_events_types(args) -> int:
    from calibr_pipeline.events.registry import registry

    reg = registry()
    for event_type in reg.event_types():
        current = reg.current(event_type)
        print(f"{event_type}\tv{current.version}\t{','.join(current.channels)}\t{current.description}")
    return 0


def cmd_events_validate(args) -> int:
    from calibr_pipeline.events.registry import registry

    try:
        payload = json.loads(args.payload)
    except json.JSONDecodeError as exc:
        raise CalibrError(f"--payload is not JSON: {exc.msg} at column {exc.colno}") from None
    version = registry().validate(args.event_type, payload, args.version)
    print(f"valid {args.event_type} v{version}")
    return 0


# --- environment -----------------------------------------------------------------------------


def cmd_doctor(args) -> int:
    from calibr_pipeline.services.doctor import FAIL, run_doctor

    checks = run_doctor(warehouse_url=args.warehouse_url)
    for check in checks:
        print(check.line())
    failed = sum(c.status == FAIL for c in checks)
    print(f"{len(checks)} check(s), {failed} failed", file=sys.stderr)
    return 1 if failed else 0


def cmd_env_example(args) -> int:
    print(settings.render_env_example(), end="")
    return 0


def cmd_env_check(args) -> int:
    settings.require_valid_environment()
    print("environment valid")
    return 0


def cmd_env_generate_key(args) -> int:
    from cryptography.fernet import Fernet

    print(Fernet.generate_key().decode())
    return 0


# --- Stripe (only registered when STRIPE_CONNECT_ENABLED is on) --------------------------------


def _stripe_client():
    from calibr_pipeline.connectors.stripe.client import StripeConnect

    loaded = settings.require_valid_environment()
    return StripeConnect(loaded.STRIPE_API_KEY.get_secret_value(), loaded.STRIPE_CLIENT_ID,
                         api_base=loaded.STRIPE_API_BASE, connect_base=loaded.STRIPE_CONNECT_BASE)


def cmd_stripe_connect_url(args) -> int:
    client = _stripe_client()
    print(client.authorize_url(state=client.new_state(), redirect_uri=args.redirect_uri))
    return 0


def cmd_stripe_connect(args) -> int:
    from calibr_pipeline.services.stripe_sync import connect_account

    account = connect_account(_url(args), _stripe_client(), tenant_slug=args.tenant, code=args.code)
    print(f"connected Stripe account {account} to tenant {args.tenant}")
    return 0


def cmd_stripe_sync(args) -> int:
    from datetime import date

    from calibr_pipeline.services.stripe_sync import sync_catalog, sync_transactions_day

    url, client = _url(args), _stripe_client()
    try:
        day = date.fromisoformat(args.date) if args.date else date.today()
    except ValueError:
        raise CalibrError(f"--date {args.date!r} is not YYYY-MM-DD") from None
    report = sync_catalog(url, client, tenant_slug=args.tenant)
    report = sync_transactions_day(url, client, tenant_slug=args.tenant, day=day, report=report)
    print(json.dumps({"accounts": report.accounts, "products": report.products, "prices": report.prices, "payment_intents": report.payment_intents,
                      "balance_transactions": report.balance_transactions, "errors": report.errors}, indent=2))
    return 1 if report.errors else 0


def cmd_stripe_map(args) -> int:
    from calibr_pipeline.services.stripe_sync import map_manually

    map_manually(_url(args), account_id=args.account, stripe_product_id=args.product, stripe_price_id=args.price or "", sku=args.sku)
    print(f"mapped {args.product} {args.price or ''} to SKU {args.sku}")
    return 0


def _add_stripe_commands(sub) -> None:
    stripe = sub.add_parser("stripe", help="Stripe Connect (docs/stripe.md)").add_subparsers(dest="stripe_command", required=True)
    p = stripe.add_parser("connect-url", help="print the Connect OAuth authorize URL for a merchant")
    p.add_argument("--redirect-uri", required=True)
    p.set_defaults(func=cmd_stripe_connect_url)
    p = stripe.add_parser("connect", help="exchange the OAuth code for the connected account (tokens stored encrypted)")
    p.add_argument("--tenant", required=True)
    p.add_argument("--code", required=True)
    p.set_defaults(func=cmd_stripe_connect)
    p = stripe.add_parser("sync", help="sync the tenant's accounts: catalog (incremental) and one day's transactions")
    p.add_argument("--tenant", required=True)
    p.add_argument("--date", help="YYYY-MM-DD (default today, UTC)")
    p.set_defaults(func=cmd_stripe_sync)
    p = stripe.add_parser("map", help="link a Stripe product/price to one of our SKUs by hand")
    p.add_argument("--account", required=True)
    p.add_argument("--product", required=True)
    p.add_argument("--price")
    p.add_argument("--sku", required=True)
    p.set_defaults(func=cmd_stripe_map)


def add_platform_commands(sub) -> None:
    events = sub.add_parser("events", help="event registry and archival (docs/events.md)").add_subparsers(dest="events_command", required=True)
    p = events.add_parser("archive", help="move old event_log rows and dispatched outbox rows to cold storage")
    p.add_argument("--older-than", help="age such as 90d, 12w, 36h (default $CALIBR_EVENTS_ARCHIVE_OLDER_THAN or 90d)")
    p.add_argument("--format", choices=["jsonl.gz", "parquet"], help="default $CALIBR_EVENTS_ARCHIVE_FORMAT or jsonl.gz")
    p.add_argument("--root", help="folder or fsspec URL (default $CALIBR_EVENTS_ARCHIVE_URL or $CALIBR_HOME/archive/events)")
    p.set_defaults(func=cmd_events_archive)
    p = events.add_parser("restore", help="bring an archived month back into the tables")
    p.add_argument("--month", required=True, help="YYYY-MM")
    p.add_argument("--tenant", help="tenant slug (default: every tenant)")
    p.set_defaults(func=cmd_events_restore)
    p = events.add_parser("archives", help="list archive files and their manifests")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_events_archives)
    p = events.add_parser("types", help="registered event types, current version, channels")
    p.set_defaults(func=cmd_events_types)
    p = events.add_parser("validate", help="validate a JSON payload against an event type's schema")
    p.add_argument("event_type")
    p.add_argument("--payload", required=True, help="the payload as JSON")
    p.add_argument("--version", type=int, help="schema version (default: current)")
    p.set_defaults(func=cmd_events_validate)

    p = sub.add_parser("doctor", help="check environment, database, Dagster instance, secrets key and endpoints; prints a fix for each problem")
    p.set_defaults(func=cmd_doctor)

    env = sub.add_parser("env", help="environment variables (.env.example)").add_subparsers(dest="env_command", required=True)
    p = env.add_parser("example", help="print .env.example (every CALIBR_* variable with type, default, description)")
    p.set_defaults(func=cmd_env_example)
    p = env.add_parser("check", help="validate the environment (exit 2 with one line when invalid)")
    p.set_defaults(func=cmd_env_check)
    p = env.add_parser("generate-key", help="print a new Fernet key (for CALIBR_SECRETS_KEYS, the secrets vault's keys)")
    p.set_defaults(func=cmd_env_generate_key)

    if settings.stripe_connect_enabled():
        _add_stripe_commands(sub)

"""``calibr amazon connect|status|map``: a project's optional, read-only Amazon channel.

Amazon is configured like a shop (a ``shops`` row with platform ``amazon``) plus an
``amazon_accounts`` row whose LWA client secret and refresh token are encrypted through the
secrets vault (``connectors/amazon_credentials.seal`` → ``current_vault()``). Secrets are
read from files (or ``-`` for stdin), never from the command line, and never printed:
``status`` says only whether they are stored and readable with the current keys.

User errors raise :class:`CalibrError` (one line, exit 2), like every other command.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from urllib.parse import urlsplit

from calibr_pipeline import settings
from calibr_pipeline.domain.errors import CalibrError

LWA_TOKEN_URL = "https://api.amazon.com/auth/o2/token"
_ID = re.compile(r"^[A-Za-z0-9]{1,64}$")
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._\-]{1,200}$")


def add_amazon_commands(sub) -> None:
    amazon = sub.add_parser("amazon", help="optional read-only Amazon channel per project (docs/analytics.md#amazon)").add_subparsers(
        dest="amazon_command", required=True)
    p = amazon.add_parser("connect", help="store the project's SP-API seller account (secrets from files or stdin, encrypted)")
    p.add_argument("--project", required=True, help="project slug")
    p.add_argument("--seller-id", required=True, help="Amazon merchant (seller) id")
    p.add_argument("--marketplace-id", required=True, help="marketplace id (e.g. ATVPDKIKX0DER for amazon.com)")
    p.add_argument("--endpoint", required=True, help="SP-API endpoint, e.g. https://sellingpartnerapi-na.amazon.com")
    p.add_argument("--lwa-client-id", required=True, help="Login with Amazon client id of the app (not a secret)")
    p.add_argument("--lwa-client-secret-file", required=True, metavar="PATH", help="file holding the LWA client secret ('-': stdin)")
    p.add_argument("--refresh-token-file", required=True, metavar="PATH", help="file holding the seller's refresh token ('-': stdin)")
    p.add_argument("--lwa-token-url", default=LWA_TOKEN_URL, help=f"LWA token endpoint (default {LWA_TOKEN_URL})")
    p.add_argument("--currency", help="currency of the marketplace's orders (default: the project's)")
    p.set_defaults(func=cmd_amazon_connect)
    p = amazon.add_parser("status", help="the project's Amazon channel: account, mapped SKUs, last synced day (no secrets)")
    p.add_argument("--project", required=True, help="project slug")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_amazon_status)
    p = amazon.add_parser("map", help="map an Amazon listing (ASIN and/or seller SKU) to one of our SKUs")
    p.add_argument("--project", required=True, help="project slug")
    p.add_argument("--sku", required=True, help="our SKU")
    p.add_argument("--asin", help="the listing's ASIN (required for a new mapping)")
    p.add_argument("--seller-sku", help="the seller SKU on Amazon (default: our SKU)")
    p.set_defaults(func=cmd_amazon_map)


def _url(args) -> str:
    from calibr_pipeline.cli import _warehouse_url

    return _warehouse_url(args)


def _read_secret(path: str, option: str, stdin_used: list[bool]) -> str:
    if path == "-":
        if stdin_used[0]:
            raise CalibrError(f"{option}: only one secret can be read from stdin; put the other in a file")
        stdin_used[0] = True
        value = sys.stdin.readline()
    else:
        file = Path(path)
        if not file.is_file():
            raise CalibrError(f"{option}: {path!r} is not a readable file")
        try:
            value = file.read_text(encoding="utf-8")
        except (OSError, UnicodeError) as exc:
            raise CalibrError(f"{option}: cannot read {path!r} ({type(exc).__name__})") from None
    value = value.strip()
    if not value or any(c.isspace() for c in value) or len(value) > 4096:
        raise CalibrError(f"{option}: the secret must be one non-empty line without spaces")
    return value


def _https_url(value: str, option: str) -> str:
    try:
        parts = urlsplit((value or "").strip())
        host, port = (parts.hostname or "").lower(), parts.port
    except ValueError:
        raise CalibrError(f"{option} {value!r} is not a valid URL") from None
    if parts.scheme not in ("https", "http") or not host:
        raise CalibrError(f"{option} {value!r} must be an https:// URL")
    if parts.username or parts.password:
        raise CalibrError(f"{option} must not contain credentials")
    if parts.scheme == "http":
        allowed = {h.lower() for h in settings.sandbox_allowed_hosts()}
        if host not in allowed and f"{host}:{port}" not in allowed:
            raise CalibrError(f"{option} {value!r} uses plain http: use https (http is allowed only for sandbox hosts "
                              "listed in CALIBR_SANDBOX_ALLOWED_HOSTS)")
    return value.strip().rstrip("/")


def cmd_amazon_connect(args) -> int:
    from calibr_pipeline.cli import _currency
    from calibr_pipeline.services.amazon_sync import configure_amazon
    from calibr_pipeline.warehouse.engine import session_scope
    from calibr_pipeline.warehouse.tenancy import project_by_slug

    if not _ID.match(args.seller_id or ""):
        raise CalibrError(f"--seller-id {args.seller_id!r} must be 1 to 64 letters or digits")
    if not _ID.match(args.marketplace_id or "") or len(args.marketplace_id) > 32:
        raise CalibrError(f"--marketplace-id {args.marketplace_id!r} must be 1 to 32 letters or digits")
    if not _CLIENT_ID.match(args.lwa_client_id or ""):
        raise CalibrError("--lwa-client-id must be 1 to 200 letters, digits, '.', '_' or '-'")
    endpoint = _https_url(args.endpoint, "--endpoint")
    token_url = _https_url(args.lwa_token_url, "--lwa-token-url")
    stdin_used = [False]
    client_secret = _read_secret(args.lwa_client_secret_file, "--lwa-client-secret-file", stdin_used)
    refresh_token = _read_secret(args.refresh_token_file, "--refresh-token-file", stdin_used)
    url = _url(args)
    with session_scope(url) as session:
        project = project_by_slug(session, args.project)
        currency = _currency(args.currency, "--currency") if args.currency else project.currency
        shop = configure_amazon(
            session, project, seller_id=args.seller_id, marketplace_id=args.marketplace_id, endpoint=endpoint, token_url=token_url,
            client_id=args.lwa_client_id, client_secret=client_secret, refresh_token=refresh_token, currency=currency, sku_map=None,
        )
        print(f"amazon channel {shop.name!r} (shop id {shop.id}, {currency}) for project {project.slug}: seller {args.seller_id}, "
              f"marketplace {args.marketplace_id}; credentials stored encrypted")
    return 0


def amazon_status(session, project) -> dict:
    from sqlalchemy import func, select

    from calibr_pipeline.connectors.amazon_credentials import unseal
    from calibr_pipeline.warehouse.models import AmazonAccount, AmazonCompetitivePrice, AmazonSkuMap, SalesOrder, Shop, Variant

    shop = session.scalars(select(Shop).where(Shop.project_id == project.id, Shop.platform == "amazon")).first()
    account = session.get(AmazonAccount, shop.id) if shop is not None else None
    if shop is None or account is None:
        return {"project": project.slug, "connected": False}
    try:
        unseal(account.sealed_credentials)
        readable = True
    except CalibrError:
        readable = False
    mapping = session.execute(
        select(AmazonSkuMap.seller_sku, AmazonSkuMap.asin, Variant.sku).join(Variant, Variant.id == AmazonSkuMap.variant_id)
        .where(AmazonSkuMap.shop_id == shop.id).order_by(Variant.sku, AmazonSkuMap.seller_sku)
    ).all()
    last_orders = session.scalar(select(func.max(SalesOrder.synced_day)).where(SalesOrder.shop_id == shop.id))
    last_prices = session.scalar(select(func.max(AmazonCompetitivePrice.price_day)).where(AmazonCompetitivePrice.shop_id == shop.id))
    return {
        "project": project.slug, "connected": True, "shop": shop.name, "shop_id": shop.id, "currency": shop.currency,
        "endpoint": shop.admin_endpoint, "lwa_token_url": account.token_url, "seller_id": account.seller_id,
        "marketplace_id": account.marketplace_id, "lwa_client_id": account.client_id,
        "credentials": "stored, readable with the current keys" if readable else "stored, NOT readable with the current keys (connect again)",
        "mapped_skus": [{"sku": m.sku, "seller_sku": m.seller_sku, "asin": m.asin} for m in mapping],
        "last_order_sync_day": last_orders.isoformat() if last_orders else None,
        "last_competitive_price_day": last_prices.isoformat() if last_prices else None,
    }


def cmd_amazon_status(args) -> int:
    from calibr_pipeline.warehouse.engine import session_scope
    from calibr_pipeline.warehouse.tenancy import project_by_slug

    with session_scope(_url(args)) as session:
        status = amazon_status(session, project_by_slug(session, args.project))
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True))
        return 0
    if not status["connected"]:
        print(f"project {status['project']}: no Amazon channel (add one with `calibr amazon connect --project {status['project']} ...`)")
        return 0
    for key in ("project", "shop", "currency", "endpoint", "lwa_token_url", "seller_id", "marketplace_id", "lwa_client_id", "credentials",
                "last_order_sync_day", "last_competitive_price_day"):
        print(f"{key}: {status[key] if status[key] is not None else '-'}")
    print(f"mapped_skus: {len(status['mapped_skus'])}")
    for m in status["mapped_skus"]:
        print(f"  {m['sku']}\tseller SKU {m['seller_sku']}\tASIN {m['asin']}")
    return 0


def cmd_amazon_map(args) -> int:
    from calibr_pipeline.services.amazon_sync import map_amazon_sku
    from calibr_pipeline.warehouse.engine import session_scope
    from calibr_pipeline.warehouse.tenancy import project_by_slug

    if args.asin is None and args.seller_sku is None:
        raise CalibrError("give --asin, --seller-sku or both")
    with session_scope(_url(args)) as session:
        project = project_by_slug(session, args.project)
        row = map_amazon_sku(session, project, sku=args.sku, asin=args.asin, seller_sku=args.seller_sku)
        print(f"amazon listing seller SKU {row.seller_sku} / ASIN {row.asin} -> {args.sku} in project {project.slug}")
    return 0

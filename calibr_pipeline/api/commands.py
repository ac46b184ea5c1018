"""``calibr api``, ``calibr tokens create|list|revoke``, ``calibr secrets init|rotate`` (registered by cli.build_parser)."""

from __future__ import annotations

import json
import os

from calibr_pipeline import settings
from calibr_pipeline.domain.errors import CalibrError


def _url(args) -> str:
    from calibr_pipeline.warehouse.engine import upgrade_to_head

    url = args.warehouse_url or settings.warehouse_url()
    upgrade_to_head(url)
    return url


def cmd_api(args) -> int:
    import uvicorn

    from calibr_pipeline.api.app import create_app

    if not 0 <= args.port <= 65535:
        raise CalibrError(f"--port {args.port} is not a TCP port (0-65535)")
    from calibr_pipeline import settings

    settings.require_valid_environment()  # refuse to start on an invalid environment, with one line
    app = create_app(_url(args))
    print(f"Calibrate API on http://{args.host}:{args.port}/api/v1/docs (console: http://{args.host}:{args.port}/console)", flush=True)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False, server_header=False)
    except OSError as exc:
        raise CalibrError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from exc
    return 0


def cmd_tokens_create(args) -> int:
    from calibr_pipeline.services.api_tokens import create_token, parse_duration
    from calibr_pipeline.warehouse.engine import session_scope

    expires_in = parse_duration(args.expires_in) if args.expires_in else None
    with session_scope(_url(args)) as session:
        created = create_token(
            session, tenant_slug=args.tenant, scope=args.scope, name=args.name, expires_in=expires_in,
            rate_limit_per_minute=args.rate_limit, actor=args.actor,
        )
    expiry = created.expires_at.isoformat() if created.expires_at else "never"
    print(f"token id {created.id} for tenant {created.tenant_slug}, scope {created.scope}, expires {expiry}", flush=True)
    print("store it now; it is not shown again:")
    print(created.token)
    return 0


def cmd_tokens_list(args) -> int:
    from calibr_pipeline.services.api_tokens import list_tokens
    from calibr_pipeline.warehouse.engine import session_scope

    with session_scope(_url(args)) as session:
        tokens = list_tokens(session, tenant_slug=args.tenant)
    if args.json:
        print(json.dumps(tokens, indent=2, sort_keys=True))
        return 0
    print("id\ttenant\tscope\tstatus\tprefix\texpires\tname")
    for t in tokens:
        print(f"{t['id']}\t{t['tenant']}\t{t['scope']}\t{t['status']}\t{t['prefix']}…\t{t['expires_at'] or 'never'}\t{t['name']}")
    return 0


def cmd_tokens_revoke(args) -> int:
    from calibr_pipeline.services.api_tokens import revoke_token
    from calibr_pipeline.warehouse.engine import session_scope

    with session_scope(_url(args)) as session:
        token = revoke_token(session, args.token_id, actor=args.actor)
        print(f"token {token.id} revoked")
    return 0


def add_api_commands(sub) -> None:
    """``api``, ``tokens`` and ``secrets``."""
    add_secrets_commands(sub)
    actor = os.environ.get("USER", "cli")
    p = sub.add_parser("api", help="serve the HTTP API and the runs console (docs/api.md)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=cmd_api)

    tokens = sub.add_parser("tokens", help="per-tenant API tokens").add_subparsers(dest="tokens_command", required=True)
    p = tokens.add_parser("create", help="create a token (printed once; only its hash is stored)")
    p.add_argument("--tenant", required=True)
    p.add_argument("--scope", choices=["read", "write"], required=True)
    p.add_argument("--name")
    p.add_argument("--expires-in", help="e.g. 90d, 12h, 2w (default: never)")
    p.add_argument("--rate-limit", type=int, help="requests per minute for this token (default: the server's CALIBR_API_RATE_LIMIT)")
    p.add_argument("--actor", default=actor)
    p.set_defaults(func=cmd_tokens_create)
    p = tokens.add_parser("list")
    p.add_argument("--tenant")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_tokens_list)
    p = tokens.add_parser("revoke")
    p.add_argument("token_id", type=int)
    p.add_argument("--actor", default=actor)
    p.set_defaults(func=cmd_tokens_revoke)


# --- secrets vault ---------------------------------------------------------------------


def cmd_secrets_init(args) -> int:
    from calibr_pipeline.secrets.rotation import init
    from calibr_pipeline.secrets.vault import KEYS_ENV

    if os.environ.get(KEYS_ENV) and not args.force:
        print(f"keys come from {KEYS_ENV}; no key file needed")
        return 0
    created, path = init(force=args.force)
    print(f"{'created' if created else 'kept the existing'} secrets key file {path} (mode 0600; back it up)")
    return 0


def cmd_secrets_rotate(args) -> int:
    from calibr_pipeline.secrets.rotation import rotate

    result = rotate(_url(args), keep_old=args.keep_old)
    print(f"re-encrypted {result.reencrypted} secret(s) under the newest key from {result.source}; {result.keys_in_use} key(s) in use")
    return 0


def add_secrets_commands(sub) -> None:
    secrets = sub.add_parser("secrets", help="the secrets vault (shop tokens encrypted at rest)").add_subparsers(dest="secrets_command", required=True)
    p = secrets.add_parser("init", help="create the key file ($CALIBR_HOME/secrets.key or $CALIBR_SECRETS_KEY_FILE)")
    p.add_argument("--force", action="store_true", help="replace an existing key file (stored secrets become unreadable)")
    p.set_defaults(func=cmd_secrets_init)
    p = secrets.add_parser("rotate", help="new key, re-encrypt every stored secret, drop the old key")
    p.add_argument("--keep-old", action="store_true", help="keep the old key(s) in the key file for other running processes")
    p.set_defaults(func=cmd_secrets_rotate)

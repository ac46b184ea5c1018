"""``calibr api``, ``calibr tokens create|list|revoke``, ``calibr secrets init|rotate`` (registered by cli.build_parser)."""

from __future__ import annotations

import contextlib
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

    loaded = settings.require_valid_environment()  # refuse to start on an invalid environment, with one line
    workers = args.workers if args.workers is not None else loaded.API_WORKERS
    if not 1 <= workers <= 64:
        raise CalibrError(f"--workers {workers} must be between 1 and 64")
    url = _url(args)
    options = dict(host=args.host, port=args.port, log_level=args.log_level, access_log=False, server_header=False)
    print(f"Calibrate API on http://{args.host}:{args.port}/api/v1/docs (console: http://{args.host}:{args.port}/console)"
          + (f", {workers} worker processes" if workers > 1 else ""), flush=True)
    try:
        if workers == 1:
            uvicorn.run(create_app(url), **options)
        else:
            with _shared_worker_state(url):
                uvicorn.run("calibr_pipeline.api.app:create_app_for_workers", factory=True, workers=workers, **options)
    except OSError as exc:
        raise CalibrError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from exc
    return 0


@contextlib.contextmanager
def _shared_worker_state(url: str):
    """What worker processes must share, in a private folder removed when the server stops:
    prometheus_client's multiprocess files (so /metrics sums every worker), the rate-limit
    buckets (a token's limit is the server's, not each worker's) and the console's key."""
    import secrets
    import shutil
    import tempfile

    from calibr_pipeline.api.app import SHARED_STATE_ENV

    state = tempfile.mkdtemp(prefix="calibr-api-")  # mode 0700
    try:
        os.mkdir(os.path.join(state, "metrics"))
        key = os.open(os.path.join(state, "console.key"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(key, "wb") as handle:
            handle.write(secrets.token_bytes(32))
        # The workers are new interpreters: they read all of this from the environment
        # before prometheus_client is imported.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.path.join(state, "metrics")
        os.environ[SHARED_STATE_ENV] = state
        os.environ[settings.WAREHOUSE_URL_ENV] = url
        yield state
    finally:
        shutil.rmtree(state, ignore_errors=True)


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
    p.add_argument("--workers", type=int, help="worker processes (default CALIBR_API_WORKERS, 1); several share metrics, rate limits and the console key")
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

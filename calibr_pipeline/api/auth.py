"""Bearer-token authentication, scopes and the per-token rate limit.

Other areas' routers depend on :func:`require_read` / :func:`require_write`; both return a
:class:`Principal` (``tenant_id``, ``tenant_slug``, ``token_id``, ``scope``). Missing, bad,
revoked or expired tokens answer 401; a read token on a write endpoint 403; a token over
its rate limit 429 with ``Retry-After``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import Request

from calibr_pipeline.api.errors import ApiError
from calibr_pipeline.services.api_tokens import AuthenticationError, Principal, TokenRecord, authenticate, hash_token
from calibr_pipeline.warehouse.engine import session_scope
from calibr_pipeline.warehouse.rls import act_as_tenant
from calibr_pipeline.warehouse.scoped import TenantScope

__all__ = ["Principal", "require_read", "require_write", "open_scope", "RateLimiter", "SharedRateLimiter"]

SESSION_COOKIE = "calibr_session"


def _take_token(bucket: tuple[float, float] | None, now: float, limit: float) -> tuple[tuple[float, float], float | None]:
    """One request against a token bucket of ``limit`` a minute (bursts up to ``limit``):
    (the bucket after it, None when allowed else the seconds to wait). ``bucket`` is
    (tokens left, last refill), None for a token not seen yet."""
    rate = limit / 60.0
    tokens, last = bucket if bucket is not None else (limit, now)
    tokens = min(limit, tokens + max(0.0, now - last) * rate)
    if tokens >= 1.0:
        return (tokens - 1.0, now), None
    return (tokens, now), (1.0 - tokens) / rate


class RateLimiter:
    """A token bucket per API token: ``limit`` requests a minute, bursts up to ``limit``."""

    def __init__(self, default_per_minute: int):
        self.default_per_minute = default_per_minute
        self._buckets: dict[int, tuple[float, float]] = {}  # token id -> (tokens left, last refill)
        self._lock = threading.Lock()

    def check(self, token_id: int, per_minute: int | None) -> float | None:
        """None when allowed, else the seconds to wait."""
        limit = float(per_minute or self.default_per_minute)
        with self._lock:
            self._buckets[token_id], wait = _take_token(self._buckets.get(token_id), time.monotonic(), limit)
        return wait


class SharedRateLimiter:
    """The same token bucket per API token, kept in a SQLite file that every worker process of
    one ``calibr api --workers N`` opens, so the limit holds for the server, not per worker.

    One short IMMEDIATE transaction a request on a file in the server's private state folder
    (no fsync: the buckets die with the server, as the in-memory ones do).
    """

    def __init__(self, default_per_minute: int, path: str):
        self.default_per_minute = default_per_minute
        self.path = path
        self._local = threading.local()
        with self._connection() as connection:
            connection.execute("CREATE TABLE IF NOT EXISTS buckets (token_id INTEGER PRIMARY KEY, tokens REAL NOT NULL, last REAL NOT NULL)")

    def _connection(self):
        connection = getattr(self._local, "connection", None)
        if connection is None:
            import sqlite3

            connection = sqlite3.connect(self.path, timeout=10, isolation_level=None)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=OFF")
            self._local.connection = connection
        return _Transaction(connection)

    def check(self, token_id: int, per_minute: int | None) -> float | None:
        limit = float(per_minute or self.default_per_minute)
        now = time.time()  # the wall clock: the one every process reads alike
        with self._connection() as connection:
            row = connection.execute("SELECT tokens, last FROM buckets WHERE token_id = ?", (token_id,)).fetchone()
            (tokens, last), wait = _take_token(row, now, limit)
            connection.execute("INSERT OR REPLACE INTO buckets (token_id, tokens, last) VALUES (?, ?, ?)", (token_id, tokens, last))
        return wait


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on error) on a sqlite3 connection in autocommit mode."""

    def __init__(self, connection):
        self.connection = connection

    def __enter__(self):
        self.connection.execute("BEGIN IMMEDIATE")
        return self.connection

    def __exit__(self, kind, _value, _traceback):
        self.connection.execute("ROLLBACK" if kind else "COMMIT")
        return False


class TokenCache:
    """Recently authenticated tokens, for ``ttl`` seconds (never past their expiry).

    Saves a database round trip per request; a revoked token stops working within ``ttl``.
    Keyed by the token's hash, so the cache holds no usable secret.
    """

    def __init__(self, ttl: float):
        self.ttl = ttl
        self._entries: dict[str, tuple[TokenRecord, float]] = {}
        self._lock = threading.Lock()

    def get(self, token_hash: str) -> TokenRecord | None:
        if self.ttl <= 0:
            return None
        with self._lock:
            entry = self._entries.get(token_hash)
        if entry is None or entry[1] <= time.monotonic():
            return None
        return entry[0]

    def put(self, token_hash: str, record: TokenRecord, seconds_to_expiry: float | None) -> None:
        if self.ttl <= 0:
            return
        ttl = self.ttl if seconds_to_expiry is None else min(self.ttl, seconds_to_expiry)
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[token_hash] = (record, time.monotonic() + ttl)


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": 'Bearer realm="calibr"'})


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise _unauthorized("the Authorization header must be 'Bearer <token>'")
    return value.strip()


def authenticate_request(request: Request, token: str | None) -> Principal:
    if token is None:
        raise _unauthorized("missing bearer token: send 'Authorization: Bearer <token>' (create one with `calibr tokens create`)")
    cache: TokenCache = request.app.state.token_cache
    key = hash_token(token)
    record = cache.get(key)
    if record is None:
        try:
            with session_scope(request.app.state.warehouse_url) as session:
                record = authenticate(session, token)
        except AuthenticationError as exc:
            raise _unauthorized(str(exc)) from None
        cache.put(key, record, record.seconds_to_expiry)
    wait = request.app.state.rate_limiter.check(record.principal.token_id, record.rate_limit_per_minute)
    if wait is not None:
        retry_after = max(1, math.ceil(wait))
        raise ApiError(429, "rate_limited", f"rate limit exceeded for this token; retry in {retry_after} s",
                       {"retry_after_seconds": retry_after}, headers={"Retry-After": str(retry_after)})
    request.state.principal = record.principal
    return record.principal


def require_read(request: Request) -> Principal:
    """Any valid token of the tenant (read or write scope)."""
    return authenticate_request(request, bearer_token(request))


def require_write(request: Request) -> Principal:
    """A write-scoped token."""
    principal = require_read(request)
    if principal.scope != "write":
        raise ApiError(403, "forbidden", "this token has read scope; the endpoint needs a write token")
    return principal


@contextmanager
def open_scope(request: Request, principal: Principal) -> Iterator[TenantScope]:
    """One transaction scoped to the caller's tenant; commits when the block ends without error.

    Handlers open it themselves (rather than through a yield dependency) so that a failed
    commit is the request's error, before any response is sent: nothing is half-written.
    """
    with session_scope(request.app.state.warehouse_url) as session:
        bind_tenant(session, principal.tenant_id)
        yield TenantScope(session, principal.tenant_id)


def bind_tenant(session, tenant_id: int) -> None:
    """On PostgreSQL every transaction of this session runs as the ``calibr_api`` role (not an
    owner, no BYPASSRLS) for this tenant: row-level security hides every other tenant's rows even
    from a query that forgets its filter (warehouse/rls.py)."""
    act_as_tenant(session, tenant_id)

"""Per-tenant API tokens: create (shown once), list, revoke, authenticate.

A token is ``cal_`` followed by 43 URL-safe random characters (256 bits). Only its
SHA-256 hash is stored: tokens are random, so a slow password hash adds nothing, and a
hash lookup keeps authentication one indexed query.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from calibr_pipeline.domain.errors import CalibrError
from calibr_pipeline.warehouse.models import ApiToken, Tenant
from calibr_pipeline.warehouse.outbox import record_event
from calibr_pipeline.warehouse.tenancy import InvalidInputError, NotFoundError, tenant_by_slug
from calibr_pipeline.warehouse.types import utcnow

TOKEN_PREFIX = "cal_"
LAST_USED_RESOLUTION = timedelta(minutes=1)
SCOPES = ("read", "write")
_DURATION = re.compile(r"^\s*(\d{1,5})\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def parse_duration(text: str) -> timedelta:
    """``90d``, ``12h``, ``30m``, ``2w`` or ``45s``."""
    match = _DURATION.match(text or "")
    if not match or int(match.group(1)) == 0:
        raise InvalidInputError(f"duration {text!r} is not a positive number followed by s, m, h, d or w (e.g. 90d)")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


@dataclass(frozen=True)
class CreatedToken:
    id: int
    token: str  # the secret: printed once, never stored
    tenant_slug: str
    scope: str
    expires_at: datetime | None


@dataclass(frozen=True)
class Principal:
    """Who is calling: the API's authorization subject (shared with every area's router)."""

    tenant_id: int
    tenant_slug: str
    token_id: int
    scope: str

    @property
    def actor(self) -> str:
        return f"api-token:{self.token_id}"

    @property
    def can_write(self) -> bool:
        return self.scope == "write"


def create_token(
    session: Session,
    *,
    tenant_slug: str,
    scope: str,
    name: str | None = None,
    expires_in: timedelta | None = None,
    rate_limit_per_minute: int | None = None,
    actor: str,
) -> CreatedToken:
    if scope not in SCOPES:
        raise InvalidInputError(f"scope {scope!r} is not one of {', '.join(SCOPES)}")
    if rate_limit_per_minute is not None and not 1 <= rate_limit_per_minute <= 1_000_000:
        raise InvalidInputError(f"rate limit must be between 1 and 1000000 requests per minute, got {rate_limit_per_minute}")
    tenant = tenant_by_slug(session, tenant_slug)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    row = ApiToken(
        tenant_id=tenant.id,
        name=(name or f"{scope} token")[:200],
        token_prefix=token[:10],
        token_hash=hash_token(token),
        scope=scope,
        rate_limit_per_minute=rate_limit_per_minute,
        created_by=actor,
        created_at=now,
        expires_at=now + expires_in if expires_in else None,
    )
    session.add(row)
    session.flush()
    record_event(session, "api.token.created", {"token_id": row.id, "scope": scope, "name": row.name}, tenant_id=tenant.id, actor=actor)
    return CreatedToken(row.id, token, tenant.slug, scope, row.expires_at)


def list_tokens(session: Session, *, tenant_slug: str | None = None) -> list[dict]:
    query = select(ApiToken, Tenant.slug).join(Tenant, Tenant.id == ApiToken.tenant_id).order_by(ApiToken.id)
    if tenant_slug:
        query = query.where(ApiToken.tenant_id == tenant_by_slug(session, tenant_slug).id)
    now = utcnow()
    out = []
    for token, slug in session.execute(query).all():
        status = "revoked" if token.revoked_at else "expired" if token.expires_at and token.expires_at <= now else "active"
        out.append(
            {
                "id": token.id,
                "tenant": slug,
                "name": token.name,
                "prefix": token.token_prefix,
                "scope": token.scope,
                "status": status,
                "rate_limit_per_minute": token.rate_limit_per_minute,
                "created_at": token.created_at.isoformat(),
                "expires_at": token.expires_at.isoformat() if token.expires_at else None,
                "last_used_at": token.last_used_at.isoformat() if token.last_used_at else None,
            }
        )
    return out


def revoke_token(session: Session, token_id: int, *, actor: str) -> ApiToken:
    token = session.get(ApiToken, token_id)
    if token is None:
        raise NotFoundError(f"unknown API token id {token_id} (see `calibr tokens list`)")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        record_event(session, "api.token.revoked", {"token_id": token.id}, tenant_id=token.tenant_id, actor=actor)
    return token


class AuthenticationError(CalibrError):
    """No usable token: missing, malformed, unknown, revoked or expired (always the same answer)."""


@dataclass(frozen=True)
class TokenRecord:
    principal: Principal
    rate_limit_per_minute: int | None
    seconds_to_expiry: float | None = None


def authenticate(session: Session, token: str | None) -> TokenRecord:
    """The token's principal, or :class:`AuthenticationError` with a reason safe to show."""
    if not token or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        raise AuthenticationError("missing or malformed bearer token")
    row = session.execute(
        select(ApiToken, Tenant.slug).join(Tenant, Tenant.id == ApiToken.tenant_id).where(ApiToken.token_hash == hash_token(token))
    ).first()
    if row is None:
        raise AuthenticationError("invalid token")
    api_token, slug = row
    if api_token.revoked_at is not None:
        raise AuthenticationError("token revoked")
    now = utcnow()
    if api_token.expires_at is not None and api_token.expires_at <= now:
        raise AuthenticationError("token expired")
    if api_token.last_used_at is None or now - api_token.last_used_at >= LAST_USED_RESOLUTION:
        api_token.last_used_at = now  # at most one write a minute per token
    to_expiry = (api_token.expires_at - now).total_seconds() if api_token.expires_at is not None else None
    return TokenRecord(Principal(api_token.tenant_id, slug, api_token.id, api_token.scope), api_token.rate_limit_per_minute, to_expiry)

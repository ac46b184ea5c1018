"""Where a merchant's shop may be reached: https only, except the loopback sandbox."""

from __future__ import annotations

from typing import Iterable
from urllib.parse import urlsplit

from calibr_pipeline.domain.errors import CalibrError


class ShopEndpointError(CalibrError):
    pass


def validate_shop_endpoint(url: str, *, allowed_hosts: Iterable[str] = ()) -> str:
    """The endpoint, or :class:`ShopEndpointError`: the Admin API token travels with every
    request, so plain http is refused unless the host (``host`` or ``host:port``) is an
    allow-listed sandbox host (``CALIBR_SANDBOX_ALLOWED_HOSTS``)."""
    try:
        parts = urlsplit((url or "").strip())
        host = (parts.hostname or "").lower()
        port = parts.port
    except ValueError:
        raise ShopEndpointError(f"shop endpoint {url!r} is not a valid URL") from None
    if parts.scheme not in ("https", "http") or not host:
        raise ShopEndpointError(f"shop endpoint {url!r} must be an https:// URL such as https://SHOP.myshopify.com/admin/api/2025-01/graphql.json")
    if parts.username or parts.password:
        raise ShopEndpointError("shop endpoint must not contain credentials; pass the token with --token-env")
    if parts.scheme == "http":
        allowed = {h.lower() for h in allowed_hosts}
        if host not in allowed and f"{host}:{port}" not in allowed:
            raise ShopEndpointError(
                f"shop endpoint {url!r} uses plain http: use https (http is allowed only for sandbox hosts listed in CALIBR_SANDBOX_ALLOWED_HOSTS)"
            )
    return url.strip()

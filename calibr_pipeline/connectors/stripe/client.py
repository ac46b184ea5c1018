"""The Stripe API through the official ``stripe`` SDK (``StripeClient``), per connected account.

``api_base`` / ``connect_base`` point the SDK at the loopback sandbox (the SDK's
``base_addresses``, the per-client form of ``stripe.api_base``). The SDK retries 429s
that carry ``Stripe-Should-Retry: true``, 409s, 5xx and connection errors with
exponential backoff and sends an ``Idempotency-Key`` on retried POSTs; this module adds
our own ``starting_after`` pagination over ``created`` windows and error classification.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Iterator

import stripe
from stripe.oauth_error import OAuthError

from calibr_pipeline.domain.errors import CalibrError

LIST_PATHS = {"product": "products", "price": "prices", "payment_intent": "payment_intents", "balance_transaction": "balance_transactions"}
PAGE_SIZE = 100


class StripeConnectorError(CalibrError):
    def __init__(self, message: str, *, transient: bool, kind: str):
        super().__init__(message)
        self.transient = transient
        self.kind = kind  # rate_limited | http_5xx | connection | auth | invalid_request | oauth


@dataclass(frozen=True)
class ConnectedAccount:
    account_id: str
    access_token: str
    refresh_token: str | None
    scope: str
    livemode: bool


@dataclass
class RequestStats:
    requests: int = 0
    pages: int = 0
    seconds: float = 0.0


def _classify(exc: stripe.StripeError) -> StripeConnectorError:
    status = getattr(exc, "http_status", None)
    message = getattr(exc, "user_message", None) or str(exc).strip() or type(exc).__name__
    if isinstance(exc, stripe.RateLimitError) or status == 429:
        return StripeConnectorError(f"Stripe rate limit after retries: {message}", transient=True, kind="rate_limited")
    if isinstance(exc, stripe.APIConnectionError):
        return StripeConnectorError(f"cannot reach Stripe: {message}", transient=True, kind="connection")
    if isinstance(exc, (stripe.AuthenticationError, stripe.PermissionError)):
        return StripeConnectorError(f"Stripe refused the credentials: {message}", transient=False, kind="auth")
    if status is not None and status >= 500:
        return StripeConnectorError(f"Stripe error {status}: {message}", transient=True, kind="http_5xx")
    return StripeConnectorError(f"Stripe refused the request: {message}", transient=False, kind="invalid_request")


class StripeConnect:
    def __init__(self, api_key: str, client_id: str, *, api_base: str | None = None, connect_base: str | None = None,
                 max_network_retries: int = 3, timeout: float = 20.0):
        bases = {}
        if api_base:
            bases["api"] = api_base.rstrip("/")
        if connect_base or api_base:
            bases["connect"] = (connect_base or api_base).rstrip("/")
        self.client_id = client_id
        self.stats = RequestStats()
        self._client = stripe.StripeClient(
            api_key, client_id=client_id, base_addresses=bases, max_network_retries=max_network_retries,
            http_client=stripe.RequestsClient(timeout=timeout),
        )

    # --- Connect OAuth (Standard accounts) -----------------------------------------------------
    def authorize_url(self, *, state: str, redirect_uri: str, scope: str = "read_write") -> str:
        return self._client.oauth.authorize_url({"scope": scope, "state": state, "redirect_uri": redirect_uri, "response_type": "code"})

    @staticmethod
    def new_state() -> str:
        return secrets.token_urlsafe(24)

    def exchange_code(self, code: str) -> ConnectedAccount:
        try:
            token = self._client.oauth.token({"grant_type": "authorization_code", "code": code})
        except OAuthError as exc:
            raise StripeConnectorError(f"Stripe Connect refused the authorization code: {exc.code}", transient=False, kind="oauth") from None
        except stripe.StripeError as exc:
            raise _classify(exc) from None
        data = token.to_dict()
        return ConnectedAccount(data["stripe_user_id"], data["access_token"], data.get("refresh_token"), data.get("scope", ""), bool(data.get("livemode")))

    # --- lists -----------------------------------------------------------------------------------
    def list_objects(self, kind: str, account_id: str, *, created_gte: int | None = None, created_lt: int | None = None) -> Iterator[dict]:
        """Every object of ``kind`` in the window, newest first, following ``has_more`` with ``starting_after``."""
        service = getattr(self._client.v1, LIST_PATHS[kind])
        params: dict = {"limit": PAGE_SIZE}
        created = {k: v for k, v in (("gte", created_gte), ("lt", created_lt)) if v is not None}
        if created:
            params["created"] = created
        while True:
            started = time.monotonic()
            try:
                page = service.list(params, {"stripe_account": account_id})
            except stripe.StripeError as exc:
                raise _classify(exc) from None
            finally:
                self.stats.requests += 1
                self.stats.seconds += time.monotonic() - started
            self.stats.pages += 1
            data = [obj.to_dict() for obj in page.data]
            yield from data
            if not page.has_more or not data:
                return
            params = {**params, "starting_after": data[-1]["id"]}

"""Read-only Amazon Selling Partner API client: LWA token exchange, Orders v0, Product Pricing v0.

Why not python-amazon-sp-api: its endpoints come from a fixed marketplace table (the
``host`` header is sliced off an ``https://`` URL) and the LWA token host is hard-coded
to ``api.amazon.com``, so it cannot be pointed at the loopback sandbox. This small client
speaks the same wire protocol over requests + tenacity:

* ``POST <token_url>`` with ``grant_type=refresh_token`` → an access token, cached until
  a minute before it expires and refreshed once on a 403 "expired";
* ``x-amz-access-token`` on every call; 429 ``QuotaExceeded`` and 5xx / timeouts /
  connection errors are retried with exponential backoff, never faster than the
  operation's ``x-amzn-RateLimit-Limit`` allows (1 / rate seconds);
* ``NextToken`` paging for getOrders.

Credentials (client secret, refresh token) are never logged or shown in ``repr``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import requests
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from calibr_pipeline.domain.errors import CalibrError, ErrorClass

log = logging.getLogger(__name__)


class SpApiError(CalibrError):
    def __init__(self, message: str, *, error_class: ErrorClass, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.error_class = error_class
        self.status = status
        self.code = code


class _Retryable(Exception):
    def __init__(self, error: SpApiError, wait: float | None = None):
        super().__init__(str(error))
        self.error = error
        self.wait = wait


@dataclass
class SpApiStats:
    requests: int = 0
    throttled: int = 0
    retries: int = 0
    token_exchanges: int = 0


@dataclass(frozen=True)
class SpApiCredentials:
    client_id: str
    client_secret: str = field(repr=False)
    refresh_token: str = field(repr=False)


class SpApiClient:
    def __init__(
        self,
        endpoint: str,
        token_url: str,
        credentials: SpApiCredentials,
        *,
        marketplace_id: str,
        timeout: float | tuple[float, float] = (3.05, 30.0),
        max_attempts: int = 6,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        session: requests.Session | None = None,
    ):
        self.endpoint = endpoint.rstrip("/")
        self.token_url = token_url
        self._credentials = credentials
        self.marketplace_id = marketplace_id
        self.timeout = timeout
        self.max_attempts = max_attempts
        self._backoff = wait_random_exponential(multiplier=backoff_base, max=backoff_max)
        self._sleep = sleep
        self.session = session or requests.Session()
        self.stats = SpApiStats()
        self._token: tuple[str, float] | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SpApiClient(endpoint={self.endpoint!r}, client_id={self._credentials.client_id[:12]!r}…)"

    def close(self) -> None:
        self.session.close()

    # -- auth -----------------------------------------------------------------------------

    def access_token(self, *, refresh: bool = False) -> str:
        with self._lock:
            if not refresh and self._token and self._token[1] > time.monotonic():
                return self._token[0]
            self.stats.token_exchanges += 1
            try:
                response = self.session.post(
                    self.token_url,
                    data={
                        "grant_type": "refresh_token",
                        "refresh_token": self._credentials.refresh_token,
                        "client_id": self._credentials.client_id,
                        "client_secret": self._credentials.client_secret,
                    },
                    timeout=self.timeout,
                )
            except requests.RequestException as exc:
                raise SpApiError(f"Login with Amazon unreachable: {type(exc).__name__}", error_class=ErrorClass.CONNECTION) from exc
            if response.status_code != 200:
                try:
                    error = response.json().get("error", "")
                except ValueError:
                    error = ""
                raise SpApiError(
                    f"Login with Amazon refused the credentials (HTTP {response.status_code} {error})",
                    error_class=ErrorClass.HTTP_4XX, status=response.status_code, code=error or None,
                )
            body = response.json()
            self._token = (body["access_token"], time.monotonic() + max(0, int(body.get("expires_in", 3600)) - 60))
            return self._token[0]

    # -- calls ------------------------------------------------------------------------------

    def get(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        retrying = Retrying(
            retry=retry_if_exception_type(_Retryable),
            wait=self._wait,
            stop=stop_after_attempt(self.max_attempts),
            sleep=self._sleep,
            before_sleep=self._count_retry,
            reraise=True,
        )
        try:
            return retrying(self._get_once, path, params)
        except _Retryable as exc:
            raise exc.error from exc

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        backoff = self._backoff(state)
        if isinstance(exc, _Retryable) and exc.wait is not None:
            return max(backoff, exc.wait)
        return backoff

    def _count_retry(self, state: RetryCallState) -> None:
        self.stats.retries += 1

    def _get_once(self, path: str, params: dict[str, Any], _refreshed: bool = False) -> dict[str, Any]:
        self.stats.requests += 1
        headers = {"x-amz-access-token": self.access_token(), "accept": "application/json", "user-agent": "calibrate/0.1 (Language=Python)"}
        try:
            response = self.session.get(self.endpoint + path, params=params, headers=headers, timeout=self.timeout)
        except requests.Timeout as exc:
            raise _Retryable(SpApiError("SP-API did not answer in time", error_class=ErrorClass.TIMEOUT)) from exc
        except requests.ConnectionError as exc:
            raise _Retryable(SpApiError(f"cannot reach SP-API: {type(exc).__name__}", error_class=ErrorClass.CONNECTION)) from exc
        status = response.status_code
        rate = _float(response.headers.get("x-amzn-RateLimit-Limit"))
        if status == 429:
            self.stats.throttled += 1
            # Wait at least one token's worth of the operation's rate before asking again.
            raise _Retryable(
                SpApiError("SP-API quota exceeded (429)", error_class=ErrorClass.RATE_LIMITED, status=429, code="QuotaExceeded"),
                wait=(1 / rate) if rate else None,
            )
        if status >= 500:
            raise _Retryable(SpApiError(f"SP-API HTTP {status}", error_class=ErrorClass.HTTP_5XX, status=status))
        try:
            body = response.json()
        except ValueError as exc:
            raise _Retryable(SpApiError("SP-API sent an unreadable body", error_class=ErrorClass.MALFORMED_BODY, status=status)) from exc
        if status == 403 and not _refreshed and "expired" in str(body).lower():
            self.access_token(refresh=True)
            return self._get_once(path, params, _refreshed=True)
        if status >= 400:
            errors = body.get("errors") if isinstance(body, dict) else None
            first = errors[0] if errors else {}
            raise SpApiError(
                f"SP-API refused {path} (HTTP {status} {first.get('code', '')}: {first.get('message', '')})",
                error_class=ErrorClass.HTTP_4XX, status=status, code=first.get("code"),
            )
        if not isinstance(body, dict) or "payload" not in body:
            raise _Retryable(SpApiError("SP-API answer without payload", error_class=ErrorClass.MALFORMED_BODY, status=status))
        return body

    # -- operations -------------------------------------------------------------------------

    def orders_updated(self, after: str, before: str, *, page_size: int = 100) -> Iterator[dict[str, Any]]:
        """getOrders for ``after <= LastUpdateDate < before`` (ISO 8601), every page."""
        params: dict[str, Any] = {"MarketplaceIds": self.marketplace_id, "LastUpdatedAfter": after, "LastUpdatedBefore": before, "MaxResultsPerPage": page_size}
        while True:
            payload = self.get("/orders/v0/orders", params)["payload"]
            yield from payload.get("Orders") or []
            token = payload.get("NextToken")
            if not token:
                return
            params = {"MarketplaceIds": self.marketplace_id, "NextToken": token}

    def order_items(self, order_id: str) -> list[dict[str, Any]]:
        return list(self.get(f"/orders/v0/orders/{order_id}/orderItems", {})["payload"].get("OrderItems") or [])

    def competitive_prices(self, asins: list[str]) -> list[dict[str, Any]]:
        results = []
        for start in range(0, len(asins), 20):
            chunk = asins[start : start + 20]
            results += self.get(
                "/products/pricing/v0/competitivePrice", {"MarketplaceId": self.marketplace_id, "ItemType": "Asin", "Asins": ",".join(chunk)}
            )["payload"]
        return results


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None

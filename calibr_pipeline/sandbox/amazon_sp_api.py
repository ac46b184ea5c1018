"""Loopback Amazon Selling Partner API: Login with Amazon, Orders v0, Product Pricing v0.

Built from the vendored SP-API models (``vendor/amazon_sp_api``, Apache-2.0): the
operations' paths and response shapes, and each operation's usage plan (rate and burst,
read from the model's "Usage Plan" table) drive the per-seller token buckets. Imports
nothing from connectors/.

* ``POST /auth/o2/token`` (form: ``grant_type=refresh_token``, ``refresh_token``,
  ``client_id``, ``client_secret``) answers ``{"access_token": "Atza|…", "token_type":
  "bearer", "expires_in": 3600}``; wrong credentials get LWA's 400 ``invalid_client`` /
  ``invalid_grant``;
* every API call needs ``x-amz-access-token`` (403 ``Unauthorized`` otherwise, 403
  ``Unauthorized`` with "expired" for a token past its life);
* ``GET /orders/v0/orders`` (``MarketplaceIds``, ``LastUpdatedAfter`` /
  ``LastUpdatedBefore`` or ``CreatedAfter``, ``MaxResultsPerPage`` ≤ 100, ``NextToken``),
  ``GET /orders/v0/orders/{orderId}/orderItems``, ``GET /products/pricing/v0/competitivePrice``
  (``MarketplaceId``, ``ItemType=Asin``, ``Asins`` ≤ 20);
* every answer carries ``x-amzn-RateLimit-Limit`` (the operation's rate) and
  ``x-amzn-RequestId``; a call beyond the bucket gets 429 ``QuotaExceeded``;
  ``rate_scale`` speeds the buckets up for tests;
* HTTP faults (5xx, 429, slow, malformed) through the world's FaultInjector, keyed by the
  seller id.

Data: each seller sells a seeded catalog (``SellerSKU``, ASIN, price); orders per day
follow a seeded Poisson demand, ``ItemPrice`` is the line total (price × quantity) as in
SP-API, one order in ten carries a ``PromotionDiscount``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import random
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from importlib import resources
from typing import Any, Self
from urllib.parse import parse_qs

from calibr_pipeline.sandbox._http import SandboxControl, SandboxHTTPServer, SandboxRequest, SandboxResponse

OPERATIONS = {
    "getOrders": ("ordersV0.json", "/orders/v0/orders"),
    "getOrderItems": ("ordersV0.json", "/orders/v0/orders/{orderId}/orderItems"),
    "getCompetitivePricing": ("productPricingV0.json", "/products/pricing/v0/competitivePrice"),
}
_USAGE = re.compile(r"\|\s*([\d.]+)\s*\|\s*(\d+)\s*\|")
TOKEN_LIFETIME_S = 3600


def usage_plans() -> dict[str, tuple[float, int]]:
    """operationId -> (requests per second, burst), from the vendored models."""
    plans = {}
    folder = resources.files("calibr_pipeline") / "vendor" / "amazon_sp_api"
    models = {name: json.loads((folder / name).read_text(encoding="utf-8")) for name in {f for f, _ in OPERATIONS.values()}}
    for operation, (model, path) in OPERATIONS.items():
        op = models[model]["paths"][path]["get"]
        assert op["operationId"] == operation
        match = _USAGE.search(op["description"])
        plans[operation] = (float(match[1]), int(match[2]))
    return plans


class TokenBucket:
    def __init__(self, rate: float, burst: int, clock=time.monotonic):
        self.rate, self.burst, self._clock = rate, burst, clock
        self._tokens, self._at = float(burst), clock()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True


@dataclass
class SellerItem:
    seller_sku: str
    asin: str
    title: str
    price: Decimal


@dataclass
class Seller:
    seller_id: str
    marketplace_id: str
    currency: str
    client_id: str
    client_secret: str = field(repr=False)
    refresh_token: str = field(repr=False)
    items: list[SellerItem] = field(default_factory=list)
    seed: int = 0
    buckets: dict[str, TokenBucket] = field(default_factory=dict, repr=False)
    requests: int = 0
    throttled: int = 0
    _orders: dict[dt.date, list[dict[str, Any]]] = field(default_factory=dict, repr=False)

    def orders_for_day(self, day: dt.date) -> list[dict[str, Any]]:
        if day not in self._orders:
            rng = random.Random(f"amazon:{self.seed}:{self.seller_id}:{day}")
            orders = []
            for index, item in enumerate(self.items):
                lam = 0.3 + (int(hashlib.sha256(item.asin.encode()).hexdigest(), 16) % 100) / 100
                limit, k, p = math.exp(-lam), 0, 1.0
                while True:
                    p *= rng.random()
                    if p <= limit:
                        break
                    k += 1
                for _ in range(k):
                    serial = len(orders) + 1
                    created = dt.datetime.combine(day, dt.time(), dt.UTC) + dt.timedelta(seconds=rng.randrange(86_400))
                    quantity = 1 + (rng.random() < 0.2)
                    promo = (item.price * quantity * Decimal("0.10")).quantize(Decimal("0.01")) if rng.random() < 0.1 else Decimal("0.00")
                    order_id = f"{100 + index % 900:03d}-{day:%y%m%d}{serial:03d}-{rng.randrange(10**7):07d}"
                    orders.append({"AmazonOrderId": order_id, "created": created, "item": item, "quantity": quantity, "promo": promo})
            orders.sort(key=lambda o: o["created"])
            self._orders[day] = orders
        return self._orders[day]


def _money(amount: Decimal, currency: str) -> dict[str, str]:
    return {"CurrencyCode": currency, "Amount": f"{amount:.2f}"}


def _iso(value: dt.datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _errors(code: str, message: str, status: int, headers: dict[str, str] | None = None) -> SandboxResponse:
    return SandboxResponse.json({"errors": [{"code": code, "message": message, "details": ""}]}, status=status, headers=headers or {})


class AmazonSpApiSandbox:
    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, control: SandboxControl | None = None, rate_scale: float = 1.0):
        self.plans = usage_plans()
        self.rate_scale = rate_scale
        self._sellers: dict[str, Seller] = {}
        self._tokens: dict[str, tuple[str, float]] = {}  # access token -> (seller id, expiry)
        self._lock = threading.Lock()
        self.server = SandboxHTTPServer(self, name="amazon-sp-api", host=host, port=port, control=control)

    # -- setup ------------------------------------------------------------------------------

    def add_seller(self, seller_id: str, items: list[SellerItem], *, currency: str = "USD", marketplace_id: str = "ATVPDKIKX0DER", seed: int = 0) -> Seller:
        digest = hashlib.sha256(f"{seed}:{seller_id}".encode()).hexdigest()
        seller = Seller(
            seller_id=seller_id, marketplace_id=marketplace_id, currency=currency,
            client_id=f"amzn1.application-oa2-client.{digest[:32]}", client_secret=f"amzn1.oa2-cs.v1.{digest[32:]}",
            refresh_token=f"Atzr|{digest[:48]}", items=items, seed=seed,
        )
        seller.buckets = {op: TokenBucket(rate * rate_scale, burst) for op, (rate, burst) in self.plans.items() for rate_scale in [self.rate_scale]}
        self._sellers[seller_id] = seller
        return seller

    def seller(self, seller_id: str) -> Seller:
        return self._sellers[seller_id]

    def start(self) -> Self:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/auth/o2/token"

    def expire_tokens(self) -> None:
        with self._lock:
            self._tokens = {t: (s, 0.0) for t, (s, _e) in self._tokens.items()}

    # -- HTTP -------------------------------------------------------------------------------

    def shop_for(self, request: SandboxRequest) -> str | None:
        if request.path == "/auth/o2/token":
            return "lwa"
        token = request.headers.get("x-amz-access-token", "")
        with self._lock:
            entry = self._tokens.get(token)
        return entry[0] if entry else None

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        if request.path == "/auth/o2/token":
            return self._token(request)
        request_id = str(uuid.uuid4())
        token = request.headers.get("x-amz-access-token", "")
        with self._lock:
            entry = self._tokens.get(token)
        if entry is None:
            return _errors("Unauthorized", "Access to requested resource is denied.", 403, {"x-amzn-RequestId": request_id})
        seller_id, expires = entry
        if expires < time.monotonic():
            return _errors("Unauthorized", "The access token you provided has expired.", 403, {"x-amzn-RequestId": request_id})
        seller = self._sellers[seller_id]
        operation, params = self._route(request.path)
        if operation is None:
            return _errors("NotFound", "Resource not found.", 404, {"x-amzn-RequestId": request_id})
        headers = {"x-amzn-RequestId": request_id, "x-amzn-RateLimit-Limit": f"{self.plans[operation][0] * self.rate_scale:g}"}
        seller.requests += 1
        if not seller.buckets[operation].take():
            seller.throttled += 1
            return _errors("QuotaExceeded", "You exceeded your quota for the requested resource.", 429, headers)
        query = {k: v[-1] for k, v in request.query.items()}
        try:
            payload = getattr(self, f"_{operation}")(seller, query, **params)
        except ValueError as exc:
            return _errors("InvalidInput", str(exc), 400, headers)
        return SandboxResponse.json(payload, headers=headers)

    def _route(self, path: str) -> tuple[str | None, dict[str, str]]:
        if path == "/orders/v0/orders":
            return "getOrders", {}
        match = re.fullmatch(r"/orders/v0/orders/([^/]+)/orderItems", path)
        if match:
            return "getOrderItems", {"order_id": match[1]}
        if path == "/products/pricing/v0/competitivePrice":
            return "getCompetitivePricing", {}
        return None, {}

    def _token(self, request: SandboxRequest) -> SandboxResponse:
        form = {k: v[-1] for k, v in parse_qs(request.body.decode("utf-8", "replace")).items()}
        seller = next((s for s in self._sellers.values() if s.client_id == form.get("client_id")), None)
        if seller is None or not secrets.compare_digest(seller.client_secret, form.get("client_secret", "")):
            return SandboxResponse.json({"error": "invalid_client", "error_description": "Client authentication failed"}, status=401)
        if form.get("grant_type") != "refresh_token" or not secrets.compare_digest(seller.refresh_token, form.get("refresh_token", "")):
            return SandboxResponse.json({"error": "invalid_grant", "error_description": "The request has an invalid grant parameter : refresh_token"}, status=400)
        token = "Atza|" + secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = (seller.seller_id, time.monotonic() + TOKEN_LIFETIME_S)
        return SandboxResponse.json({"access_token": token, "refresh_token": seller.refresh_token, "token_type": "bearer", "expires_in": TOKEN_LIFETIME_S})

    # -- operations -------------------------------------------------------------------------

    def _getOrders(self, seller: Seller, query: dict[str, str]) -> dict[str, Any]:
        if query.get("MarketplaceIds") != seller.marketplace_id:
            raise ValueError("MarketplaceIds is required and must be the seller's marketplace.")
        size = int(query.get("MaxResultsPerPage", "100"))
        if not 1 <= size <= 100:
            raise ValueError("MaxResultsPerPage must be between 1 and 100.")
        if "NextToken" in query:
            try:
                state = json.loads(bytes.fromhex(query["NextToken"]).decode())
            except ValueError as exc:
                raise ValueError("Invalid NextToken.") from exc
            after, before, offset = state["after"], state["before"], state["offset"]
        else:
            after = query.get("LastUpdatedAfter") or query.get("CreatedAfter")
            if not after:
                raise ValueError("Either CreatedAfter or LastUpdatedAfter must be specified.")
            before = query.get("LastUpdatedBefore") or query.get("CreatedBefore") or _iso(dt.datetime.now(dt.UTC))
            offset = 0
        start = dt.datetime.fromisoformat(after.replace("Z", "+00:00"))
        end = dt.datetime.fromisoformat(before.replace("Z", "+00:00"))
        today = self.server.control.clock.today()
        matching = []
        day = start.date()
        while day <= end.date() and day < today:
            matching += [o for o in seller.orders_for_day(day) if start <= o["created"] < end]
            day += dt.timedelta(days=1)
        page = matching[offset : offset + size]
        payload: dict[str, Any] = {
            "Orders": [
                {
                    "AmazonOrderId": o["AmazonOrderId"], "PurchaseDate": _iso(o["created"]), "LastUpdateDate": _iso(o["created"]),
                    "OrderStatus": "Shipped", "FulfillmentChannel": "AFN", "SalesChannel": "Amazon.com",
                    "OrderTotal": _money(o["item"].price * o["quantity"] - o["promo"], seller.currency),
                    "NumberOfItemsShipped": o["quantity"], "NumberOfItemsUnshipped": 0, "MarketplaceId": seller.marketplace_id,
                }
                for o in page
            ],
            "LastUpdatedBefore": before,
        }
        if offset + size < len(matching):
            payload["NextToken"] = json.dumps({"after": after, "before": before, "offset": offset + size}).encode().hex()
        return {"payload": payload}

    def _getOrderItems(self, seller: Seller, query: dict[str, str], order_id: str) -> dict[str, Any]:
        for orders in seller._orders.values():
            for o in orders:
                if o["AmazonOrderId"] == order_id:
                    item = o["item"]
                    return {"payload": {"AmazonOrderId": order_id, "OrderItems": [{
                        "ASIN": item.asin, "SellerSKU": item.seller_sku, "OrderItemId": f"{int(hashlib.sha256(order_id.encode()).hexdigest(), 16) % 10**14:014d}",
                        "Title": item.title, "QuantityOrdered": o["quantity"], "QuantityShipped": o["quantity"],
                        "ItemPrice": _money(item.price * o["quantity"], seller.currency),
                        "PromotionDiscount": _money(o["promo"], seller.currency),
                    }]}}
        raise ValueError(f"Invalid AmazonOrderId: {order_id}")

    def _getCompetitivePricing(self, seller: Seller, query: dict[str, str]) -> dict[str, Any]:
        if query.get("ItemType") != "Asin":
            raise ValueError("ItemType must be Asin.")
        asins = [a for a in query.get("Asins", "").split(",") if a]
        if not 1 <= len(asins) <= 20:
            raise ValueError("Asins must list 1 to 20 ASINs.")
        by_asin = {i.asin: i for i in seller.items}
        today = self.server.control.clock.today()
        answer = []
        for asin in asins:
            item = by_asin.get(asin)
            if item is None:
                answer.append({"ASIN": asin, "status": "ClientError", "error": {"code": "InvalidInput", "message": "Invalid ASIN"}})
                continue
            factor = Decimal(95 + int(hashlib.sha256(f"{asin}:{today}".encode()).hexdigest(), 16) % 11) / 100
            price = (item.price * factor).quantize(Decimal("0.01"))
            answer.append({"ASIN": asin, "status": "Success", "Product": {
                "Identifiers": {"MarketplaceASIN": {"MarketplaceId": seller.marketplace_id, "ASIN": asin}},
                "CompetitivePricing": {"CompetitivePrices": [{
                    "CompetitivePriceId": "1", "condition": "New", "belongsToRequester": False,
                    "Price": {"LandedPrice": _money(price, seller.currency), "ListingPrice": _money(price, seller.currency),
                              "Shipping": _money(Decimal("0.00"), seller.currency)},
                }]},
            }})
        return {"payload": answer}

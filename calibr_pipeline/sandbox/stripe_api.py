"""A loopback Stripe: the REST API, Connect OAuth and signed webhook deliveries.

Built from Stripe's public API reference (https://docs.stripe.com/api), importing nothing
from the project's connectors package nor the ``stripe`` SDK, so it can check the connector:

* **Requests** are ``application/x-www-form-urlencoded`` with bracketed nesting
  (``metadata[sku]=A``, ``created[gte]=1700000000``); authentication is
  ``Authorization: Bearer <secret key>``; ``Stripe-Account: acct_...`` makes a platform
  key act on a connected account (or use the account's own OAuth access token).
* **Lists** (``GET /v1/products|prices|payment_intents|balance_transactions``) return
  ``{"object": "list", "data": [...], "has_more": bool, "url": ...}``, newest first, with
  ``limit`` (1-100, default 10), ``starting_after`` / ``ending_before`` (object ids) and
  ``created[gt|gte|lt|lte]``.
* **Idempotency-Key** on POST: the same key with the same parameters replays the first
  answer (``Idempotent-Replayed: true``); with other parameters it is a 400
  ``idempotency_error``. Keys are scoped to the account.
* **Errors** are ``{"error": {"type", "code", "message", "param"}}``; a queued fault answers
  ``429`` with ``Stripe-Should-Retry: true`` (``rate_limit``), or a 500.
* **Connect OAuth** (Standard accounts): ``GET /oauth/authorize`` redirects to the
  ``redirect_uri`` with ``code`` and ``state``; ``POST /oauth/token``
  (``grant_type=authorization_code``) returns ``stripe_user_id``, ``access_token``,
  ``refresh_token``, ``scope``, ``livemode``, ``token_type``, ``stripe_publishable_key``.
* **Webhooks**: every created object emits an event (``product.created``,
  ``price.created``, ``payment_intent.succeeded``, ``balance.available``) delivered as
  JSON to each registered endpoint with ``Stripe-Signature: t=<unix>,v1=<hex
  HMAC-SHA256 of "<t>.<body>" keyed by the endpoint secret>``; a delivery that does not
  get a 2xx is retried with backoff (Stripe retries for up to three days; the sandbox's
  schedule is configurable and short).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
import secrets
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from calibr_pipeline.sandbox._http import SandboxControl, SandboxHTTPServer, SandboxRequest, SandboxResponse

API_VERSION = "2025-01-27.acacia"
LIST_KINDS = {"products": "product", "prices": "price", "payment_intents": "payment_intent", "balance_transactions": "balance_transaction"}
_PREFIX = {"product": "prod", "price": "price", "payment_intent": "pi", "balance_transaction": "txn", "charge": "ch", "event": "evt"}


def parse_form(body: bytes | str) -> dict[str, Any]:
    """``a[b][c]=1&x=2`` -> ``{"a": {"b": {"c": "1"}}, "x": "2"}`` (Stripe's form encoding)."""
    text = body.decode() if isinstance(body, bytes) else body
    out: dict[str, Any] = {}
    for key, value in urllib.parse.parse_qsl(text, keep_blank_values=True):
        parts = re.findall(r"[^\[\]]+", key)
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        if parts:
            node[parts[-1]] = value
    return out


def sign(payload: str, secret: str, timestamp: int) -> str:
    """The ``Stripe-Signature`` header value for ``payload`` (Stripe's documented v1 scheme)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def _error(status: int, type_: str, message: str, code: str | None = None, param: str | None = None, headers: dict | None = None) -> SandboxResponse:
    error = {"type": type_, "message": message}
    if code:
        error["code"] = code
    if param:
        error["param"] = param
    return SandboxResponse.json({"error": error}, status=status, headers=headers or {})


@dataclass
class Account:
    id: str
    email: str
    objects: dict[str, list[dict]] = field(default_factory=lambda: {k: [] for k in LIST_KINDS.values()})
    idempotency: dict[str, tuple[str, SandboxResponse]] = field(default_factory=dict)


@dataclass
class WebhookEndpoint:
    url: str
    secret: str


@dataclass
class Delivery:
    event_id: str
    url: str
    attempt: int
    status: int | None  # None: connection failed


class StripeSandbox:
    """The world: accounts and their objects, OAuth grants, webhook endpoints and deliveries."""

    def __init__(self, *, platform_key: str = "sk_test_platform_sandbox", client_id: str = "ca_sandbox_platform",
                 retry_schedule: tuple[float, ...] = (0.2, 0.5, 1.0, 2.0), clock=time.time):
        self.platform_key = platform_key
        self.client_id = client_id
        self.retry_schedule = retry_schedule
        self.clock = clock
        self.accounts: dict[str, Account] = {}
        self._codes: dict[str, str] = {}
        self._tokens: dict[str, str] = {}  # access token -> account id
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._created = int(clock()) - 86400 * 30
        self.endpoints: list[WebhookEndpoint] = []
        self.deliveries: list[Delivery] = []
        self.events: list[dict] = []
        self._faults: list[tuple[str, int, int]] = []  # (path glob, status, remaining)
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, account)
        self._threads: list[threading.Thread] = []

    # --- world set-up (tests and the demo) --------------------------------------------------
    def create_account(self, email: str = "merchant@example.com") -> str:
        with self._lock:
            account = Account(f"acct_{secrets.token_hex(8)}", email)
            self.accounts[account.id] = account
            return account.id

    def authorization_code(self, account_id: str) -> str:
        """What the merchant's approval on connect.stripe.com yields (also via /oauth/authorize)."""
        with self._lock:
            code = f"ac_{secrets.token_hex(12)}"
            self._codes[code] = account_id
            return code

    def add_webhook_endpoint(self, url: str, secret: str | None = None) -> WebhookEndpoint:
        endpoint = WebhookEndpoint(url, secret or f"whsec_{secrets.token_hex(16)}")
        self.endpoints.append(endpoint)
        return endpoint

    def fail_next(self, n: int, *, status: int = 429, path: str = "/v1/*") -> None:
        """The next ``n`` requests matching ``path`` answer ``status`` (429: Stripe-Should-Retry)."""
        with self._lock:
            self._faults.append((path, status, n))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def create(self, account_id: str, kind: str, fields: dict, *, created: int | None = None) -> dict:
        with self._lock:
            return self._create(self.accounts[account_id], kind, fields, created)

    # --- objects --------------------------------------------------------------------------
    def _next_created(self, created: int | None) -> int:
        if created is None:
            self._created = max(self._created + 1, int(self.clock()) - 86400 * 30)
            return self._created
        return created

    def _create(self, account: Account, kind: str, fields: dict, created: int | None = None) -> dict:
        obj_id = f"{_PREFIX[kind]}_{next(self._ids):06d}{secrets.token_hex(4)}"
        created = self._next_created(created)
        base = {"id": obj_id, "object": kind, "created": created, "livemode": False}
        if kind == "product":
            obj = base | {"name": fields.get("name") or "Product", "active": str(fields.get("active", "true")).lower() != "false",
                          "metadata": dict(fields.get("metadata") or {}), "description": fields.get("description")}
        elif kind == "price":
            product = fields.get("product")
            if not any(p["id"] == product for p in account.objects["product"]):
                raise _RequestError(_error(400, "invalid_request_error", f"No such product: '{product}'", "resource_missing", "product"))
            obj = base | {"product": product, "unit_amount": _int(fields, "unit_amount"), "currency": _currency(fields),
                          "active": True, "type": "one_time", "metadata": dict(fields.get("metadata") or {})}
        elif kind == "payment_intent":
            amount = _int(fields, "amount")
            obj = base | {"amount": amount, "amount_received": amount, "currency": _currency(fields), "status": "succeeded",
                          "metadata": dict(fields.get("metadata") or {}), "description": fields.get("description")}
        elif kind == "balance_transaction":
            obj = base | dict(fields)
        else:  # pragma: no cover
            raise ValueError(kind)
        account.objects[kind].append(obj)
        self._emit(account, f"{kind}.created" if kind in ("product", "price") else "payment_intent.succeeded" if kind == "payment_intent" else "balance.available", obj)
        if kind == "payment_intent":
            fee = round(obj["amount"] * 0.029) + 30
            charge = f"ch_{next(self._ids):06d}{secrets.token_hex(4)}"
            txn = {"id": f"txn_{next(self._ids):06d}{secrets.token_hex(4)}", "object": "balance_transaction", "created": created, "livemode": False,
                   "amount": obj["amount"], "fee": fee, "net": obj["amount"] - fee, "currency": obj["currency"], "type": "charge",
                   "reporting_category": "charge", "source": charge, "status": "pending", "description": obj.get("description"),
                   "payment_intent": obj["id"]}
            account.objects["balance_transaction"].append(txn)
        return obj

    # --- webhooks -------------------------------------------------------------------------
    def _emit(self, account: Account, type_: str, obj: dict) -> dict:
        event = {"id": f"evt_{next(self._ids):06d}{secrets.token_hex(6)}", "object": "event", "api_version": API_VERSION,
                 "created": int(self.clock()), "type": type_, "account": account.id, "livemode": False, "pending_webhooks": len(self.endpoints),
                 "request": {"id": None, "idempotency_key": None}, "data": {"object": obj}}
        self.events.append(event)
        for endpoint in self.endpoints:
            self.deliver(event, endpoint)
        return event

    def emit(self, account_id: str, type_: str, obj: dict) -> dict:
        """Send an arbitrary event (e.g. a type the connector does not know)."""
        with self._lock:
            return self._emit(self.accounts[account_id], type_, obj)

    def deliver(self, event: dict, endpoint: WebhookEndpoint, *, body: str | None = None, background: bool = True) -> None:
        """POST the event to the endpoint, signed; retry per ``retry_schedule`` until a 2xx."""
        payload = body if body is not None else json.dumps(event, separators=(",", ":"))

        def attempt_all() -> None:
            for attempt, delay in enumerate((0.0, *self.retry_schedule), 1):
                if delay:
                    time.sleep(delay)
                status = self.post_signed(endpoint.url, payload, endpoint.secret)
                self.deliveries.append(Delivery(event["id"], endpoint.url, attempt, status))
                if status is not None and 200 <= status < 300:
                    return

        if background:
            thread = threading.Thread(target=attempt_all, name=f"stripe-webhook-{event['id']}", daemon=True)
            self._threads.append(thread)
            thread.start()
        else:
            attempt_all()

    def post_signed(self, url: str, payload: str, secret: str, *, timestamp: int | None = None, signature: str | None = None) -> int | None:
        header = signature or sign(payload, secret, int(self.clock()) if timestamp is None else timestamp)
        request = urllib.request.Request(url, data=payload.encode(), method="POST",
                                         headers={"Content-Type": "application/json; charset=utf-8", "Stripe-Signature": header,
                                                  "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)"})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return None

    def wait_for_deliveries(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))

    # --- HTTP -----------------------------------------------------------------------------
    def shop_for(self, request: SandboxRequest) -> str | None:
        return request.headers.get("stripe-account")

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        try:
            return self._handle(request)
        except _RequestError as exc:
            return exc.response

    def _fault(self, path: str) -> SandboxResponse | None:
        import fnmatch

        with self._lock:
            for i, (glob, status, remaining) in enumerate(self._faults):
                if remaining > 0 and fnmatch.fnmatchcase(path, glob):
                    self._faults[i] = (glob, status, remaining - 1)
                    if status == 429:
                        return _error(429, "invalid_request_error", "Too many requests hit the API too quickly. We recommend an exponential backoff of your requests.",
                                      "rate_limit", headers={"Stripe-Should-Retry": "true", "Retry-After": "1"})
                    return _error(status, "api_error", "An unknown error occurred", headers={"Stripe-Should-Retry": "true"})
        return None

    def _handle(self, request: SandboxRequest) -> SandboxResponse:
        path = request.path
        if path == "/oauth/authorize" and request.method == "GET":
            return self._authorize(request)
        fault = self._fault(path)
        if fault is not None:
            return fault
        account = self._authenticate(request)
        self.requests.append((request.method, path, account.id if account else None))
        if path == "/oauth/token" and request.method == "POST":
            return self._token(request)
        if account is None:
            return _error(400, "invalid_request_error", "This request needs a connected account: pass the Stripe-Account header.")
        match = re.fullmatch(r"/v1/(products|prices|payment_intents|balance_transactions)(?:/([A-Za-z0-9_]+))?", path)
        if match is None:
            return _error(404, "invalid_request_error", f"Unrecognized request URL ({request.method}: {path}).")
        kind = LIST_KINDS[match[1]]
        if request.method == "GET" and match[2]:
            found = next((o for o in account.objects[kind] if o["id"] == match[2]), None)
            return SandboxResponse.json(found) if found else _error(404, "invalid_request_error", f"No such {kind}: '{match[2]}'", "resource_missing", "id")
        if request.method == "GET":
            return self._list(account, kind, match[1], request)
        if request.method == "POST" and kind != "balance_transaction":
            return self._post(account, kind, request)
        return _error(405, "invalid_request_error", f"{request.method} is not allowed on {path}")

    def _authenticate(self, request: SandboxRequest) -> Account | None:
        auth = request.headers.get("authorization", "")
        key = auth[7:] if auth.lower().startswith("bearer ") else ""
        if not key:
            raise _RequestError(_error(401, "invalid_request_error", "You did not provide an API key."))
        if key in self._tokens:
            return self.accounts[self._tokens[key]]
        if key != self.platform_key:
            raise _RequestError(_error(401, "invalid_request_error", f"Invalid API Key provided: {key[:8]}{'*' * 8}"))
        acct = request.headers.get("stripe-account")
        if acct is None:
            return None
        if acct not in self.accounts:
            raise _RequestError(_error(403, "invalid_request_error", "The provided key does not have access to account '%s' (or that account does not exist)." % acct, "account_invalid"))
        return self.accounts[acct]

    def _list(self, account: Account, kind: str, name: str, request: SandboxRequest) -> SandboxResponse:
        q = parse_form(urllib.parse.urlencode([(k, v) for k, vs in request.query.items() for v in vs]))
        try:
            limit = int(q.get("limit", 10))
        except ValueError:
            return _error(400, "invalid_request_error", "Invalid integer: limit", param="limit")
        if not 1 <= limit <= 100:
            return _error(400, "invalid_request_error", "This value must be between 1 and 100.", param="limit")
        with self._lock:
            items = sorted(account.objects[kind], key=lambda o: (o["created"], o["id"]), reverse=True)
        created = q.get("created")
        if isinstance(created, dict):
            for op, test in (("gt", lambda a, b: a > b), ("gte", lambda a, b: a >= b), ("lt", lambda a, b: a < b), ("lte", lambda a, b: a <= b)):
                if op in created:
                    bound = int(created[op])
                    items = [o for o in items if test(o["created"], bound)]
        elif created is not None:
            items = [o for o in items if o["created"] == int(created)]
        if "product" in q and kind == "price":
            items = [o for o in items if o["product"] == q["product"]]
        if q.get("starting_after"):
            ids = [o["id"] for o in items]
            if q["starting_after"] not in ids:
                return _error(400, "invalid_request_error", f"No such {kind}: '{q['starting_after']}'", "resource_missing", "starting_after")
            items = items[ids.index(q["starting_after"]) + 1:]
            page = items[:limit]
        elif q.get("ending_before"):
            ids = [o["id"] for o in items]
            if q["ending_before"] not in ids:
                return _error(400, "invalid_request_error", f"No such {kind}: '{q['ending_before']}'", "resource_missing", "ending_before")
            items = items[: ids.index(q["ending_before"])]
            page = items[-limit:]
        else:
            page = items[:limit]
        return SandboxResponse.json({"object": "list", "url": f"/v1/{name}", "has_more": len(items) > len(page), "data": page})

    def _post(self, account: Account, kind: str, request: SandboxRequest) -> SandboxResponse:
        if "application/x-www-form-urlencoded" not in request.headers.get("content-type", "application/x-www-form-urlencoded"):
            return _error(400, "invalid_request_error", "Stripe expects application/x-www-form-urlencoded request bodies.")
        fields = parse_form(request.body)
        key = request.headers.get("idempotency-key")
        fingerprint = hashlib.sha256(request.body).hexdigest()
        with self._lock:
            if key and key in account.idempotency:
                seen, response = account.idempotency[key]
                if seen != fingerprint:
                    return _error(400, "idempotency_error", f"Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{key}' if you meant to execute a different request.")
                return SandboxResponse(response.status, response.body, headers={**response.headers, "Idempotent-Replayed": "true"})
            response = SandboxResponse.json(self._create(account, kind, fields))
            if key:
                account.idempotency[key] = (fingerprint, response)
                response.headers["Idempotency-Key"] = key
            return response

    def _authorize(self, request: SandboxRequest) -> SandboxResponse:
        q = {k: v[0] for k, v in request.query.items()}
        if q.get("client_id") != self.client_id:
            return _error(400, "invalid_request_error", "Invalid client_id")
        if q.get("response_type") != "code":
            return _error(400, "invalid_request_error", "response_type must be code")
        redirect = q.get("redirect_uri")
        if not redirect:
            return _error(400, "invalid_request_error", "redirect_uri is required in the sandbox")
        account_id = q.get("stripe_user[account]") or self.create_account(q.get("stripe_user[email]", "merchant@example.com"))
        code = self.authorization_code(account_id)
        location = redirect + ("&" if "?" in redirect else "?") + urllib.parse.urlencode({"code": code, "state": q.get("state", ""), "scope": q.get("scope", "read_only")})
        return SandboxResponse(302, b"", content_type="text/plain", headers={"Location": location})

    def _token(self, request: SandboxRequest) -> SandboxResponse:
        fields = parse_form(request.body)
        if fields.get("grant_type") != "authorization_code":
            return SandboxResponse.json({"error": "unsupported_grant_type", "error_description": "Only authorization_code is supported in the sandbox"}, status=400)
        with self._lock:
            account_id = self._codes.pop(fields.get("code", ""), None)
            if account_id is None:
                return SandboxResponse.json({"error": "invalid_grant", "error_description": f"Authorization code does not exist: {fields.get('code')}"}, status=400)
            token = f"sk_test_{secrets.token_hex(16)}"
            self._tokens[token] = account_id
        return SandboxResponse.json({"access_token": token, "refresh_token": f"rt_{secrets.token_hex(16)}", "token_type": "bearer",
                                     "stripe_publishable_key": f"pk_test_{secrets.token_hex(8)}", "stripe_user_id": account_id,
                                     "scope": "read_write", "livemode": False})


class _RequestError(Exception):
    def __init__(self, response: SandboxResponse):
        self.response = response


def _int(fields: dict, name: str) -> int:
    try:
        return int(fields[name])
    except (KeyError, ValueError):
        raise _RequestError(_error(400, "invalid_request_error", f"Missing or invalid integer: {name}", "parameter_missing", name)) from None


def _currency(fields: dict) -> str:
    currency = str(fields.get("currency", "")).lower()
    if not re.fullmatch(r"[a-z]{3}", currency):
        raise _RequestError(_error(400, "invalid_request_error", "Invalid currency", "parameter_invalid_string", "currency"))
    return currency


def serve_stripe(sandbox: StripeSandbox | None = None, *, control: SandboxControl | None = None) -> tuple[StripeSandbox, SandboxHTTPServer]:
    """A started loopback server (port 0) for ``sandbox``; the caller stops it."""
    sandbox = sandbox or StripeSandbox()
    server = SandboxHTTPServer(sandbox, name="stripe", control=control).start()
    return sandbox, server

"""The FastAPI application: one router per area, listed once in :data:`AREA_ROUTER_FACTORIES`.

Each area module provides ``build_router(require_read, require_write) -> APIRouter``; adding
an area (analytics, copilot, Stripe webhooks) is one line in the list below.
"""

from __future__ import annotations

import inspect
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from calibr_pipeline import settings
from calibr_pipeline.api import auth
from calibr_pipeline.api.errors import describe_unexpected, error_body, install_error_handlers
from calibr_pipeline.api.routers import audit, competitors, health, rules, runs
from calibr_pipeline.api import analytics
from calibr_pipeline.copilot import api as copilot
from calibr_pipeline.api.schemas import FastJSON

log = logging.getLogger("calibr.api")

RouterFactory = Callable[..., APIRouter]

# Area routers, in the order they appear in the OpenAPI document. One line per area.
AREA_ROUTER_FACTORIES: list[RouterFactory] = [
    health.build_router,
    competitors.build_router,
    rules.build_router,
    runs.build_router,
    audit.build_router,
    copilot.build_router,
    analytics.build_router,
]

OPENAPI_URL = "/api/v1/openapi.json"
RATE_LIMIT_ENV = "CALIBR_API_RATE_LIMIT"
METRICS_TOKEN_ENV = "CALIBR_API_METRICS_TOKEN"
THREADS_ENV = "CALIBR_API_THREADS"
# Set by `calibr api --workers N` for its worker processes (commands.py): the folder they
# share for metrics, rate-limit buckets and the console's signing key.
SHARED_STATE_ENV = "CALIBR_API_SHARED_STATE"
# Handlers are CPU-bound in Python: more threads per worker only queue on the GIL (at 8, the
# p95 of `make bench-api` was ~1.7× that at 4); use --workers for more cores.
DEFAULT_THREADS = 4
DEFAULT_RATE_LIMIT_PER_MINUTE = 600
MAX_BODY_BYTES = 1_000_000
# Seconds; the seed's alerts fire on p95 > 1.5 s and > 3 s, so buckets straddle both.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.5, 3.0, 5.0, 10.0)


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "calibr_api_requests_total", "HTTP API requests by route template, method and status code.",
            ["route", "method", "code"], registry=self.registry,
        )
        self.duration = Histogram(
            "calibr_api_request_duration_seconds", "HTTP API request latency by route template.",
            ["route", "method"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )

    def observe(self, route: str, method: str, code: int, seconds: float) -> None:
        self.requests.labels(route=route, method=method, code=str(code)).inc()
        self.duration.labels(route=route, method=method).observe(seconds)

    def exposition(self) -> bytes:
        """The text /metrics serves: with several workers (prometheus_client's multiprocess
        mode, PROMETHEUS_MULTIPROC_DIR) every worker's samples summed, whichever answers."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)


class BodyLimit:
    """Refuses request bodies over ``max_bytes`` with 413 (declared or streamed), before any handler runs."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            return await _send_json(send, 413, error_body("payload_too_large", f"request bodies are limited to {self.max_bytes} bytes"))
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge()
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _BodyTooLarge:
            await _send_json(send, 413, error_body("payload_too_large", f"request bodies are limited to {self.max_bytes} bytes"))


class _BodyTooLarge(Exception):
    pass


async def _send_json(send, status: int, body: dict) -> None:
    import json

    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})


class ObserveRequests:
    """Counts and times every request by route template, adds no-store / nosniff headers, and
    turns an unexpected exception into a JSON 500 with a request id (the traceback goes to
    the log only, without SQL parameters). A pure ASGI middleware: cheaper than BaseHTTPMiddleware."""

    def __init__(self, app, metrics: ApiMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = {"code": 500, "sent": False}

        async def observed_send(message):
            if message["type"] == "http.response.start":
                status["code"], status["sent"] = message["status"], True
                headers = list(message.get("headers") or [])
                names = {k.lower() for k, _ in headers}
                if b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                if b"x-content-type-options" not in names:
                    headers.append((b"x-content-type-options", b"nosniff"))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        except Exception as exc:  # noqa: BLE001 - the API answers JSON, never a traceback
            request_id = uuid.uuid4().hex[:12]
            log.error("%s %s failed (request id %s): %s", scope.get("method"), scope.get("path"), request_id, describe_unexpected(exc))
            status["code"] = 500
            if not status["sent"]:
                await _send_json(send, 500, error_body("internal", "internal server error", {"request_id": request_id}))
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.observe(template, scope.get("method", ""), status["code"], time.perf_counter() - started)


def create_app(
    warehouse_url: str,
    *,
    rate_limit_per_minute: int | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    console: bool = True,
    auth_cache_seconds: float = 5.0,
    router_factories: list[RouterFactory] | None = None,
) -> FastAPI:
    app = FastAPI(
        title="Calibrate API",
        version="1.0.0",
        description="Pricing automation: competitors, rules, runs and audit. See docs/api.md.",
        openapi_url=OPENAPI_URL,
        docs_url="/api/v1/docs",
        redoc_url=None,
        default_response_class=FastJSON,
    )
    app.state.warehouse_url = warehouse_url

    @app.on_event("startup")
    async def _limit_worker_threads() -> None:
        # Handlers are sync and CPU-bound in Python: a few threads share the GIL with less
        # thrashing than anyio's default 40, and the rest wait in FIFO order (a lower tail).
        import anyio.to_thread

        anyio.to_thread.current_default_thread_limiter().total_tokens = int(os.environ.get(THREADS_ENV) or DEFAULT_THREADS)
    limit = rate_limit_per_minute or int(os.environ.get(RATE_LIMIT_ENV) or DEFAULT_RATE_LIMIT_PER_MINUTE)
    shared = os.environ.get(SHARED_STATE_ENV)
    app.state.rate_limiter = auth.SharedRateLimiter(limit, os.path.join(shared, "rate-limits.db")) if shared else auth.RateLimiter(limit)
    app.state.token_cache = auth.TokenCache(auth_cache_seconds)
    app.state.metrics = ApiMetrics()
    _health_lock = threading.Lock()
    _health: list = []

    def health_checker():
        with _health_lock:
            if not _health:
                from calibr_pipeline.monitoring.health import HealthChecker

                _health.append(HealthChecker(warehouse_url))
            return _health[0]

    app.state.health_checker = health_checker
    install_error_handlers(app)

    factories = list(router_factories if router_factories is not None else AREA_ROUTER_FACTORIES)
    if router_factories is None and settings.stripe_connect_enabled():
        # The Stripe webhook exists only behind its flag (nothing of Stripe is imported otherwise).
        from calibr_pipeline.api import stripe_webhooks

        factories.append(stripe_webhooks.build_router)
    for factory in factories:
        # Areas that open their own connections (the copilot's read-only ones) are told the
        # app's warehouse; the others read it from request.app.state.
        extra = {"warehouse_url": warehouse_url} if "warehouse_url" in inspect.signature(factory).parameters else {}
        app.include_router(factory(auth.require_read, auth.require_write, **extra))
    if console:
        from calibr_pipeline.api.console import build_router as console_router, console_secret

        # Several workers sign and check the console's CSRF tokens with one key, or a form
        # served by one worker would be refused by the next.
        app.state.console_secret = shared_console_key(shared) if shared else console_secret()
        app.include_router(console_router(auth.require_read, auth.require_write))

        @app.get("/", include_in_schema=False)
        def root():
            return RedirectResponse("/console", status_code=307)

    @app.get("/metrics", include_in_schema=False)
    def metrics(request: Request):
        expected = os.environ.get(METRICS_TOKEN_ENV)
        client = request.client.host if request.client else ""
        supplied = request.headers.get("authorization", "")
        if not (client in ("127.0.0.1", "::1") and not expected) and not (expected and supplied == f"Bearer {expected}"):
            return JSONResponse(error_body("unauthorized", f"metrics need the bearer token in {METRICS_TOKEN_ENV} (or a loopback client when it is unset)"), status_code=401)
        return Response(app.state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.add_middleware(ObserveRequests, metrics=app.state.metrics)
    return app


def shared_console_key(shared_dir: str) -> bytes:
    with open(os.path.join(shared_dir, "console.key"), "rb") as handle:
        return handle.read()


def create_app_for_workers() -> FastAPI:
    """The factory each ``calibr api --workers N`` worker process calls (uvicorn imports it)."""
    return create_app(settings.warehouse_url())

"""``calibr serve``: Prometheus metrics and health endpoints over HTTP (stdlib, threaded).

Routes (GET and HEAD):

* ``/metrics``: Prometheus text format (``text/plain; version=0.0.4``);
* ``/health``: liveness, ``{"status": "healthy", "timestamp": ...}``, always 200;
* ``/health/detailed``: dependency checks (see :mod:`.health`), 200 with ``"status":
  "healthy"|"degraded"`` in the body; ``?strict=1`` answers 503 when degraded;
* anything else: 404 JSON; other methods: 405 JSON.

An unexpected error in a handler is logged with its traceback on the server and
answered as ``500 {"status": "error", "error": "internal error"}``: no traceback ever
reaches a client. Binds to 127.0.0.1 unless told otherwise.

In-process use (tests, embedding)::

    with MonitoringServer(warehouse_url, port=0) as server:
        requests.get(f"{server.url}/metrics")

Foreground (the CLI)::

    serve("127.0.0.1", 9464, warehouse_url, instance)
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from calibr_pipeline.monitoring._engine import monitoring_engine, safe_url
from calibr_pipeline.monitoring.health import (
    DEFAULT_THRESHOLDS,
    HealthChecker,
    HealthThresholds,
    liveness,
)
from calibr_pipeline.monitoring.metrics import build_registry

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9464
ROUTES = ("/metrics", "/health", "/health/detailed")
JSON_TYPE = "application/json; charset=utf-8"


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"
    server_version = "calibr-serve"
    sys_version = ""

    def do_GET(self) -> None:
        self._dispatch(head=False)

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def _method_not_allowed(self) -> None:
        started = time.perf_counter()
        handler = _route(self.path)
        body = json.dumps({"status": "error", "error": "method not allowed"}).encode()
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, JSON_TYPE, body, head=False, extra={"Allow": "GET, HEAD"})
        self.server.app.observe(handler, self.command, HTTPStatus.METHOD_NOT_ALLOWED, time.perf_counter() - started)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _method_not_allowed

    def _dispatch(self, *, head: bool) -> None:
        started = time.perf_counter()
        handler = _route(self.path)
        try:
            status, content_type, body = self.server.app.handle(handler, strict=_strict(self.path))
        except Exception:
            log.exception("unexpected error answering %s", handler)
            status, content_type, body = (
                HTTPStatus.INTERNAL_SERVER_ERROR,
                JSON_TYPE,
                json.dumps({"status": "error", "error": "internal error"}).encode(),
            )
        try:
            self._send(status, content_type, body, head=head)
        finally:
            self.server.app.observe(handler, self.command, status, time.perf_counter() - started)

    def _send(self, status: int, content_type: str, body: bytes, *, head: bool, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)


def _route(path: str) -> str:
    """The ``handler`` label: a known route or ``other`` (raw paths would explode cardinality)."""
    bare = path.split("?", 1)[0].split("#", 1)[0]
    if len(bare) > 1:
        bare = bare.rstrip("/")
    return bare if bare in ROUTES else "other"


def _strict(path: str) -> bool:
    query = parse_qs(urlsplit(path).query)
    return query.get("strict", ["0"])[-1].lower() in ("1", "true", "yes")


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    app: MonitoringApp


class MonitoringApp:
    """What the routes answer; independent of the HTTP plumbing."""

    def __init__(
        self,
        warehouse_url: str,
        *,
        instance: Any | None = None,
        thresholds: HealthThresholds = DEFAULT_THRESHOLDS,
    ):
        self.warehouse_url = warehouse_url
        engine = monitoring_engine(warehouse_url)
        instance_lock = threading.Lock()  # Dagster instance storage is shared by scrapes and health checks
        self.registry, self.http_metrics, self.collector = build_registry(
            warehouse_url, instance=instance, instance_lock=instance_lock, engine=engine
        )
        self.health = HealthChecker(warehouse_url, instance=instance, instance_lock=instance_lock, engine=engine, thresholds=thresholds)
        self.engine = engine

    def handle(self, handler: str, *, strict: bool = False) -> tuple[int, str, bytes]:
        if handler == "/metrics":
            return HTTPStatus.OK, CONTENT_TYPE_LATEST, generate_latest(self.registry)
        if handler == "/health":
            return HTTPStatus.OK, JSON_TYPE, _json(liveness())
        if handler == "/health/detailed":
            report = self.health.detailed()
            degraded = report["status"] != "healthy"
            # 200 with the status in the body: a degraded dependency is not a server error, and
            # a 5xx here would feed the HTTP error-rate alerts. ``?strict=1`` answers 503 instead
            # for checkers that only look at the status code.
            status = HTTPStatus.SERVICE_UNAVAILABLE if degraded and strict else HTTPStatus.OK
            return status, JSON_TYPE, _json(report)
        return HTTPStatus.NOT_FOUND, JSON_TYPE, _json({"status": "error", "error": "not found", "routes": list(ROUTES)})

    def observe(self, handler: str, method: str, status: int, seconds: float) -> None:
        try:
            # method is bounded: http.server answers 501 itself for methods without a do_* handler
            self.http_metrics.observe(handler, method, int(status), seconds)
        except Exception:
            log.exception("could not count a request")

    def close(self) -> None:
        self.engine.dispose()


def _json(data: Any) -> bytes:
    return json.dumps(data, default=str, sort_keys=True).encode()


class MonitoringServer:
    """The HTTP server around a :class:`MonitoringApp`; ``port=0`` picks a free port."""

    def __init__(
        self,
        warehouse_url: str,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        instance: Any | None = None,
        thresholds: HealthThresholds = DEFAULT_THRESHOLDS,
    ):
        self.app = MonitoringApp(warehouse_url, instance=instance, thresholds=thresholds)
        try:
            self.httpd = _HTTPServer((host, port), _Handler)
        except BaseException:
            self.app.close()
            raise
        self.httpd.app = self.app
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return self.httpd.server_address[0]

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def url(self) -> str:
        host = self.host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def start(self) -> Self:
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="calibr-serve", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever(poll_interval=0.1)

    def stop(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.httpd.server_close()
        self.app.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    warehouse_url: str | None = None,
    instance: Any | None = None,
    *,
    thresholds: HealthThresholds = DEFAULT_THRESHOLDS,
    ready: threading.Event | None = None,
) -> None:
    """Serve in the foreground until SIGINT/SIGTERM. ``warehouse_url`` None: from the environment."""
    from calibr_pipeline import settings

    url = warehouse_url or settings.warehouse_url()
    # *_created series double every counter and histogram for no use here; this process is ours.
    from prometheus_client import disable_created_metrics

    disable_created_metrics()
    server = MonitoringServer(url, host=host, port=port, instance=instance, thresholds=thresholds)
    stop = threading.Event()

    def _terminate(_signum, _frame) -> None:
        stop.set()

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate)
    server.start()
    print(
        f"calibr serve: {server.url}/metrics, /health, /health/detailed "
        f"(warehouse {safe_url(url)}, Dagster instance {'yes' if instance is not None else 'none'})",
        flush=True,
    )
    if ready is not None:
        ready.set()
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)

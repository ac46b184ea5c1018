"""Threaded loopback HTTP plumbing shared by the sandbox servers.

Each server wraps an *app* (``handle(request) -> SandboxResponse``) and a
:class:`SandboxControl` holding the world's clock and fault injector. The plumbing does
what every sandbox server must do the same way: control endpoints under
``/__sandbox/``, fault injection before the app answers, and a clean stop that also
wakes handlers sleeping in a "timeout" fault.

Control endpoints (JSON, never faulted, never counted):

* ``GET  /__sandbox/health``
* ``GET|POST /__sandbox/clock``   body ``{"date": "YYYY-MM-DD"}`` (``null`` = real UTC date)
* ``GET|POST|DELETE /__sandbox/faults``  body: a rule object, or ``{"rules": [...],
  "replace": true}``; fields as :class:`~calibr_pipeline.sandbox.faults.FaultRule`
* ``GET|DELETE /__sandbox/counters``
"""

from __future__ import annotations

import sys

import json
import logging
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol, Self

from calibr_pipeline.sandbox.clock import SandboxClock
from calibr_pipeline.sandbox.faults import FaultInjector, FaultRule

log = logging.getLogger("calibr_pipeline.sandbox")


class SandboxControl:
    """What every server of one sandbox world shares."""

    def __init__(self, *, seed: int = 0, clock: SandboxClock | None = None, faults: FaultInjector | None = None):
        self.clock = clock or SandboxClock()
        self.faults = faults or FaultInjector(seed)


@dataclass
class SandboxRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8") or "null")


@dataclass
class SandboxResponse:
    status: int
    body: bytes
    content_type: str = "application/json; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    # What a "malformed" fault serves instead; defaults to the body cut in half.
    malformed_body: bytes | None = None
    # Send the full Content-Length but only this many bytes, then drop the connection:
    # the client sees the answer cut off mid-body (a ChunkedEncodingError for requests).
    cut_after: int | None = None

    @classmethod
    def json(cls, payload: Any, status: int = 200, **kw: Any) -> SandboxResponse:
        return cls(status, json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8"), **kw)

    @classmethod
    def html(cls, text: str, status: int = 200, **kw: Any) -> SandboxResponse:
        return cls(status, text.encode("utf-8"), content_type="text/html; charset=utf-8", **kw)


class SandboxApp(Protocol):
    def shop_for(self, request: SandboxRequest) -> str | None:
        """Name used to match fault rules and key counters."""

    def handle(self, request: SandboxRequest) -> SandboxResponse: ...


class _Handler(BaseHTTPRequestHandler):
    # Keep-alive: clients reuse connections like they would against Shopify's edge.
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, the client's delayed ACK adds
    # ~40 ms to every answer.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def _dispatch(self, head: bool = False) -> None:
        parsed = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = SandboxRequest(
            method="GET" if head else self.command,
            path=urllib.parse.unquote(parsed.path),
            query=urllib.parse.parse_qs(parsed.query),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        owner = self.server.owner
        try:
            if request.path.startswith("/__sandbox/"):
                response = owner.control_endpoint(request)
            else:
                response = owner.serve(request)
        except Exception:  # a sandbox bug must show up as a 500, not a hung client
            log.exception("sandbox handler failed for %s %s", self.command, self.path)
            response = SandboxResponse.json({"errors": "Internal Server Error"}, status=500)
        if response is None:
            self.close_connection = True
            return
        self._send(response, head)

    def _send(self, response: SandboxResponse, head: bool) -> None:
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if not head and response.cut_after is not None:
                self.wfile.write(response.body[: response.cut_after])
                self.wfile.flush()
                self.close_connection = True
            elif not head:
                self.wfile.write(response.body)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (e.g. it timed out during a "timeout" fault).
            self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: SandboxHTTPServer

    def handle_error(self, request, client_address) -> None:
        # Clients drop keep-alive connections after faulted answers; that is not an error.
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)


class SandboxHTTPServer:
    """One threaded loopback server; ``with`` starts and stops it."""

    def __init__(self, app: SandboxApp, *, name: str, host: str = "127.0.0.1", port: int = 0, control: SandboxControl | None = None):
        self.app = app
        self.name = name
        self.host = host
        self.port = port
        self.control = control or SandboxControl()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError(f"sandbox server {self.name!r} is not running")
        return f"http://{self.host}:{self.port}"

    @property
    def netloc(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> Self:
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _Server((self.host, self.port), _Handler)
        server.owner = self
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, name=f"sandbox-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- request flow ---------------------------------------------------------------------

    def serve(self, request: SandboxRequest) -> SandboxResponse | None:
        shop = self.app.shop_for(request)
        fault = self.control.faults.decide(shop, request.path)
        if fault is not None:
            if fault.kind == "5xx":
                return SandboxResponse.json({"errors": "Internal Server Error" if fault.status == 500 else "Service Unavailable"}, status=fault.status)
            if fault.kind == "429":
                headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
                return SandboxResponse.json({"errors": "Exceeded 2 calls per second for api client. Reduce request rates to resume uninterrupted service."}, status=429, headers=headers)
            # A timeout answers late rather than never, like an overloaded origin;
            # stopping the server cuts the wait short so tests never hang on shutdown.
            if fault.kind == "timeout" and self._stopping.wait(fault.delay):
                return None
        response = self.app.handle(request)
        if fault is not None and fault.kind == "malformed":
            broken = response.malformed_body
            if broken is None:
                broken = response.body[: max(1, len(response.body) // 2)]
            response = SandboxResponse(response.status, broken, content_type=response.content_type, headers=response.headers)
        return response

    def control_endpoint(self, request: SandboxRequest) -> SandboxResponse:
        control = self.control
        try:
            if request.path == "/__sandbox/health":
                return SandboxResponse.json({"ok": True, "server": self.name})
            if request.path == "/__sandbox/clock":
                if request.method == "POST":
                    control.clock.set_date((request.json() or {}).get("date"))
                return SandboxResponse.json({"date": control.clock.today().isoformat(), "pinned": control.clock.pinned})
            if request.path == "/__sandbox/faults":
                if request.method == "DELETE":
                    control.faults.clear()
                elif request.method == "POST":
                    payload = request.json() or {}
                    raw_rules = payload.get("rules", [payload]) if isinstance(payload, dict) else payload
                    rules = [FaultRule.from_dict(r) for r in raw_rules]
                    if isinstance(payload, dict) and payload.get("replace"):
                        control.faults.clear()
                    for rule in rules:
                        control.faults.add(rule)
                return SandboxResponse.json({"rules": [r.as_dict() for r in control.faults.rules()]})
            if request.path == "/__sandbox/counters":
                if request.method == "DELETE":
                    control.faults.reset_counters()
                return SandboxResponse.json(control.faults.snapshot())
        except (ValueError, TypeError) as exc:
            return SandboxResponse.json({"error": str(exc)}, status=400)
        return SandboxResponse.json({"error": f"no control endpoint {request.path}"}, status=404)

"""monitoring/blackbox/blackbox.yml against a real blackbox exporter on loopback, probing a
stand-in for `calibr serve` /health and the Dagster webserver's /server_info."""

from __future__ import annotations

import json
import threading
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from calibr_pipeline_tests.monitoring_config.tools import (
    BLACKBOX_DIR,
    background,
    free_port,
    require_tool,
    server_log,
    wait_http_ok,
)

ROUTES = {
    "/health": (200, "application/json", json.dumps({"status": "ok"})),
    "/server_info": (200, "application/json", json.dumps({"dagster_webserver_version": "1.13.27", "dagster_version": "1.13.27"})),
    "/not-dagster": (200, "text/html", "<html>some other service</html>"),
    "/broken": (503, "text/plain", "down"),
}


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server API
        status, content_type, body = ROUTES.get(self.path, (404, "text/plain", "no"))
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


def _probe_success(exporter: str, module: str, target: str) -> float:
    query = urllib.parse.urlencode({"module": module, "target": target})
    with urllib.request.urlopen(f"{exporter}/probe?{query}", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("probe_success "):
                return float(line.split()[1])
    raise AssertionError("no probe_success in the exporter's answer")


@pytest.mark.integration
def test_blackbox_modules_probe_health_and_dagster(tmp_path):
    binary = require_tool("blackbox_exporter")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    site = f"http://127.0.0.1:{server.server_address[1]}"
    port = free_port()
    log = tmp_path / "blackbox.log"
    args = [binary, f"--config.file={BLACKBOX_DIR / 'blackbox.yml'}", f"--web.listen-address=127.0.0.1:{port}"]
    try:
        with background(args, log) as process:
            exporter = f"http://127.0.0.1:{port}"
            wait_http_ok(f"{exporter}/-/healthy", process)
            results = {
                ("http_health", "/health"): 1.0,
                ("http_health", "/broken"): 0.0,
                ("http_dagster", "/server_info"): 1.0,
                ("http_dagster", "/not-dagster"): 0.0,  # 200 but not the Dagster webserver
                ("http_dagster", "/broken"): 0.0,
            }
            got = {key: _probe_success(exporter, key[0], site + key[1]) for key in results}
            assert got == results, server_log(log)
    finally:
        server.shutdown()
        server.server_close()

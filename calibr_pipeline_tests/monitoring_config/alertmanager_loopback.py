"""A loopback variant of monitoring/alertmanager/alertmanager.yml, and a webhook receiver.

``loopback_config`` keeps the production routing tree and inhibit rules as they are and
replaces every receiver by a webhook to ``{base_url}/{receiver name}``, so a test (or a
person) can see which receiver an alert reaches without Slack, PagerDuty or SMTP. The
grouping timers are shortened so notifications leave within a fraction of a second.

Manual use:

    python -m calibr_pipeline_tests.monitoring_config.alertmanager_loopback http://127.0.0.1:9099 > /tmp/am.yml
    python -m calibr_pipeline_tests.monitoring_config.alertmanager_loopback --serve 9099   # prints what arrives
    prometheus-alertmanager --config.file=/tmp/am.yml --storage.path=/tmp/am-data \\
        --web.listen-address=127.0.0.1:9093 --cluster.listen-address=
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

import yaml

PRODUCTION_CONFIG = Path(__file__).resolve().parents[2] / "monitoring" / "alertmanager" / "alertmanager.yml"


def _shorten_timers(route: dict[str, Any], *, root: bool, group_wait: str, group_interval: str, repeat_interval: str) -> None:
    for key in ("group_wait", "group_interval", "repeat_interval"):
        route.pop(key, None)
    if root:
        route.update(group_wait=group_wait, group_interval=group_interval, repeat_interval=repeat_interval)
    for child in route.get("routes", []) or []:
        _shorten_timers(child, root=False, group_wait=group_wait, group_interval=group_interval, repeat_interval=repeat_interval)


def loopback_config(
    base_url: str,
    source: Path = PRODUCTION_CONFIG,
    group_wait: str = "100ms",
    group_interval: str = "1s",
    repeat_interval: str = "1h",
) -> dict[str, Any]:
    """The production config with every receiver turned into a loopback webhook."""
    config = yaml.safe_load(source.read_text())
    config.pop("global", None)  # SMTP / Slack / secret files are not needed
    config.pop("templates", None)
    config["global"] = {"resolve_timeout": "5m"}
    _shorten_timers(
        config["route"], root=True, group_wait=group_wait, group_interval=group_interval, repeat_interval=repeat_interval
    )
    config["receivers"] = [
        {
            "name": receiver["name"],
            "webhook_configs": [
                {"url": f"{base_url.rstrip('/')}/{receiver['name']}", "send_resolved": True, "max_alerts": 0}
            ],
        }
        for receiver in config["receivers"]
    ]
    return config


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 that records every Alertmanager webhook POST.

    ``received`` holds ``(receiver path without the leading slash, JSON payload)`` pairs.
    """

    def __init__(self, port: int = 0, on_message: Callable[[str, dict], None] | None = None) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []
        self._condition = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                length = int(self.headers.get("Content-Length") or 0)
                payload = json.loads(self.rfile.read(length) or b"{}")
                name = self.path.strip("/")
                with outer._condition:
                    outer.received.append((name, payload))
                    outer._condition.notify_all()
                if on_message:
                    on_message(name, payload)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def alerts(self, receiver: str | None = None) -> list[dict[str, Any]]:
        """Every alert received so far (optionally only by ``receiver``), in arrival order."""
        with self._condition:
            return [
                alert
                for name, payload in self.received
                if receiver is None or name == receiver
                for alert in payload.get("alerts", [])
            ]

    def wait_until(self, predicate: Callable[[WebhookReceiver], bool], timeout: float) -> bool:
        with self._condition:
            return self._condition.wait_for(lambda: predicate(self), timeout=timeout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base_url", nargs="?", help="print the loopback config whose webhooks point at this URL")
    parser.add_argument("--serve", type=int, metavar="PORT", help="run a webhook receiver printing what arrives")
    args = parser.parse_args(argv)
    if args.serve is not None:
        def show(name: str, payload: dict) -> None:
            for alert in payload.get("alerts", []):
                print(name, alert.get("status"), json.dumps(alert.get("labels")), flush=True)

        with WebhookReceiver(args.serve, on_message=show) as receiver:
            print(f"listening on {receiver.url}/<receiver>", flush=True)
            threading.Event().wait()
        return 0
    if not args.base_url:
        parser.error("give a base URL or --serve PORT")
    yaml.safe_dump(loopback_config(args.base_url), sys.stdout, sort_keys=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

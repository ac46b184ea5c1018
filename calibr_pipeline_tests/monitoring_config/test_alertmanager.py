"""Alertmanager config of monitoring/alertmanager/: amtool checks, rendering, and a real
Alertmanager on loopback delivering to a webhook receiver through the production routes."""

from __future__ import annotations

import json
import os
import stat
import time
import urllib.request
from datetime import datetime, timedelta, timezone

import pytest
import yaml

from calibr_pipeline_tests.monitoring_config.alertmanager_loopback import WebhookReceiver, loopback_config
from calibr_pipeline_tests.monitoring_config.tools import (
    ALERTMANAGER_DIR,
    assert_ok,
    background,
    free_port,
    require_tool,
    run,
    server_log,
    wait_http_ok,
)

CONFIG = ALERTMANAGER_DIR / "alertmanager.yml"
RENDER = ALERTMANAGER_DIR / "render-config.sh"
SECRET_ENV = {
    "CALIBR_ALERT_SLACK_WEBHOOK_URL": "https://hooks.slack.invalid/services/T000/B000/secret-slack-token",
    "CALIBR_ALERT_PAGERDUTY_ROUTING_KEY": "secret-pagerduty-key-0123456789",
    "CALIBR_ALERT_SMTP_HOST": "smtp.calibr.invalid",
    "CALIBR_ALERT_SMTP_FROM": "alerts@calibr.invalid",
    "CALIBR_ALERT_SMTP_TO": "ops@calibr.invalid,oncall@calibr.invalid",
    "CALIBR_ALERT_SMTP_USER": "alerts",
    "CALIBR_ALERT_SMTP_PASSWORD": "secret-smtp-password",
}


def test_amtool_check_config_template():
    amtool = require_tool("amtool")
    assert_ok(run([amtool, "check-config", str(CONFIG)]))


def test_rendered_config_is_valid_and_keeps_secrets_in_files(tmp_path):
    amtool = require_tool("amtool")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALIBR_ALERT")} | SECRET_ENV
    out = tmp_path / "am"
    assert_ok(run(["bash", str(RENDER), str(out)], env=env))
    rendered = (out / "alertmanager.yml").read_text()
    assert_ok(run([amtool, "check-config", str(out / "alertmanager.yml")]))
    for name in ("CALIBR_ALERT_SLACK_WEBHOOK_URL", "CALIBR_ALERT_PAGERDUTY_ROUTING_KEY", "CALIBR_ALERT_SMTP_PASSWORD"):
        assert SECRET_ENV[name] not in rendered, f"{name} leaked into the rendered config"
    secrets = {
        "slack_api_url": SECRET_ENV["CALIBR_ALERT_SLACK_WEBHOOK_URL"],
        "pagerduty_routing_key": SECRET_ENV["CALIBR_ALERT_PAGERDUTY_ROUTING_KEY"],
        "smtp_password": SECRET_ENV["CALIBR_ALERT_SMTP_PASSWORD"],
    }
    for name, value in secrets.items():
        path = out / "secrets" / name
        assert path.read_text() == value
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert str(path) in rendered
    parsed = yaml.safe_load(rendered)
    assert parsed["global"]["smtp_smarthost"] == "smtp.calibr.invalid:587"
    email = next(r for r in parsed["receivers"] if r["name"] == "ops-email")
    assert email["email_configs"][0]["to"] == SECRET_ENV["CALIBR_ALERT_SMTP_TO"]


def test_render_refuses_missing_variables(tmp_path):
    require_tool("amtool")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALIBR_ALERT")}
    result = run(["bash", str(RENDER), str(tmp_path / "am")], env=env)
    assert result.returncode != 0
    assert "CALIBR_ALERT_SLACK_WEBHOOK_URL" in result.stderr


def test_loopback_variant_is_valid(tmp_path):
    amtool = require_tool("amtool")
    path = tmp_path / "am.yml"
    path.write_text(yaml.safe_dump(loopback_config("http://127.0.0.1:9")))
    assert_ok(run([amtool, "check-config", str(path)]))


def _alert(**labels: str) -> dict:
    now = datetime.now(timezone.utc)
    return {
        "labels": labels,
        "annotations": {"summary": f"test {labels['alertname']}", "runbook_url": f"docs/runbook.md#{labels['alertname'].lower()}"},
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(minutes=5)).isoformat(),
    }


def _has(receiver: WebhookReceiver, name: str, **labels: str) -> bool:
    return any(all(alert["labels"].get(k) == v for k, v in labels.items()) for alert in receiver.alerts(name))


@pytest.mark.integration
def test_alertmanager_routes_alerts_to_the_loopback_receivers(tmp_path):
    alertmanager = require_tool("alertmanager")
    with WebhookReceiver() as receiver:
        config = tmp_path / "alertmanager.yml"
        config.write_text(yaml.safe_dump(loopback_config(receiver.url)))
        port = free_port()
        log = tmp_path / "alertmanager.log"
        args = [
            alertmanager,
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # no gossip port
            "--log.level=debug",
        ]
        with background(args, log) as process:
            base = f"http://127.0.0.1:{port}"
            wait_http_ok(f"{base}/-/ready", process)
            alerts = [
                # warning -> slack only
                _alert(alertname="CalibrOutboxStale", severity="warning", event_type="competitor.added"),
                # critical -> pagerduty and slack
                _alert(alertname="CalibrWarehouseDown", severity="critical", instance="127.0.0.1:9464"),
                # notify=email -> ops-email only
                _alert(alertname="CalibrHttp5xxRateDaily", severity="warning", notify="email"),
                # critical + warning of the same alert and tenant: the warning is inhibited
                _alert(alertname="CalibrDlqSizeHigh", severity="critical", tenant="acme", project="p1"),
                _alert(alertname="CalibrDlqSizeHigh", severity="warning", tenant="acme", project="p1"),
            ]
            request = urllib.request.Request(
                f"{base}/api/v2/alerts",
                data=json.dumps(alerts).encode(),
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            with urllib.request.urlopen(request, timeout=5) as response:
                assert response.status == 200

            def everything_arrived(r: WebhookReceiver) -> bool:
                return (
                    _has(r, "slack", alertname="CalibrOutboxStale", severity="warning", event_type="competitor.added")
                    and _has(r, "pagerduty", alertname="CalibrWarehouseDown", severity="critical")
                    and _has(r, "slack", alertname="CalibrWarehouseDown", severity="critical")
                    and _has(r, "ops-email", alertname="CalibrHttp5xxRateDaily", notify="email")
                    and _has(r, "pagerduty", alertname="CalibrDlqSizeHigh", severity="critical", tenant="acme")
                    and _has(r, "slack", alertname="CalibrDlqSizeHigh", severity="critical", tenant="acme")
                )

            arrived = receiver.wait_until(everything_arrived, timeout=10)
            assert arrived, f"not every notification arrived: {receiver.received}\n{server_log(log)}"
            time.sleep(1.5)  # a grouping interval, for anything that should not come

        # routed nowhere else
        assert not _has(receiver, "pagerduty", severity="warning")
        assert not _has(receiver, "pagerduty", alertname="CalibrHttp5xxRateDaily")
        assert not _has(receiver, "slack", alertname="CalibrHttp5xxRateDaily")
        assert not _has(receiver, "ops-email", alertname="CalibrWarehouseDown")
        assert not _has(receiver, "ops-email", alertname="CalibrOutboxStale")
        # inhibited
        assert not _has(receiver, "slack", alertname="CalibrDlqSizeHigh", severity="warning")
        # the payload carries the labels and annotations as sent
        warehouse = next(a for a in receiver.alerts("pagerduty") if a["labels"]["alertname"] == "CalibrWarehouseDown")
        assert warehouse["status"] == "firing"
        assert warehouse["labels"] == {"alertname": "CalibrWarehouseDown", "severity": "critical", "instance": "127.0.0.1:9464"}
        assert warehouse["annotations"]["runbook_url"] == "docs/runbook.md#calibrwarehousedown"

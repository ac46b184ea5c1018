"""STRIPE_CONNECT_ENABLED off: nothing of the connector is imported or defined; on: its assets appear."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PROBE = """
import json, sys
from calibr_pipeline.definitions import build_definitions
from calibr_pipeline.cli import build_parser
defs = build_definitions()
keys = [k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()]
jobs = [j.name for j in defs.resolve_all_job_defs()]
sensors = [s.name for s in defs.sensors or []]
commands = sorted(build_parser()._subparsers._group_actions[0].choices)
print(json.dumps({"stripe_modules": sorted(m for m in sys.modules if "stripe" in m), "assets": keys, "jobs": jobs, "sensors": sensors,
                  "commands": commands}))
"""


def _probe(flag: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "STRIPE_CONNECT_ENABLED"}
    if flag is not None:
        env["STRIPE_CONNECT_ENABLED"] = flag
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.integration
def test_flag_off_means_no_stripe_import_asset_job_sensor_or_command():
    off = _probe(None)
    assert off["stripe_modules"] == []  # neither the SDK nor any calibr_pipeline.*stripe* module
    assert not [k for k in off["assets"] if "stripe" in k] and "stripe_sync" not in off["jobs"] and "stripe_webhook_sensor" not in off["sensors"]
    assert "stripe" not in off["commands"] and "events" in off["commands"]
    assert _probe("false")["stripe_modules"] == []


@pytest.mark.integration
def test_flag_on_defines_the_stripe_area():
    on = _probe("true")
    assert {"stripe_product_map", "stripe_transactions"} <= set(on["assets"])
    assert "stripe_sync" in on["jobs"] and "stripe_webhook_sensor" in on["sensors"] and "stripe" in on["commands"]

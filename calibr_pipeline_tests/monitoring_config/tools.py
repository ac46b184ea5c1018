"""Helpers shared by the monitoring-config tests: paths, the external binaries, loopback ports.

The binaries come from Debian's prometheus, prometheus-alertmanager and
prometheus-blackbox-exporter packages. A test that needs one skips when it is missing,
unless CALIBR_REQUIRE_MONITORING_TOOLS=1 (as in CI), where a missing binary fails the test.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "monitoring"
PROMETHEUS_DIR = MONITORING / "prometheus"
ALERTMANAGER_DIR = MONITORING / "alertmanager"
GRAFANA_DIR = MONITORING / "grafana"
BLACKBOX_DIR = MONITORING / "blackbox"

INSTALL_HINT = "apt-get install -y prometheus prometheus-alertmanager prometheus-blackbox-exporter"

# Debian's names first, then the upstream release names.
TOOL_NAMES = {
    "promtool": ("promtool",),
    "prometheus": ("prometheus",),
    "amtool": ("amtool",),
    "alertmanager": ("prometheus-alertmanager", "alertmanager"),
    "blackbox_exporter": ("prometheus-blackbox-exporter", "blackbox_exporter"),
}


def tools_required() -> bool:
    return os.environ.get("CALIBR_REQUIRE_MONITORING_TOOLS") == "1"


def require_tool(tool: str) -> str:
    """Path of ``tool``; skip the test when it is missing, or fail when tools are required."""
    for name in TOOL_NAMES.get(tool, (tool,)):
        path = shutil.which(name)
        if path:
            return path
    message = f"{tool} is not installed ({INSTALL_HINT})"
    if tools_required():
        pytest.fail(f"{message}, and CALIBR_REQUIRE_MONITORING_TOOLS=1")
    pytest.skip(message)


def run(args: list[str], timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kwargs)


def assert_ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, (
        f"{' '.join(map(str, result.args))} exited {result.returncode}\n"
        f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http_ok(url: str, process: subprocess.Popen, timeout: float = 15.0) -> None:
    """Poll ``url`` until it answers 200; fail early if ``process`` exits."""
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{process.args[0]} exited with {process.returncode} before {url} was ready")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last_error = str(exc)
        time.sleep(0.1)
    raise AssertionError(f"{url} not ready after {timeout}s: {last_error}")


@contextmanager
def background(args: list[str], log_path: Path) -> Iterator[subprocess.Popen]:
    """Run a server process for the duration of the block, output in ``log_path``."""
    with open(log_path, "wb") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def server_log(log_path: Path, limit: int = 4000) -> str:
    try:
        return log_path.read_text(errors="replace")[-limit:]
    except OSError:
        return ""

"""``calibr api --workers N``: several processes serve as one server — /metrics counts every
worker's requests, a token's rate limit is the server's (not each worker's), and a console
page served by one worker is accepted by the next (one CSRF key)."""

from __future__ import annotations

import glob
import os
import re
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from calibr_pipeline.services.api_tokens import create_token
from calibr_pipeline.warehouse.engine import session_scope, upgrade_to_head
from calibr_pipeline.warehouse.tenancy import get_or_create_tenant

WORKERS = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(sqlite_warehouse_url, tmp_path):
    upgrade_to_head(sqlite_warehouse_url)
    with session_scope(sqlite_warehouse_url) as session:
        get_or_create_tenant(session, "acme")
        limited = create_token(session, tenant_slug="acme", scope="read", rate_limit_per_minute=12, actor="test").token
        roomy = create_token(session, tenant_slug="acme", scope="write", actor="test").token
    port = _free_port()
    # The shared state folder is created under TMPDIR: here, so the test can look at it.
    env = dict(os.environ, TMPDIR=str(tmp_path))
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "calibr_pipeline.cli", "--warehouse-url", sqlite_warehouse_url, "api", "--port", str(port), "--workers", str(WORKERS)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(base + "/api/health", timeout=1).ok:
                break
        except requests.RequestException:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"calibr api --workers did not start: {process.stdout.read()}")
        time.sleep(0.2)
    try:
        yield base, limited, roomy, tmp_path
    finally:
        process.terminate()
        process.wait(20)
    assert not glob.glob(str(tmp_path / "calibr-api-*")), "the shared state folder outlives the server"


def _fresh(method: str, url: str, **kwargs) -> requests.Response:
    """One request on its own connection, so the kernel hands it to any worker."""
    headers = {"Connection": "close", **kwargs.pop("headers", {})}
    return requests.request(method, url, headers=headers, timeout=10, **kwargs)


def _at_once(n: int, call) -> list:
    """``n`` calls at the same time: an idle worker takes a connection while another is busy."""
    with ThreadPoolExecutor(max_workers=10) as pool:
        return list(pool.map(lambda _: call(), range(n)))


def _worker_pids(state: str) -> set[str]:
    return {re.search(r"_(\d+)\.db$", f).group(1) for f in glob.glob(os.path.join(state, "metrics", "counter_*.db"))}


def _until_every_worker_answered(base: str, state: str) -> None:
    # The first worker answers while the others may still be importing the app. Then: a request
    # that takes a few milliseconds (a rendered page), many at once, so that a worker still
    # busy leaves the next connection to another (1 ms answers may all go to one).
    deadline = time.monotonic() + 90
    while len(_worker_pids(state)) < WORKERS and time.monotonic() < deadline:
        assert all(r.status_code == 200 for r in _at_once(30, lambda: _fresh("GET", base + "/console/login")))
    assert len(_worker_pids(state)) == WORKERS, "in 90 s, concurrent requests reached only one worker"


def test_metrics_sum_every_worker_and_the_rate_limit_is_the_servers(server):
    base, limited, roomy, tmp_path = server
    (state,) = glob.glob(str(tmp_path / "calibr-api-*"))
    _until_every_worker_answered(base, state)
    health = 40
    assert all(r.status_code == 200 for r in _at_once(health, lambda: _fresh("GET", base + "/api/health")))
    statuses = [r.status_code for r in _at_once(30, lambda: _fresh("GET", base + "/api/v1/runs", headers={"Authorization": f"Bearer {limited}"}))]
    # 12 a minute for the token, whichever worker answers (a bucket per worker would let up to 24 through).
    assert statuses.count(200) == 12 and statuses.count(429) == 18, statuses
    metrics = _fresh("GET", base + "/metrics").text
    counted = {
        code: float(value)
        for code, value in re.findall(r'calibr_api_requests_total\{code="(\d+)",method="GET",route="/api/v1/runs"\} ([0-9.e+]+)', metrics)
    }
    assert counted == {"200": 12.0, "429": 18.0}
    served = re.search(r'calibr_api_requests_total\{code="200",method="GET",route="/api/health"\} ([0-9.e+]+)', metrics)
    assert served and float(served.group(1)) >= health  # every worker's, plus the start-up polls


def test_a_console_page_from_one_worker_is_accepted_by_another(server):
    base, _limited, roomy, tmp_path = server
    (state,) = glob.glob(str(tmp_path / "calibr-api-*"))
    browser = requests.Session()
    browser.headers["Connection"] = "close"
    form = browser.get(base + "/console/login", timeout=10)
    nonce = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    signed_in = browser.post(base + "/console/login", data={"token": roomy, "csrf": nonce}, allow_redirects=False, timeout=10)
    assert signed_in.status_code == 303 and "calibr_session" in browser.cookies
    page = browser.get(base + "/console", timeout=10)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    cookies = {"calibr_session": roomy}
    _until_every_worker_answered(base, state)
    # Many POSTs at once on new connections, so both workers take some: with a key per worker
    # the ones the other worker takes are refused (403).
    outcomes = _at_once(60, lambda: _fresh("POST", base + "/console/logout", data={"csrf": csrf}, cookies=cookies, allow_redirects=False))
    assert {r.status_code for r in outcomes} == {303}, [r.text for r in outcomes if r.status_code != 303][:2]

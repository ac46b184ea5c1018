"""The runs console in a real headless Chromium (Debian's chromium + chromium-driver): sign
in, open a run, explain a target, retry its failed targets and watch the state change as
the apply (what the sensor launches) completes."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from datetime import datetime, timedelta, timezone

import pytest

from calibr_pipeline.services import price_apply
from calibr_pipeline.warehouse.engine import session_scope
from calibr_pipeline.warehouse.models import RuleRun
from calibr_pipeline_tests.api.conftest import client_for

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        if os.environ.get("CALIBR_REQUIRE_BROWSER") == "1":
            pytest.fail("CALIBR_REQUIRE_BROWSER=1 but chromium / chromedriver are not installed")
        pytest.skip("chromium and chromium-driver are not installed (.ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="calibr-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.mark.parametrize("api", ["sqlite"], indirect=True)
def test_sign_in_open_run_explain_retry_and_see_the_state_change(api, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    acme = api.tenants["acme"]
    wait = WebDriverWait(browser, 20)
    browser.get(api.base + "/console")
    assert browser.current_url.endswith("/console/login")

    # A wrong token is refused with a message; the right one signs in.
    browser.find_element(By.ID, "token").send_keys("cal_wrong")
    browser.find_element(By.ID, "sign-in").click()
    assert "Sign-in failed" in wait.until(EC.presence_of_element_located((By.ID, "status-message"))).text
    browser.find_element(By.ID, "token").send_keys(acme.write_token)
    browser.find_element(By.ID, "sign-in").click()
    wait.until(EC.presence_of_element_located((By.ID, "runs")))
    assert browser.find_element(By.ID, "tenant").text == "acme"
    cookie = browser.get_cookie("calibr_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/console"
    assert browser.execute_script("return document.cookie").find("calibr_session") == -1  # not readable by scripts
    rows = browser.find_elements(By.CSS_SELECTOR, "#runs tbody tr")
    assert {r.get_attribute("id") for r in rows} >= {f"run-{acme.partial_run}", f"run-{acme.applied_run}"}
    assert not any("rival" in r.text for r in rows)

    browser.find_element(By.CSS_SELECTOR, f"#run-{acme.partial_run} a.run-link").click()
    assert wait.until(EC.presence_of_element_located((By.ID, "run-state"))).text == "PARTIAL"
    assert browser.find_element(By.ID, "run-status").text.startswith("Partly applied: 2 target(s) failed")
    failed_rows = [browser.find_element(By.ID, f"target-{i}") for i in acme.failed_target_ids]
    assert all(r.find_element(By.CLASS_NAME, "target-state").text == "FAILED" for r in failed_rows)

    failed_rows[0].find_element(By.CLASS_NAME, "explain-link").click()
    steps = wait.until(EC.presence_of_element_located((By.ID, "explain-steps"))).text
    assert "transform" in steps and "final" in steps
    assert "price.applied" in browser.find_element(By.ID, "audit-trail").text
    browser.back()

    wait.until(EC.element_to_be_clickable((By.ID, "retry-failed"))).click()
    message = wait.until(EC.presence_of_element_located((By.ID, "status-message"))).text
    assert "Retry queued: 2 failed target(s)" in message
    # The run stays PARTIAL until the apply launched for it claims it; its targets are queued.
    assert browser.find_element(By.ID, "run-state").text == "PARTIAL"
    assert browser.find_element(By.ID, "run-status").text.startswith("Retry queued: 2 target(s)")
    assert {browser.find_element(By.ID, f"target-{i}").find_element(By.CLASS_NAME, "target-state").text for i in acme.failed_target_ids} == {"APPLYING"}

    # One writer per shop: the fixture's other run "being applied" ends its turn first.
    with session_scope(api.url) as session:
        session.get(RuleRun, acme.applying_run).lease_expires_at = datetime.now(timezone.utc) - timedelta(seconds=1)
    # What the rules_apply_sensor launches for the queued event: the page polls and follows.
    worker = threading.Thread(target=price_apply.apply_run, args=(api.url, acme.partial_run, client_for), kwargs={"actor": "test", "sleep": lambda s: None})
    worker.start()
    worker.join(30)
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    settled = WebDriverWait(browser, 20, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException))
    settled.until(lambda d: d.find_element(By.ID, "run-state").text == "APPLIED")
    settled.until(lambda d: d.find_element(By.ID, "run-status").text == "Applied: every price was written.")
    assert {browser.find_element(By.ID, f"target-{i}").find_element(By.CLASS_NAME, "target-state").text for i in acme.failed_target_ids} == {"APPLIED"}
    assert browser.find_elements(By.ID, "retry-failed") == []


def test_console_post_without_csrf_is_refused(api):
    """A cross-site form post (no CSRF token) cannot retry anything, even with the cookie."""
    acme = api.tenants["acme"]
    before = api.counts()
    response = api.http.post(f"{api.base}/console/runs/{acme.partial_run}/retry-failed", data={"csrf": "forged"},
                             cookies={"calibr_session": acme.write_token}, allow_redirects=False, timeout=30)
    assert response.status_code == 403 and response.json()["error"]["code"] == "csrf"
    assert api.counts() == before
    page = api.http.get(f"{api.base}/console", cookies={"calibr_session": api.tenants["rival"].read_token}, timeout=30)
    assert page.status_code == 200 and acme.partial_run not in page.text
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]

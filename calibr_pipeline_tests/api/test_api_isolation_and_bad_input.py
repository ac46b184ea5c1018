"""Hostile requests over real HTTP: another tenant's resources (404, exactly like a resource
that does not exist) and bad input on every write (the documented status, nothing written)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration

MISSING_RUN = "00000000-0000-4000-8000-000000000000"
MISSING_ID = 987654321


def cross_tenant_cases(acme, rival) -> list[tuple[str, str, str, object, str]]:
    """(name, method, path with rival's ids, body, the same path with ids that do not exist)."""
    r = rival
    return [
        ("project competitors", "GET", f"/api/v1/projects/{r.project}/competitors", None, "/api/v1/projects/nope/competitors"),
        ("competitors ?project", "GET", f"/api/v1/competitors?project={r.project}", None, "/api/v1/competitors?project=nope"),
        ("add competitor", "POST", f"/api/v1/projects/{r.project}/competitors", {"sku": r.sku, "url": r.competitor_url}, "/api/v1/projects/nope/competitors"),
        ("observations", "GET", f"/api/v1/competitors/{r.listing_id}/observations", None, f"/api/v1/competitors/{MISSING_ID}/observations"),
        ("rules list", "GET", f"/api/v1/projects/{r.project}/rules", None, "/api/v1/projects/nope/rules"),
        ("rule create", "POST", f"/api/v1/projects/{r.project}/rules", {"name": "steal", "transform": {"kind": "percent_change", "value": "1"}, "scope": {"kind": "project"}}, "/api/v1/projects/nope/rules"),
        ("rule get", "GET", f"/api/v1/rules/{r.rule_id}", None, f"/api/v1/rules/{MISSING_ID}"),
        ("materialize", "POST", f"/api/v1/rules/{r.rule_id}/materialize", None, f"/api/v1/rules/{MISSING_ID}/materialize"),
        ("runs ?rule", "GET", f"/api/v1/runs?rule={r.rule_id}", None, f"/api/v1/runs?rule={MISSING_ID}"),
        ("runs ?project", "GET", f"/api/v1/runs?project={r.project}", None, "/api/v1/runs?project=nope"),
        *[
            (f"{what} run get", "GET", f"/api/v1/runs/{run}", None, f"/api/v1/runs/{MISSING_RUN}")
            for what, run in (("queued", r.queued_run), ("applied", r.applied_run), ("partial", r.partial_run), ("applying", r.applying_run))
        ],
        *[
            (f"{what} run targets", "GET", f"/api/v1/runs/{run}/targets", None, f"/api/v1/runs/{MISSING_RUN}/targets")
            for what, run in (("queued", r.queued_run), ("applied", r.applied_run), ("partial", r.partial_run))
        ],
        ("target explain", "GET", f"/api/v1/targets/{r.target_id}/explain", None, f"/api/v1/targets/{MISSING_ID}/explain"),
        ("failed target explain", "GET", f"/api/v1/targets/{r.failed_target_ids[0]}/explain", None, f"/api/v1/targets/{MISSING_ID}/explain"),
        ("apply queued", "POST", f"/api/v1/runs/{r.queued_run}/apply", None, f"/api/v1/runs/{MISSING_RUN}/apply"),
        ("apply partial", "POST", f"/api/v1/runs/{r.partial_run}/apply", None, f"/api/v1/runs/{MISSING_RUN}/apply"),
        ("apply applying", "POST", f"/api/v1/runs/{r.applying_run}/apply", None, f"/api/v1/runs/{MISSING_RUN}/apply"),
        ("revert applied", "POST", f"/api/v1/runs/{r.applied_run}/revert", None, f"/api/v1/runs/{MISSING_RUN}/revert"),
        ("revert queued", "POST", f"/api/v1/runs/{r.queued_run}/revert", None, f"/api/v1/runs/{MISSING_RUN}/revert"),
        ("retry partial", "POST", f"/api/v1/runs/{r.partial_run}/retry-failed", {}, f"/api/v1/runs/{MISSING_RUN}/retry-failed"),
        ("retry partial with ids", "POST", f"/api/v1/runs/{r.partial_run}/retry-failed", {"targetIds": r.failed_target_ids}, f"/api/v1/runs/{MISSING_RUN}/retry-failed"),
        ("reconcile applied", "POST", f"/api/v1/runs/{r.applied_run}/reconcile", {}, f"/api/v1/runs/{MISSING_RUN}/reconcile"),
        ("reconcile queued", "POST", f"/api/v1/runs/{r.queued_run}/reconcile", {}, f"/api/v1/runs/{MISSING_RUN}/reconcile"),
        ("audit ?project", "GET", f"/api/v1/audit?project={r.project}", None, "/api/v1/audit?project=nope"),
        ("audit ?run", "GET", f"/api/v1/audit?run={r.applied_run}", None, f"/api/v1/audit?run={MISSING_RUN}"),
        ("price changes ?project", "GET", f"/api/v1/price-changes?project={r.project}", None, "/api/v1/price-changes?project=nope"),
        ("price changes ?run", "GET", f"/api/v1/price-changes?run={r.applied_run}", None, f"/api/v1/price-changes?run={MISSING_RUN}"),
    ]


def _shape(response) -> tuple[int, str, list[str]]:
    error = response.json()["error"]
    return response.status_code, error["code"], sorted(error["details"])


def test_another_tenants_resources_are_404_like_missing_ones_and_nothing_is_written(api):
    acme, rival = api.tenants["acme"], api.tenants["rival"]
    cases = cross_tenant_cases(acme, rival)
    assert len(cases) >= 30
    before = api.counts()
    failures = []
    for name, method, path, body, missing_path in cases:
        for token in (acme.write_token, acme.read_token if method == "GET" else acme.write_token):
            response = api.request(method, path, token, json=body)
            missing = api.request(method, missing_path, token, json=body)
            text = response.text
            leaked = [v for v in (rival.sku, rival.competitor_url, "Raise 10%", "rival store") if v in text]
            if response.status_code != 404 or _shape(response) != _shape(missing) or leaked:
                failures.append((name, response.status_code, text[:200], missing.text[:200], leaked))
    assert failures == []
    assert api.counts() == before


def test_retry_with_another_tenants_target_ids_is_refused(api):
    acme, rival = api.tenants["acme"], api.tenants["rival"]
    before = api.counts()
    response = api.request("POST", f"/api/v1/runs/{acme.partial_run}/retry-failed", acme.write_token, json={"targetIds": rival.failed_target_ids})
    assert response.status_code in (409, 422), response.text  # 409 once the partial run was retried by another test
    assert api.counts() == before


def test_lists_never_contain_another_tenants_rows(api):
    acme, rival = api.tenants["acme"], api.tenants["rival"]
    for token in (acme.read_token, rival.read_token):
        me = acme if token == acme.read_token else rival
        runs = api.request("GET", "/api/v1/runs?limit=500", token).json()["items"]
        assert runs and {r["project"] for r in runs} == {me.project}
        listings = api.request("GET", "/api/v1/competitors?limit=500", token).json()["items"]
        assert listings and {l["project"] for l in listings} == {me.project}
        audit = api.request("GET", "/api/v1/audit?limit=500", token).json()["items"]
        assert audit and {e["tenant"] for e in audit} == {me.slug}
        changes = api.request("GET", "/api/v1/price-changes?limit=500", token).json()["items"]
        assert changes and {c["project"] for c in changes} == {me.project}


BIG = "x" * 1_100_000


def bad_input_cases(acme) -> list[tuple[str, str, str, dict, int, str]]:
    """(name, method, path, request kwargs, status, error code)."""
    comp = f"/api/v1/projects/{acme.project}/competitors"
    rules = f"/api/v1/projects/{acme.project}/rules"
    ok_url, sku = acme.competitor_url, acme.sku
    raw = lambda text: {"data": text, "headers": {"Content-Type": "application/json"}}  # noqa: E731
    return [
        ("competitor: malformed JSON", "POST", comp, raw("{sku: 'A'"), 400, "malformed_json"),
        ("competitor: truncated JSON", "POST", comp, raw('{"sku": "A", "url": '), 400, "malformed_json"),
        ("competitor: JSON array", "POST", comp, {"json": [sku, ok_url]}, 422, "invalid_input"),
        ("competitor: empty body", "POST", comp, {}, 422, "invalid_input"),
        ("competitor: missing url", "POST", comp, {"json": {"sku": sku}}, 422, "invalid_input"),
        ("competitor: sku is a number", "POST", comp, {"json": {"sku": 42, "url": ok_url}}, 422, "invalid_input"),
        ("competitor: url is a list", "POST", comp, {"json": {"sku": sku, "url": [ok_url]}}, 422, "invalid_input"),
        ("competitor: unknown field", "POST", comp, {"json": {"sku": sku, "url": ok_url, "admin": True}}, 422, "invalid_input"),
        ("competitor: unknown kind", "POST", comp, {"json": {"sku": sku, "url": ok_url, "kind": "ftp"}}, 422, "invalid_input"),
        ("competitor: unknown match", "POST", comp, {"json": {"sku": sku, "url": ok_url, "match": "fuzzy"}}, 422, "invalid_input"),
        ("competitor: unknown SKU", "POST", comp, {"json": {"sku": "NO-SUCH-SKU", "url": ok_url}}, 422, "invalid_input"),
        ("competitor: bad currency", "POST", comp, {"json": {"sku": sku, "url": ok_url, "currency": "XYZ"}}, 422, "invalid_input"),
        ("competitor: file URL", "POST", comp, {"json": {"sku": sku, "url": "file:///etc/passwd"}}, 422, "invalid_url"),
        ("competitor: ftp URL", "POST", comp, {"json": {"sku": sku, "url": "ftp://example.com/p"}}, 422, "invalid_url"),
        ("competitor: not a URL", "POST", comp, {"json": {"sku": sku, "url": "not a url"}}, 422, "invalid_url"),
        ("competitor: metadata endpoint", "POST", comp, {"json": {"sku": sku, "url": "http://169.254.169.254/latest/meta-data/"}}, 422, "blocked_url"),
        ("competitor: private network", "POST", comp, {"json": {"sku": sku, "url": "http://10.0.0.5/products/x"}}, 422, "blocked_url"),
        ("competitor: URL with credentials", "POST", comp, {"json": {"sku": sku, "url": "https://user:pw@shop.example.com/products/x"}}, 422, None),
        ("competitor: URL too long", "POST", comp, {"json": {"sku": sku, "url": "https://shop.example.com/" + "a" * 3990}}, 422, None),
        ("competitor: huge body", "POST", comp, {"json": {"sku": sku, "url": ok_url, "name": BIG}}, 413, "payload_too_large"),
        ("rule: malformed JSON", "POST", rules, raw('{"name": "x",}'), 400, "malformed_json"),
        ("rule: JSON array", "POST", rules, {"json": [1, 2]}, 422, "invalid_input"),
        ("rule: JSON string", "POST", rules, {"json": "rule"}, 422, "invalid_input"),
        ("rule: every problem listed", "POST", rules, {"json": {"name": "", "transform": {"kind": "teleport"}, "scope": {"kind": "planet"}, "bogus": 1}}, 422, "invalid_rule"),
        ("rule: negative price", "POST", rules, {"json": {"name": "n", "transform": {"kind": "percent_change", "value": "-150"}, "scope": {"kind": "project"}}}, 422, "invalid_rule"),
        ("rule: huge body", "POST", rules, {"json": {"name": BIG}}, 413, "payload_too_large"),
        ("rule: unknown rule id", "POST", f"/api/v1/rules/{MISSING_ID}/materialize", {}, 404, "not_found"),
        ("rule: id not a number", "GET", "/api/v1/rules/abc", {}, 422, "invalid_input"),
        ("apply: unknown run", "POST", f"/api/v1/runs/{MISSING_RUN}/apply", {}, 404, "not_found"),
        ("apply: applying run", "POST", f"/api/v1/runs/{acme.applying_run}/apply", {}, 409, "conflict"),
        ("revert: queued run", "POST", f"/api/v1/runs/{acme.queued_run}/revert", {}, 409, "conflict"),
        ("revert: unknown run", "POST", f"/api/v1/runs/{MISSING_RUN}/revert", {}, 404, "not_found"),
        ("retry: queued run", "POST", f"/api/v1/runs/{acme.queued_run}/retry-failed", {"json": {}}, 409, "conflict"),
        ("retry: ids as strings", "POST", f"/api/v1/runs/{acme.partial_run}/retry-failed", {"json": {"targetIds": ["1"]}}, 422, "invalid_input"),
        ("retry: ids not a list", "POST", f"/api/v1/runs/{acme.partial_run}/retry-failed", {"json": {"targetIds": 5}}, 422, "invalid_input"),
        ("retry: malformed JSON", "POST", f"/api/v1/runs/{acme.partial_run}/retry-failed", raw("{"), 400, "malformed_json"),
        ("reconcile: queued run", "POST", f"/api/v1/runs/{acme.queued_run}/reconcile", {"json": {}}, 409, "conflict"),
        ("reconcile: flag not a bool", "POST", f"/api/v1/runs/{acme.applied_run}/reconcile", {"json": {"scheduleRetry": "yes"}}, 422, "invalid_input"),
        ("runs: bad state filter", "GET", "/api/v1/runs?state=DONE", {}, 422, "invalid_input"),
        ("runs: bad date", "GET", "/api/v1/runs?since=yesterday", {}, 422, "invalid_input"),
        ("runs: limit 0", "GET", "/api/v1/runs?limit=0", {}, 422, "invalid_input"),
        ("runs: limit too big", "GET", "/api/v1/runs?limit=100000", {}, 422, "invalid_input"),
        ("runs: forged cursor", "GET", "/api/v1/runs?cursor=bm9wZQ", {}, 400, "invalid_cursor"),
        ("targets: bad state", "GET", f"/api/v1/runs/{acme.applied_run}/targets?state=LOST", {}, 422, "invalid_input"),
        ("audit: forged cursor", "GET", "/api/v1/audit?cursor=%27%20OR%201=1", {}, 400, "invalid_cursor"),
        ("price changes: bad limit", "GET", "/api/v1/price-changes?limit=-1", {}, 422, "invalid_input"),
        ("explain: id not a number", "GET", "/api/v1/targets/1;DROP TABLE rule_targets/explain", {}, 422, "invalid_input"),
    ]


def test_bad_input_gets_the_documented_status_and_writes_nothing(api):
    acme = api.tenants["acme"]
    cases = bad_input_cases(acme)
    assert len([c for c in cases if c[1] == "POST"]) >= 30
    failures = []
    for name, method, path, kwargs, status, code in cases:
        before = api.counts()
        response = api.request(method, path, acme.write_token, **kwargs)
        body = response.json()
        if response.status_code != status or (code and body["error"]["code"] != code) or not body["error"]["message"]:
            failures.append((name, response.status_code, response.text[:300]))
        if "Traceback" in response.text or 'File "' in response.text:
            failures.append((name, "traceback", response.text[:300]))
        if api.counts() != before:
            failures.append((name, "wrote", api.counts(), before))
    assert failures == []


def test_rule_errors_list_every_problem(api):
    acme = api.tenants["acme"]
    response = api.request("POST", f"/api/v1/projects/{acme.project}/rules", acme.write_token,
                           json={"name": "", "transform": {"kind": "teleport"}, "scope": {"kind": "planet"}, "bogus": 1})
    problems = response.json()["error"]["details"]["problems"]
    assert len(problems) >= 3 and any("bogus" in p for p in problems) and any("teleport" in p for p in problems)


def test_materialize_of_a_rule_matching_nothing_is_422_and_leaves_no_run(api):
    acme = api.tenants["acme"]
    rule = api.request("POST", f"/api/v1/projects/{acme.project}/rules", acme.write_token,
                       json={"name": "Nothing", "transform": {"kind": "percent_change", "value": "1"}, "scope": {"kind": "tag", "values": ["no-such-tag"]}}).json()
    before = api.counts()
    response = api.request("POST", f"/api/v1/rules/{rule['id']}/materialize", acme.write_token)
    assert response.status_code == 422 and "matches no SKU" in response.json()["error"]["message"]
    assert api.counts() == before

"""Authentication and authorization over real HTTP: every endpoint refuses every bad credential,
read tokens cannot write, tokens are rate limited, and nothing is written by a refused request."""

from __future__ import annotations

import pytest

from calibr_pipeline.services.api_tokens import create_token
from calibr_pipeline.warehouse.engine import session_scope
from calibr_pipeline_tests.api.endpoints import endpoints

pytestmark = pytest.mark.integration


def _bad_credentials(api) -> dict[str, dict]:
    return {
        "missing": {},
        "not bearer": {"Authorization": "Basic YWRtaW46YWRtaW4="},
        "empty bearer": {"Authorization": "Bearer "},
        "unknown token": {"Authorization": "Bearer cal_" + "A" * 43},
        "not our format": {"Authorization": "Bearer " + "x" * 40},
        "revoked": {"Authorization": f"Bearer {api.revoked_token}"},
        "expired": {"Authorization": f"Bearer {api.expired_token}"},
        "oversized": {"Authorization": "Bearer cal_" + "A" * 5000},
    }


def test_every_endpoint_refuses_every_bad_credential_with_401_and_writes_nothing(api):
    before = api.counts()
    failures = []
    for name, method, path, body, _ in endpoints(api.tenants["acme"]):
        for credential, headers in _bad_credentials(api).items():
            response = api.request(method, path, json=body, headers=headers)
            payload = response.json()
            if response.status_code != 401 or payload["error"]["code"] != "unauthorized" or "WWW-Authenticate" not in response.headers:
                failures.append((name, credential, response.status_code, payload))
    assert failures == []
    assert api.counts() == before


def test_read_token_on_every_write_endpoint_is_403_and_writes_nothing(api):
    acme = api.tenants["acme"]
    before = api.counts()
    writes = [e for e in endpoints(acme) if e[4]]
    assert len(writes) == 7
    for name, method, path, body, _ in writes:
        response = api.request(method, path, acme.read_token, json=body)
        assert response.status_code == 403, (name, response.text)
        assert response.json()["error"]["code"] == "forbidden"
    assert api.counts() == before


def test_read_token_reads_every_read_endpoint(api):
    acme = api.tenants["acme"]
    for name, method, path, body, write in endpoints(acme):
        if not write:
            response = api.request(method, path, acme.read_token)
            assert response.status_code == 200, (name, response.text)


def test_tokens_record_when_they_were_last_used(api):
    from sqlalchemy import select

    from calibr_pipeline.warehouse.models import ApiToken

    acme = api.tenants["acme"]
    assert api.request("GET", "/api/v1/runs", acme.read_token).status_code == 200
    with session_scope(api.url) as session:
        used = session.scalars(select(ApiToken.last_used_at).where(ApiToken.tenant_id == acme.tenant_id, ApiToken.scope == "read")).all()
        never = session.scalar(select(ApiToken.last_used_at).where(ApiToken.revoked_at.is_not(None)))
    assert any(used) and never is None


def test_public_endpoints_need_no_token(api):
    assert api.request("GET", "/api/health").json()["status"] == "healthy"
    spec = api.request("GET", "/api/v1/openapi.json").json()
    assert spec["openapi"].startswith("3.") and "/api/v1/runs/{run_id}/apply" in spec["paths"]
    assert api.request("GET", "/api/v1/docs").status_code == 200


def test_rate_limit_answers_429_with_retry_after_per_token(api):
    acme = api.tenants["acme"]
    with session_scope(api.url) as session:
        limited = create_token(session, tenant_slug="acme", scope="read", rate_limit_per_minute=3, actor="test").token
    statuses = [api.request("GET", "/api/v1/runs", limited).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    response = api.request("GET", "/api/v1/runs", limited)
    assert response.status_code == 429 and int(response.headers["Retry-After"]) >= 1
    assert response.json()["error"]["code"] == "rate_limited"
    # Another token of the same tenant is not affected.
    assert api.request("GET", "/api/v1/runs", acme.read_token).status_code == 200


def test_unknown_route_and_method_are_json_errors(api):
    acme = api.tenants["acme"]
    response = api.request("GET", "/api/v1/nothing-here", acme.read_token)
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    response = api.request("DELETE", f"/api/v1/runs/{acme.queued_run}", acme.write_token)
    assert response.status_code == 405 and response.json()["error"]["code"] == "method_not_allowed"

"""The app factory: area routers from one list, and a bug is a JSON 500 with a request id (no traceback)."""

from __future__ import annotations

import logging

import pytest
import requests
from fastapi import APIRouter, Depends

from calibr_pipeline.api import app as app_module
from calibr_pipeline.api.app import AREA_ROUTER_FACTORIES, create_app
from calibr_pipeline.services.api_tokens import create_token
from calibr_pipeline.warehouse.engine import session_scope
from calibr_pipeline.warehouse.tenancy import get_or_create_tenant
from calibr_pipeline_tests.api.conftest import ApiServer

pytestmark = pytest.mark.integration


def broken_area(require_read, require_write) -> APIRouter:
    """An area router as other areas write them: the principal comes from require_read."""
    router = APIRouter()

    @router.get("/api/v1/broken")
    def broken(principal=Depends(require_read)):
        raise RuntimeError("secret-detail-that-must-not-leak")

    @router.get("/api/v1/whoami")
    def whoami(principal=Depends(require_read)):
        return {"tenant_id": principal.tenant_id, "tenant_slug": principal.tenant_slug, "token_id": principal.token_id, "scope": principal.scope}

    return router


def test_area_routers_come_from_one_list_and_bugs_are_json_500(sqlite_warehouse_url, caplog, monkeypatch):
    assert app_module.health.build_router in AREA_ROUTER_FACTORIES
    monkeypatch.setattr(app_module, "AREA_ROUTER_FACTORIES", [*AREA_ROUTER_FACTORIES, broken_area])
    with session_scope(sqlite_warehouse_url) as session:
        get_or_create_tenant(session, "acme")
        token = create_token(session, tenant_slug="acme", scope="read", actor="test")
    app = create_app(sqlite_warehouse_url)
    caplog.set_level(logging.ERROR)
    with ApiServer(app) as base:
        headers = {"Authorization": f"Bearer {token.token}"}
        me = requests.get(base + "/api/v1/whoami", headers=headers, timeout=10).json()
        assert me == {"tenant_id": 1, "tenant_slug": "acme", "token_id": token.id, "scope": "read"}
        response = requests.get(base + "/api/v1/broken", headers=headers, timeout=10)
        assert response.status_code == 500
        body = response.json()
        assert body["error"]["code"] == "internal" and body["error"]["details"]["request_id"]
        assert "secret-detail" not in response.text and "Traceback" not in response.text
        assert body["error"]["details"]["request_id"] in caplog.text
        metrics = requests.get(base + "/metrics", timeout=10).text
        assert 'calibr_api_requests_total{code="500",method="GET",route="/api/v1/broken"} 1.0' in metrics


def test_service_errors_map_to_statuses():
    from calibr_pipeline.api.errors import calibr_error_status
    from calibr_pipeline.domain.errors import CalibrError
    from calibr_pipeline.domain.rules import RuleValidationError
    from calibr_pipeline.domain.state_machine import InvalidTransition
    from calibr_pipeline.warehouse.tenancy import InvalidInputError, NotFoundError

    class LeaseConflict(CalibrError):  # what a live apply lease may raise (issue 7)
        pass

    class Declared(CalibrError):
        http_status = 409

    assert calibr_error_status(NotFoundError("x")) == 404
    assert calibr_error_status(InvalidTransition("RuleRun", "APPLIED", "APPLYING")) == 409
    assert calibr_error_status(LeaseConflict("run is being applied")) == 409
    assert calibr_error_status(Declared("x")) == 409
    assert calibr_error_status(RuleValidationError(["a"])) == 422
    assert calibr_error_status(InvalidInputError("x")) == 422

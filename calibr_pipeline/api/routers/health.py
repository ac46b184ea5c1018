"""``/api/health`` (liveness, public) and ``/api/health/detailed`` (the monitoring checks; needs a token)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from calibr_pipeline.monitoring.health import liveness


def build_router(require_read, require_write) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/api/health", summary="Liveness: the API process answers")
    def health():
        return liveness()

    @router.get("/api/health/detailed", summary="Database, connectors, event bus and worker queue checks (needs a token)")
    def health_detailed(request: Request, principal=Depends(require_read)):
        return request.app.state.health_checker().detailed()

    return router

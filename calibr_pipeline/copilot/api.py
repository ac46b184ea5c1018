"""HTTP routes of the copilot: ``build_router(require_read, require_write)`` returns a FastAPI router
the API application mounts. The dependencies authenticate the caller and return a principal with
``tenant_id``, ``tenant_slug``, ``token_id`` and ``scope``; the tenant always comes from the
principal, never from the request body.

- ``GET  /api/v1/copilot``           probe (read scope): backend, model, tools, views
- ``GET  /api/v1/copilot/audit``     read scope: the tenant's copilot calls (``?project=&limit=``)
- ``POST /api/v1/copilot/simulate``  read scope: ``{"project", "prompt"}`` -> the copilot JSON result
- ``POST /api/v1/copilot/propose``   write scope: the same, saving a DISABLED rule plus a preview run

A refusal is a normal answer (HTTP 200, ``"status": "refused"`` with the code); an unknown
project or another tenant's is 404 with the same message either way; bad bodies are 422.
"""

from __future__ import annotations

from typing import Any, Callable

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from calibr_pipeline.domain.errors import CalibrError


class CopilotRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    project: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    prompt: str = Field(min_length=1, max_length=4000)


def build_router(require_read: Callable[..., Any], require_write: Callable[..., Any], *, warehouse_url: str | Callable[[], str] | None = None) -> APIRouter:
    from calibr_pipeline import settings

    def url() -> str:
        if callable(warehouse_url):
            return warehouse_url()
        return warehouse_url or settings.warehouse_url()

    router = APIRouter(prefix="/api/v1/copilot", tags=["copilot"])

    def _run(command: str, body: CopilotRequest, principal) -> dict:
        from calibr_pipeline.copilot.service import run_copilot
        from calibr_pipeline.warehouse.tenancy import NotFoundError

        try:
            return run_copilot(url(), command=command, project_slug=body.project, prompt=body.prompt,
                               actor=f"token:{getattr(principal, 'token_id', '?')}", entry_point="api", tenant_id=int(principal.tenant_id))
        except NotFoundError:
            raise HTTPException(status_code=404, detail=f"unknown project {body.project!r}") from None
        except CalibrError as exc:
            raise HTTPException(status_code=400, detail=" ".join(str(exc).split())[:300]) from None

    @router.get("")
    def copilot_probe(principal=Depends(require_read)) -> dict:
        from calibr_pipeline.connectors.llm import TOOLS
        from calibr_pipeline.copilot.service import configured_backend
        from calibr_pipeline.domain.copilot_sql import ANALYTICS_VIEWS

        backend = configured_backend()
        return {"status": "ok", "backend": backend.name, "model": backend.model, "tools": [t["function"]["name"] for t in TOOLS],
                "views": sorted(ANALYTICS_VIEWS), "tenant": getattr(principal, "tenant_slug", None)}

    @router.get("/audit")
    def copilot_audit(principal=Depends(require_read), project: str | None = None, limit: int = 50) -> dict:
        """The caller's tenant's copilot calls, newest first (prompt, tool calls, executed SQL, refusal)."""
        from calibr_pipeline.copilot.service import list_copilot_audit
        from calibr_pipeline.warehouse.engine import session_scope

        if not 1 <= limit <= 500:
            raise HTTPException(status_code=422, detail="limit must be between 1 and 500")
        with session_scope(url()) as session:
            rows = list_copilot_audit(session, tenant_id=int(principal.tenant_id), project=project, limit=limit)
        return {"copilot_calls": rows}

    @router.post("/simulate")
    def copilot_simulate(body: CopilotRequest, principal=Depends(require_read)) -> dict:
        return _run("simulate", body, principal)

    @router.post("/propose")
    def copilot_propose(body: CopilotRequest, principal=Depends(require_write)) -> dict:
        return _run("propose", body, principal)

    return router

"""Pricing rules: create (validated, every problem listed), list, get, materialize (preview a run)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Request
from sqlalchemy import select

from calibr_pipeline.api.auth import open_scope
from calibr_pipeline.api.schemas import iso
from calibr_pipeline.services.rule_runs import compute_targets, create_run, save_rule
from calibr_pipeline.warehouse.models import PricingRule, Project, Shop
from calibr_pipeline.warehouse.scoped import TenantScope


def rule_json(rule: PricingRule, project_slug: str) -> dict:
    return {
        "id": rule.id,
        "project": project_slug,
        "name": rule.name,
        "active": rule.active,
        "definition": rule.definition,
        "createdBy": rule.created_by,
        "createdAt": iso(rule.created_at),
        "updatedAt": iso(rule.updated_at),
    }


def shop_preset(scope: TenantScope, project_id: int) -> str | None:
    return scope.session.scalar(
        select(Shop.rate_limit_preset).where(Shop.project_id == project_id, Shop.platform == "shopify").order_by(Shop.id).limit(1)
    )


def materialize_rule(scope: TenantScope, rule_id: int, *, actor: str) -> dict:
    """Create a QUEUED run of the rule and compute its targets (the preview; nothing is written
    to the shop). Shared by the API and the console."""
    rule = scope.rule(rule_id)
    project = scope.session.get(Project, rule.project_id)
    run = create_run(scope.session, project_slug=project.slug, rule_name=rule.name, actor=actor)
    stats = compute_targets(scope.session, run.id, preset=shop_preset(scope, project.id))
    return {
        "runId": run.id,
        "state": run.state,
        "targetCount": stats.total,
        "toWrite": stats.to_write,
        "byProposal": stats.by_status,
        "estimatedDuration": stats.estimated_apply_seconds,
    }


def build_router(require_read, require_write) -> APIRouter:
    router = APIRouter(tags=["rules"])

    @router.post("/api/v1/projects/{slug}/rules", status_code=201, summary="Validate and save a rule (replaces the project's rule of the same name)")
    def create_rule(slug: str, request: Request, definition: dict[str, Any] = Body(..., description="the rule document (docs/rules.md)"), principal=Depends(require_write)):
        with open_scope(request, principal) as scope:
            project = scope.project(slug)
            rule = save_rule(scope.session, project_slug=project.slug, definition=definition, actor=principal.actor)
            return rule_json(rule, project.slug)

    @router.get("/api/v1/projects/{slug}/rules", summary="A project's rules")
    def list_rules(slug: str, request: Request, principal=Depends(require_read)):
        with open_scope(request, principal) as scope:
            project = scope.project(slug)
            rules = scope.session.scalars(scope.select(PricingRule).where(PricingRule.project_id == project.id).order_by(PricingRule.name)).all()
            return {"items": [rule_json(r, project.slug) for r in rules]}

    @router.get("/api/v1/rules/{rule_id}", summary="One rule")
    def get_rule(rule_id: int, request: Request, principal=Depends(require_read)):
        with open_scope(request, principal) as scope:
            rule = scope.rule(rule_id)
            return rule_json(rule, scope.session.get(Project, rule.project_id).slug)

    @router.post("/api/v1/rules/{rule_id}/materialize", status_code=201, summary="Create a run of the rule and compute its targets (preview, no shop writes)")
    def materialize(rule_id: int, request: Request, principal=Depends(require_write)):
        with open_scope(request, principal) as scope:
            return materialize_rule(scope, rule_id, actor=principal.actor)

    return router

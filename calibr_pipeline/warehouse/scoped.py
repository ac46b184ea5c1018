"""Tenant-scoped reads: the one query layer every API read goes through.

``TenantScope`` adds the tenant predicate to every query it builds, so a handler cannot
forget it. Look-ups of another tenant's row raise the same :class:`NotFoundError` as a row
that does not exist: the API never reveals that another tenant's project, run, target or
listing exists. On PostgreSQL, row-level security (migration 0006) is a second wall under
this one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from calibr_pipeline.warehouse.models import (
    Competitor,
    CompetitorListing,
    CompetitorPriceObservation,
    PricingRule,
    Project,
    RuleRun,
    RuleTarget,
)
from calibr_pipeline.warehouse.tenancy import NotFoundError

# Models with their own tenant_id column; the others are scoped through their project.
_PROJECT_SCOPED = (Competitor, CompetitorListing, PricingRule)


@dataclass(frozen=True)
class TenantScope:
    session: Session
    tenant_id: int
    _project_slugs: dict = field(default_factory=dict, compare=False, repr=False)
    _rule_names: dict = field(default_factory=dict, compare=False, repr=False)

    def project_slug(self, project_id: int) -> str:
        """The slug of one of this tenant's projects (memoized for the transaction)."""
        if project_id not in self._project_slugs:
            self._project_slugs[project_id] = self.session.scalar(self.select(Project, Project.slug).where(Project.id == project_id))
        return self._project_slugs[project_id]

    def rule_name(self, rule_id: int) -> str | None:
        """The name of one of this tenant's rules (memoized for the transaction)."""
        if rule_id not in self._rule_names:
            self._rule_names[rule_id] = self.session.scalar(self.select(PricingRule, PricingRule.name).where(PricingRule.id == rule_id))
        return self._rule_names[rule_id]

    def select(self, model, *columns) -> Select:
        """``SELECT model`` (or the given columns) already restricted to this tenant."""
        query = select(*(columns or (model,)))
        if model in _PROJECT_SCOPED:
            return query.join(Project, Project.id == model.project_id).where(Project.tenant_id == self.tenant_id)
        return query.where(model.tenant_id == self.tenant_id)

    def project(self, slug: str) -> Project:
        project = self.session.scalar(self.select(Project).where(Project.slug == slug))
        if project is None:
            raise NotFoundError(f"project {slug!r} not found")
        return project

    def run(self, run_id: str) -> RuleRun:
        run = self.session.scalar(self.select(RuleRun).where(RuleRun.id == run_id))
        if run is None:
            raise NotFoundError(f"run {run_id!r} not found")
        return run

    def target(self, target_id: int) -> RuleTarget:
        target = self.session.scalar(self.select(RuleTarget).where(RuleTarget.id == target_id))
        if target is None:
            raise NotFoundError(f"target {target_id} not found")
        return target

    def rule(self, rule_id: int) -> PricingRule:
        rule = self.session.scalar(self.select(PricingRule).where(PricingRule.id == rule_id))
        if rule is None:
            raise NotFoundError(f"rule {rule_id} not found")
        return rule

    def listing(self, listing_id: int) -> CompetitorListing:
        listing = self.session.scalar(self.select(CompetitorListing).where(CompetitorListing.id == listing_id))
        if listing is None:
            raise NotFoundError(f"competitor listing {listing_id} not found")
        return listing

    def observations(self, listing_id: int) -> Select:
        self.listing(listing_id)
        return self.select(CompetitorPriceObservation).where(CompetitorPriceObservation.listing_id == listing_id)

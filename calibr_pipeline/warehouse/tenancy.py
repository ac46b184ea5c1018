"""Tenants, projects and shops: look-ups that fail with messages a person can act on."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from calibr_pipeline.domain.errors import CalibrError
from calibr_pipeline.warehouse.models import Project, Shop, Tenant, Variant

_EMPTY_HINT = (
    "; this warehouse is empty: run `make demo`, or point CALIBR_HOME (the demo's is .calibr/demo) "
    "or CALIBR_WAREHOUSE_URL at your warehouse"
)
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class NotFoundError(CalibrError):
    pass


class InvalidInputError(CalibrError):
    pass


def validate_slug(slug: str, what: str) -> str:
    if not _SLUG.match(slug or ""):
        raise InvalidInputError(
            f"{what} slug {slug!r} is invalid: use 1-63 lowercase letters, digits and '-', starting with a letter or digit"
        )
    return slug


def get_or_create_tenant(session: Session, slug: str, name: str | None = None) -> Tenant:
    validate_slug(slug, "tenant")
    tenant = session.scalar(select(Tenant).where(Tenant.slug == slug))
    if tenant is None:
        tenant = Tenant(slug=slug, name=name or slug)
        session.add(tenant)
        session.flush()
    return tenant


def get_or_create_project(session: Session, tenant: Tenant, slug: str, *, name: str | None = None, currency: str) -> Project:
    validate_slug(slug, "project")
    project = session.scalar(select(Project).where(Project.slug == slug))
    if project is None:
        project = Project(tenant_id=tenant.id, slug=slug, name=name or slug, currency=currency)
        session.add(project)
        session.flush()
    elif project.tenant_id != tenant.id:
        raise InvalidInputError(f"project {slug!r} already belongs to another tenant")
    return project


def tenant_by_slug(session: Session, slug: str) -> Tenant:
    tenant = session.scalar(select(Tenant).where(Tenant.slug == slug))
    if tenant is None:
        known = ", ".join(session.scalars(select(Tenant.slug).order_by(Tenant.slug)).all()) or f"none yet{_EMPTY_HINT}"
        raise NotFoundError(f"unknown tenant {slug!r} (known tenants: {known})")
    return tenant


def project_by_slug(session: Session, slug: str) -> Project:
    project = session.scalar(select(Project).where(Project.slug == slug))
    if project is None:
        known = ", ".join(session.scalars(select(Project.slug).order_by(Project.slug)).all()) or f"none yet{_EMPTY_HINT}"
        raise NotFoundError(f"unknown project {slug!r} (known projects: {known})")
    return project


def variant_by_sku(session: Session, project: Project, sku: str) -> Variant:
    variant = session.scalar(select(Variant).where(Variant.project_id == project.id, Variant.sku == sku))
    if variant is None:
        raise NotFoundError(
            f"unknown SKU {sku!r} in project {project.slug!r}; import the catalog first "
            f"(materialize shop_catalog) or check the spelling"
        )
    return variant


def upsert_shop(session: Session, project: Project, name: str, **fields) -> Shop:
    shop = session.scalar(select(Shop).where(Shop.project_id == project.id, Shop.name == name))
    if shop is None and fields.get("platform", "shopify") == "shopify":
        # A rule run writes every variant of its project through the project's shop; with two
        # Shopify shops a variant could be sent to the wrong one. One store, one project.
        other = session.scalar(select(Shop.name).where(Shop.project_id == project.id, Shop.platform == "shopify"))
        if other is not None:
            raise InvalidInputError(
                f"project {project.slug!r} already has the Shopify shop {other!r}; a project has one Shopify shop "
                f"(add the other store as its own project with `calibr projects add`)"
            )
    if shop is None:
        shop = Shop(project_id=project.id, name=name, **fields)
        session.add(shop)
    else:
        for key, value in fields.items():
            setattr(shop, key, value)
    session.flush()
    return shop


def shops_for_tenant(session: Session, tenant: Tenant) -> list[Shop]:
    return list(
        session.scalars(
            select(Shop).join(Project, Shop.project_id == Project.id).where(Project.tenant_id == tenant.id).order_by(Shop.id)
        ).all()
    )

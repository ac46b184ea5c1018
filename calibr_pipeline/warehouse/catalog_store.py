"""Catalog upsert: what the shop says now becomes our products and variants."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from calibr_pipeline.domain.catalog import CatalogVariant
from calibr_pipeline.domain.errors import CalibrError
from calibr_pipeline.warehouse.models import Product, Shop, Variant, VariantCostHistory
from calibr_pipeline.warehouse.types import utcnow


class CatalogConflictError(CalibrError):
    pass


@dataclass(frozen=True)
class CatalogUpsertStats:
    products_created: int
    products_updated: int
    variants_created: int
    variants_updated: int
    variants_unchanged: int

    def as_metadata(self) -> dict[str, int]:
        return dict(self.__dict__)


def effective_sku(item: CatalogVariant) -> str:
    """Shopify variants may have no SKU; the variant id then stands in so every row is addressable."""
    return item.sku.strip() if item.sku and item.sku.strip() else f"variant-{item.variant_external_id.rsplit('/', 1)[-1]}"


def upsert_catalog(session: Session, shop: Shop, items: list[CatalogVariant]) -> CatalogUpsertStats:
    now = utcnow()
    cost_changes: list[tuple[Variant, bool, object]] = []  # (variant, is new, cost before)
    products = {p.external_id: p for p in session.scalars(select(Product).where(Product.shop_id == shop.id))}
    variants = {v.external_id: v for v in session.scalars(select(Variant).where(Variant.shop_id == shop.id))}
    sku_owner = {
        sku: ext
        for sku, ext in session.execute(
            select(Variant.sku, Variant.external_id).where(Variant.project_id == shop.project_id)
        ).all()
    }
    counts = dict(products_created=0, products_updated=0, variants_created=0, variants_updated=0, variants_unchanged=0)
    touched_products: set[str] = set()

    for item in items:
        if item.currency != shop.currency:
            raise CatalogConflictError(
                f"variant {item.variant_external_id} is priced in {item.currency} but shop {shop.name!r} is in {shop.currency}"
            )
        product = products.get(item.product_external_id)
        product_fields = dict(
            title=item.product_title, product_type=item.product_type, vendor=item.vendor, tags=list(item.tags)
        )
        if product is None:
            product = Product(shop_id=shop.id, project_id=shop.project_id, external_id=item.product_external_id, updated_at=now, **product_fields)
            session.add(product)
            session.flush()
            products[item.product_external_id] = product
            counts["products_created"] += 1
        elif item.product_external_id not in touched_products and _changed(product, product_fields):
            for key, value in product_fields.items():
                setattr(product, key, value)
            product.updated_at = now
            counts["products_updated"] += 1
        touched_products.add(item.product_external_id)

        sku = effective_sku(item)
        owner = sku_owner.get(sku)
        if owner is not None and owner != item.variant_external_id:
            raise CatalogConflictError(
                f"SKU {sku!r} is used by two variants ({owner} and {item.variant_external_id}); SKUs must be unique per project"
            )
        sku_owner[sku] = item.variant_external_id
        variant_fields = dict(
            product_id=product.id,
            sku=sku,
            title=item.variant_title,
            price=item.price,
            compare_at_price=item.compare_at_price,
            cost=item.cost,
            currency=item.currency,
        )
        variant = variants.get(item.variant_external_id)
        if variant is None:
            variant = Variant(shop_id=shop.id, project_id=shop.project_id, external_id=item.variant_external_id, updated_at=now, **variant_fields)
            session.add(variant)
            variants[item.variant_external_id] = variant
            counts["variants_created"] += 1
            cost_changes.append((variant, True, None))
        elif _changed(variant, variant_fields):
            if variant.cost != item.cost:
                cost_changes.append((variant, False, variant.cost))
            for key, value in variant_fields.items():
                setattr(variant, key, value)
            variant.updated_at = now
            counts["variants_updated"] += 1
        else:
            counts["variants_unchanged"] += 1
    session.flush()
    for changed, created, before in cost_changes:
        record_cost(session, changed, now.date(), previous_cost=before, known_variant=not created)
    session.flush()
    return CatalogUpsertStats(**counts)


def record_cost(session: Session, variant: Variant, day: date, *, previous_cost: Decimal | None = None, known_variant: bool = True) -> None:
    """Make ``variant.cost`` the cost valid from ``day`` on in ``variant_cost_history``.

    The open row (valid_to NULL) is closed at ``day``; a row that already starts on ``day``
    (a second change the same day) is overwritten. Days before ``day`` keep their cost: a
    known variant without history (written around the sync) first gets ``previous_cost``
    as the cost before ``day``.
    """
    rows = [] if not known_variant else list(
        session.scalars(select(VariantCostHistory).where(VariantCostHistory.variant_id == variant.id, VariantCostHistory.valid_to.is_(None)))
    )
    if known_variant and not rows and session.scalar(select(VariantCostHistory.valid_from).where(VariantCostHistory.variant_id == variant.id).limit(1)) is None:
        session.add(VariantCostHistory(variant_id=variant.id, project_id=variant.project_id, valid_from=day - timedelta(days=1), valid_to=day,
                                       cost=previous_cost, currency=variant.currency, recorded_at=utcnow()))
    for row in rows:
        if row.valid_from >= day:
            row.cost, row.currency, row.recorded_at = variant.cost, variant.currency, utcnow()
            return
        row.valid_to = day
    session.add(VariantCostHistory(variant_id=variant.id, project_id=variant.project_id, valid_from=day, valid_to=None,
                                   cost=variant.cost, currency=variant.currency, recorded_at=utcnow()))


def _changed(row: object, fields: dict) -> bool:
    return any(getattr(row, key) != value for key, value in fields.items())

"""The merchant's own catalog, one row per sellable variant.

Rows are what the Shopify Admin connector reads and what the sandbox generates, so
tests can compare "what the shop holds" with "what we read" by plain equality.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from calibr_pipeline.domain.money import to_decimal


def _check_currency(currency: str) -> None:
    if not (isinstance(currency, str) and len(currency) == 3 and currency.isalpha() and currency.isupper()):
        raise ValueError(f"currency must be an ISO 4217 code, got {currency!r}")


@dataclass(frozen=True)
class CatalogVariant:
    product_external_id: str
    product_title: str
    product_type: str
    vendor: str
    tags: tuple[str, ...]
    variant_external_id: str
    # Shopify allows variants without a SKU; those cannot be matched to competitor
    # listings, so they are kept as ``None`` rather than an empty string that looks valid.
    sku: str | None
    variant_title: str
    price: Decimal
    compare_at_price: Decimal | None
    cost: Decimal | None
    currency: str

    def __post_init__(self) -> None:
        # Accepting str/int here keeps callers honest about floats (to_decimal refuses
        # them) while letting JSON decimal strings flow in without ceremony.
        object.__setattr__(self, "price", to_decimal(self.price))
        if self.compare_at_price is not None:
            object.__setattr__(self, "compare_at_price", to_decimal(self.compare_at_price))
        if self.cost is not None:
            object.__setattr__(self, "cost", to_decimal(self.cost))
        if not isinstance(self.tags, tuple):
            object.__setattr__(self, "tags", tuple(self.tags))
        if self.sku == "":
            object.__setattr__(self, "sku", None)
        _check_currency(self.currency)
        if self.price < 0:
            raise ValueError(f"price must not be negative: {self.price}")

    @property
    def is_on_sale(self) -> bool:
        return self.compare_at_price is not None and self.compare_at_price > self.price

    @property
    def margin(self) -> Decimal | None:
        """Price minus unit cost, in ``currency``; ``None`` when the cost is unknown."""
        if self.cost is None:
            return None
        return self.price - self.cost

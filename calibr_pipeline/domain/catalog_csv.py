"""Catalog import from CSV (pure).

Columns (header names, case-insensitive): ``product_id, product_title, variant_id, sku,
price, currency`` are required; ``product_type, vendor, tags, variant_title,
compare_at_price, cost`` are optional. ``tags`` is a comma- or semicolon-separated list.
Every bad row is reported with its line number in one error, and nothing is imported
from a file with errors: a half-imported catalog is worse than none.
"""

from __future__ import annotations

import csv
import io
import re
from decimal import Decimal

from calibr_pipeline.domain.catalog import CatalogVariant
from calibr_pipeline.domain.errors import CalibrError
from calibr_pipeline.domain.money import to_decimal

REQUIRED_COLUMNS = ("product_id", "product_title", "variant_id", "sku", "price", "currency")
OPTIONAL_COLUMNS = ("product_type", "vendor", "tags", "variant_title", "compare_at_price", "cost")
_CURRENCY = re.compile(r"^[A-Z]{3}$")


class CatalogCsvError(CalibrError):
    def __init__(self, problems: list[str]):
        self.problems = problems
        shown = "\n".join(f"  - {p}" for p in problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        super().__init__(f"catalog CSV has {len(problems)} problem(s); nothing was imported:\n{shown}{more}")


def parse_catalog_csv(text: str) -> list[CatalogVariant]:
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    if reader.fieldnames is None:
        raise CatalogCsvError(["the file is empty (no header row)"])
    header = {name.strip().lower(): name for name in reader.fieldnames if name}
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise CatalogCsvError([f"missing required column(s): {', '.join(missing)}"])

    problems: list[str] = []
    variants: list[CatalogVariant] = []
    seen_skus: dict[str, int] = {}
    for line_no, raw in enumerate(reader, start=2):
        row = {key: (raw.get(original) or "").strip() for key, original in header.items()}
        row_problems: list[str] = []
        for column in REQUIRED_COLUMNS:
            if not row.get(column):
                row_problems.append(f"line {line_no}: {column} is empty")
        price = _money(row.get("price"), "price", line_no, row_problems, required=True)
        compare_at = _money(row.get("compare_at_price"), "compare_at_price", line_no, row_problems)
        cost = _money(row.get("cost"), "cost", line_no, row_problems)
        currency = (row.get("currency") or "").upper()
        if currency and not _CURRENCY.match(currency):
            row_problems.append(f"line {line_no}: currency {row.get('currency')!r} is not an ISO 4217 code")
        sku = row.get("sku") or ""
        if sku in seen_skus:
            row_problems.append(f"line {line_no}: sku {sku!r} already appears on line {seen_skus[sku]}")
        elif sku:
            seen_skus[sku] = line_no
        if row_problems:
            problems.extend(row_problems)
            continue
        tags = tuple(t.strip() for t in re.split(r"[;,]", row.get("tags") or "") if t.strip())
        variants.append(
            CatalogVariant(
                product_external_id=row["product_id"],
                product_title=row["product_title"],
                product_type=row.get("product_type") or "",
                vendor=row.get("vendor") or "",
                tags=tags,
                variant_external_id=row["variant_id"],
                sku=sku,
                variant_title=row.get("variant_title") or "",
                price=price,
                compare_at_price=compare_at,
                cost=cost,
                currency=currency,
            )
        )
    if problems:
        raise CatalogCsvError(problems)
    if not variants:
        raise CatalogCsvError(["the file has a header but no rows"])
    return variants


def _money(value: str | None, column: str, line_no: int, problems: list[str], *, required: bool = False) -> Decimal | None:
    if not value:
        return None
    try:
        amount = to_decimal(value)
    except ValueError:
        problems.append(f"line {line_no}: {column} {value!r} is not a decimal number (use 19.99, no symbols)")
        return None
    if amount < 0 or (required and amount == 0):
        problems.append(f"line {line_no}: {column} must be {'positive' if required else 'zero or more'}, got {value}")
        return None
    return amount

"""Column types that keep money exact and timestamps in UTC on every backend."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from sqlalchemy import DateTime, Numeric, String
from sqlalchemy.types import TypeDecorator

from calibr_pipeline.domain.money import to_decimal


SCALE = 6
_QUANTUM = Decimal(1).scaleb(-SCALE)


class ExactDecimal(TypeDecorator):
    """NUMERIC(20, 6) on Postgres; a canonical decimal string on SQLite.

    SQLite has no decimal type: a NUMERIC column there silently stores a double. A TEXT
    column keeps the exact value; analyst views ``CAST(... AS NUMERIC)`` for arithmetic.
    """

    impl = Numeric(20, 6)
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(40))
        return dialect.type_descriptor(Numeric(20, 6, asdecimal=True))

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        amount = to_decimal(value)
        if amount.as_tuple().exponent < -SCALE and amount != amount.quantize(_QUANTUM):
            # Postgres would round silently and SQLite would not: refuse on both instead.
            raise ValueError(f"{amount} has more than {SCALE} decimal places")
        if dialect.name == "sqlite":
            # normalize() would turn 100 into 1E+2; format keeps a plain positional string.
            return format(amount, "f")
        return amount

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return _strip_zeros(value if isinstance(value, Decimal) else Decimal(str(value)))


def _strip_zeros(value: Decimal) -> Decimal:
    # Postgres returns NUMERIC(20,6) as 19.990000; keep the meaningful digits only,
    # without switching to exponent notation for integers.
    if value == value.to_integral():
        return value.quantize(Decimal(1))
    return value.normalize()


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes in and out, including on SQLite (which stores naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: use an aware UTC datetime")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)

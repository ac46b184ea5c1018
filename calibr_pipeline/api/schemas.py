"""Request bodies (pydantic) and small JSON helpers shared by the routers."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
import json
from typing import Any, Literal

from fastapi.responses import JSONResponse

from pydantic import BaseModel, ConfigDict, Field


class StrictBody(BaseModel):
    # Unknown fields are a mistake worth reporting, not something to ignore silently.
    model_config = ConfigDict(extra="forbid", strict=True)


class CompetitorCreate(StrictBody):
    sku: str = Field(min_length=1, max_length=200)
    url: str = Field(min_length=1, max_length=4000)
    name: str | None = Field(default=None, min_length=1, max_length=200)
    currency: str | None = Field(default=None, min_length=3, max_length=3)
    kind: Literal["auto", "shopify", "html"] = "auto"
    match: Literal["exact", "similar", "manual"] = "exact"
    variant: str | None = Field(default=None, min_length=1, max_length=200)


class RetryFailedBody(StrictBody):
    targetIds: list[int] | None = Field(default=None, max_length=10000)


class ReconcileBody(StrictBody):
    scheduleRetry: bool = False


def money(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def page(items: list[Any], next_cursor: str | None) -> dict:
    return {"items": items, "nextCursor": next_cursor}


class FastJSON(JSONResponse):
    """JSON straight from ``json.dumps``: the handlers build plain dicts of str/int/float/bool/
    None (money as strings, times as ISO strings), so FastAPI's generic encoder is not needed
    (it was a third of the time of a 100-item page)."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8")

"""Opaque cursors (the audit service's encoding) and page-size limits for every list endpoint."""

from __future__ import annotations

from calibr_pipeline.api.errors import ApiError
from calibr_pipeline.domain.errors import CalibrError
from calibr_pipeline.services.audit import decode_cursor, encode_cursor

MAX_LIMIT = 500
DEFAULT_LIMIT = 100

__all__ = ["after_id", "encode_cursor", "check_limit", "MAX_LIMIT", "DEFAULT_LIMIT"]


def after_id(cursor: str | None) -> int | None:
    if not cursor:
        return None
    try:
        return decode_cursor(cursor)
    except CalibrError as exc:
        raise ApiError(400, "invalid_cursor", str(exc)) from None


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError(422, "invalid_input", f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    return limit

"""Error classes shared by every layer.

A competitor fetch never disappears: its outcome is stored as an observation whose
``error_class`` is one of :class:`ErrorClass` (or ``None`` on success). The values are
stable strings because analysts filter on them in SQL and alert rules match them.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorClass(StrEnum):
    # transport
    DNS = "dns"
    CONNECTION = "connection"
    TIMEOUT = "timeout"
    TLS = "tls"
    HTTP_4XX = "http_4xx"
    HTTP_5XX = "http_5xx"
    RATE_LIMITED = "rate_limited"
    # input
    INVALID_URL = "invalid_url"
    BLOCKED_URL = "blocked_url"
    # content
    MALFORMED_BODY = "malformed_body"
    PARSE_NO_PRICE = "parse_no_price"
    PARSE_AMBIGUOUS = "parse_ambiguous"
    PARSE_ZERO_PRICE = "parse_zero_price"
    CURRENCY_UNKNOWN = "currency_unknown"
    VARIANT_NOT_FOUND = "variant_not_found"

    @property
    def is_transient(self) -> bool:
        """Whether retrying the same request may succeed."""
        return self in _TRANSIENT


_TRANSIENT = frozenset(
    {ErrorClass.DNS, ErrorClass.CONNECTION, ErrorClass.TIMEOUT, ErrorClass.HTTP_5XX, ErrorClass.RATE_LIMITED}
)


class CalibrError(Exception):
    """Base of every error that is shown to a user as a message, not a traceback."""


class ExtractionError(CalibrError):
    """A page or payload did not yield one usable offer. ``error_class`` says why."""

    def __init__(
        self, error_class: ErrorClass, message: str, candidates: tuple[dict, ...] = (), availability: str | None = None
    ):
        super().__init__(message)
        self.error_class = error_class
        self.message = message
        # PARSE_AMBIGUOUS: the competing prices (amount, currency, source, evidence) so a user
        # or a variant hint can settle it; JSON-safe dicts.
        self.candidates = tuple(candidates)
        # PARSE_NO_PRICE / CURRENCY_UNKNOWN: the stock state the page still states ("InStock" /
        # "OutOfStock"), e.g. a sold-out page that shows no price; None when it says nothing.
        self.availability = availability

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"ExtractionError({self.error_class.value!r}, {self.message!r})"


class PriceParseError(ExtractionError):
    """A price string could not be turned into an exact amount and an ISO currency."""

from __future__ import annotations

from calibr_pipeline.domain.errors import CalibrError, ErrorClass


class ShopifyAdminError(CalibrError):
    """A Shopify Admin API call that did not produce data.

    ``error_class`` is the transport-level class shared with the rest of the pipeline
    (GraphQL-level refusals such as invalid fields or MAX_COST_EXCEEDED are client
    mistakes, hence ``http_4xx``); ``code`` is Shopify's own ``extensions.code`` when
    there was one, e.g. ``THROTTLED`` or ``MAX_COST_EXCEEDED``.
    """

    def __init__(
        self,
        message: str,
        *,
        error_class: ErrorClass,
        code: str | None = None,
        status: int | None = None,
        messages: tuple[str, ...] = (),
        retry_after: float | None = None,
        attempts: int = 1,
        maybe_written: bool = False,
    ):
        super().__init__(message)
        self.message = message
        self.error_class = error_class
        self.code = code
        self.status = status
        self.messages = messages
        # Seconds the server asked us to wait (``Retry-After``), when it did.
        self.retry_after = retry_after
        # Requests really sent for this call (each retry is one more).
        self.attempts = attempts
        # The request reached the shop and its outcome is unknown (timeout after sending,
        # connection reset, 5xx, a cut-off body, data together with errors): a mutation may
        # have been applied. Callers resolve it by reading, never by guessing.
        self.maybe_written = maybe_written

    def __repr__(self) -> str:
        return f"ShopifyAdminError({self.error_class.value!r}, code={self.code!r}, maybe_written={self.maybe_written}, {self.message!r})"

"""Every error the API answers is JSON ``{"error": {"code", "message", "details"}}``; never a traceback.

Service errors map to statuses here, in one place: unknown or other-tenant rows 404, bad
input 422 (malformed JSON 400), run-state conflicts 409. Anything unexpected is a 500 with
a request id; its details go to the server log only (without SQL parameters, which may hold
secrets).
"""

from __future__ import annotations

import logging
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from calibr_pipeline.domain.errors import CalibrError
from calibr_pipeline.domain.rules import RuleValidationError
from calibr_pipeline.domain.state_machine import InvalidTransition
from calibr_pipeline.domain.url_policy import UrlPolicyError
from calibr_pipeline.warehouse.tenancy import InvalidInputError, NotFoundError

log = logging.getLogger("calibr.api")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, details: dict | list | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.details, self.headers = status, code, message, details or {}, headers


class ConflictError(ApiError):
    def __init__(self, message: str, details: dict | None = None):
        super().__init__(409, "conflict", message, details)


def error_body(code: str, message: str, details=None) -> dict:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def _one_line(text: str, limit: int = 1000) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


_STATUS_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
                 409: "conflict", 413: "payload_too_large", 415: "unsupported_media_type", 422: "invalid_input", 429: "rate_limited"}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return JSONResponse(error_body(exc.code, exc.message, exc.details), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        problems = []
        malformed = False
        for err in exc.errors():
            if err.get("type") == "json_invalid":
                malformed = True
            loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
            problems.append({"field": loc, "problem": _one_line(err.get("msg", "invalid"), 300)})
        if malformed:
            return JSONResponse(error_body("malformed_json", "the request body is not valid JSON", {"problems": problems}), status_code=400)
        return JSONResponse(error_body("invalid_input", "the request has invalid fields", {"problems": problems}), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        code = _STATUS_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        if exc.status_code == 404:
            message = "no such endpoint" if message == "Not Found" else message
        return JSONResponse(error_body(code, _one_line(message)), status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(CalibrError)
    async def _calibr(request: Request, exc: CalibrError):
        return JSONResponse(calibr_error_response(exc), status_code=calibr_error_status(exc))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        request_id = uuid.uuid4().hex[:12]
        log.error("request %s %s failed (request id %s): %s", request.method, request.url.path, request_id, describe_unexpected(exc))
        return JSONResponse(error_body("internal", "internal server error", {"request_id": request_id}), status_code=500)


def _is_conflict(exc: CalibrError) -> bool:
    # A service error may declare its status (``http_status = 409``); errors named
    # ``…Conflict`` / ``…ConflictError`` (e.g. a live apply lease) are state conflicts too.
    name = type(exc).__name__
    return getattr(exc, "http_status", None) == 409 or name.endswith(("Conflict", "ConflictError"))


def calibr_error_status(exc: CalibrError) -> int:
    declared = getattr(exc, "http_status", None)
    if isinstance(declared, int) and 400 <= declared < 600:
        return declared
    if _is_conflict(exc):
        return 409
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, InvalidTransition):
        return 409
    if isinstance(exc, (RuleValidationError, UrlPolicyError, InvalidInputError)):
        return 422
    return 422


def calibr_error_response(exc: CalibrError) -> dict:
    if _is_conflict(exc):
        return error_body("conflict", _one_line(exc))
    if isinstance(exc, NotFoundError):
        return error_body("not_found", _one_line(exc))
    if isinstance(exc, InvalidTransition):
        return error_body("conflict", _one_line(exc), {"from": exc.from_state, "to": exc.to_state})
    if isinstance(exc, RuleValidationError):
        return error_body("invalid_rule", f"the rule has {len(exc.problems)} problem(s)", {"problems": exc.problems})
    if isinstance(exc, UrlPolicyError):
        error_class = getattr(exc, "error_class", None)
        return error_body(str(getattr(error_class, "value", error_class) or "invalid_url"), _one_line(getattr(exc, "message", None) or exc))
    return error_body("invalid_input", _one_line(getattr(exc, "message", None) or exc))


def describe_unexpected(exc: BaseException) -> str:
    """One line, without SQL parameters (a shop insert would print its access token)."""
    from sqlalchemy.exc import StatementError

    if isinstance(exc, StatementError) and exc.orig is not None:
        exc = exc.orig
    return _one_line(f"{type(exc).__name__}: {exc}", 500)

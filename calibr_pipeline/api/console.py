"""The runs console at ``/console``: server-rendered (Jinja2) with a little plain JavaScript.

Sign-in takes an API token and keeps it in an HttpOnly, SameSite=Strict cookie scoped to
``/console``. Every POST carries a CSRF token (an HMAC of the session's token hash under a
per-process secret) and is refused without it. Pages read and act through the same
functions as the JSON API (routers.runs), scoped to the token's tenant.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from calibr_pipeline.api.auth import authenticate_request, open_scope
from calibr_pipeline.api.errors import ApiError, calibr_error_response
from calibr_pipeline.api.routers import runs as runs_api
from calibr_pipeline.domain.errors import CalibrError
from calibr_pipeline.domain.state_machine import RunState
from calibr_pipeline.services.api_tokens import Principal, hash_token
from calibr_pipeline.warehouse.models import RuleRun

SESSION_COOKIE = "calibr_session"
LOGIN_CSRF_COOKIE = "calibr_login_csrf"
TEMPLATES = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))
STATIC = Path(__file__).with_name("static")
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def _csrf_for(request: Request, token: str) -> str:
    secret = request.app.state.console_secret
    return hmac.new(secret, hash_token(token).encode(), hashlib.sha256).hexdigest()


def _page(request: Request, template: str, status: int = 200, **context) -> HTMLResponse:
    response = TEMPLATES.TemplateResponse(request, template, context, status_code=status)
    response.headers.update(_SECURITY_HEADERS)
    return response


def _signed_in(request: Request) -> tuple[Principal, str] | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    try:
        return authenticate_request(request, token), token
    except ApiError as exc:
        if exc.status == 429:
            raise
        return None


def _to_login(message: str | None = None) -> RedirectResponse:
    target = "/console/login" + (f"?message={quote(message)}" if message else "")
    response = RedirectResponse(target, status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/console")
    return response


def _check_csrf(request: Request, token: str, supplied: str | None) -> None:
    if not supplied or not hmac.compare_digest(supplied, _csrf_for(request, token)):
        raise ApiError(403, "csrf", "missing or invalid CSRF token: reload the page and try again")


def build_router(require_read, require_write) -> APIRouter:
    router = APIRouter(prefix="/console", include_in_schema=False)

    @router.get("/static/console.js")
    def script():
        return Response((STATIC / "console.js").read_text(), media_type="text/javascript", headers={"Cache-Control": "no-cache"})

    @router.get("/static/console.css")
    def style():
        return Response((STATIC / "console.css").read_text(), media_type="text/css", headers={"Cache-Control": "no-cache"})

    @router.get("/login", response_class=HTMLResponse)
    def login_page(request: Request, message: str | None = None):
        nonce = secrets.token_urlsafe(24)
        response = _page(request, "login.html", message=message, csrf=nonce)
        response.set_cookie(LOGIN_CSRF_COOKIE, nonce, httponly=True, samesite="strict", path="/console", secure=request.url.scheme == "https")
        return response

    @router.post("/login")
    def login(request: Request, token: str = Form(""), csrf: str = Form("")):
        expected = request.cookies.get(LOGIN_CSRF_COOKIE)
        if not expected or not hmac.compare_digest(csrf, expected):
            return _to_login("Your sign-in form expired; try again.")
        try:
            principal = authenticate_request(request, token.strip())
        except ApiError as exc:
            return _to_login(f"Sign-in failed: {exc.message}")
        response = RedirectResponse("/console", status_code=303)
        response.set_cookie(SESSION_COOKIE, token.strip(), httponly=True, samesite="strict", path="/console",
                            secure=request.url.scheme == "https", max_age=12 * 3600)
        response.delete_cookie(LOGIN_CSRF_COOKIE, path="/console")
        return response

    @router.post("/logout")
    def logout(request: Request, csrf: str = Form("")):
        session = _signed_in(request)
        if session is not None:
            _check_csrf(request, session[1], csrf)
        return _to_login("Signed out.")

    @router.get("", response_class=HTMLResponse)
    def runs_page(request: Request, message: str | None = None, state: str | None = None):
        session = _signed_in(request)
        if session is None:
            return _to_login()
        principal, token = session
        with open_scope(request, principal) as scope:
            query = scope.select(RuleRun).order_by(RuleRun.queued_at.desc(), RuleRun.id.desc()).limit(100)
            if state in {s.value for s in RunState}:
                query = query.where(RuleRun.state == state)
            runs = [runs_api.run_json(scope, run, detail=True) for run in scope.session.scalars(query)]
        return _page(request, "runs.html", runs=runs, principal=principal, csrf=_csrf_for(request, token), message=message,
                     retryable=sorted(runs_api.RETRYABLE_RUN_STATES), states=[s.value for s in RunState], state=state)

    @router.get("/runs/{run_id}", response_class=HTMLResponse)
    def run_page(request: Request, run_id: str, message: str | None = None, cursor: str | None = None):
        session = _signed_in(request)
        if session is None:
            return _to_login()
        principal, token = session
        try:
            with open_scope(request, principal) as scope:
                run = runs_api.run_json(scope, scope.run(run_id), detail=True)
                targets = runs_api.list_targets(scope, run_id, state=None, limit=200, cursor=cursor)
        except CalibrError as exc:
            return _page(request, "error.html", status=404, principal=principal, csrf=_csrf_for(request, token), message=calibr_error_response(exc)["error"]["message"])
        return _page(request, "run.html", run=run, targets=targets, principal=principal, csrf=_csrf_for(request, token), message=message,
                     retryable=sorted(runs_api.RETRYABLE_RUN_STATES))

    @router.get("/targets/{target_id}", response_class=HTMLResponse)
    def explain_page(request: Request, target_id: int):
        session = _signed_in(request)
        if session is None:
            return _to_login()
        principal, token = session
        try:
            with open_scope(request, principal) as scope:
                data = runs_api.explain(scope, target_id)
        except CalibrError as exc:
            return _page(request, "error.html", status=404, principal=principal, csrf=_csrf_for(request, token), message=calibr_error_response(exc)["error"]["message"])
        return _page(request, "explain.html", data=data, explain=data["explain"] or {}, principal=principal, csrf=_csrf_for(request, token))

    @router.get("/runs/{run_id}/progress")
    def progress(request: Request, run_id: str):
        """What the progress bars poll (cookie-authenticated JSON)."""
        session = _signed_in(request)
        if session is None:
            return JSONResponse({"error": {"code": "unauthorized", "message": "signed out", "details": {}}}, status_code=401)
        with open_scope(request, session[0]) as scope:
            run = runs_api.run_json(scope, scope.run(run_id), detail=True)
        return {"runId": run["runId"], "state": run["state"], "progress": run["progress"], "byState": run["targets"]["byState"],
                # what the page polls on: a run with a queued retry is not settled yet
                "pollState": "QUEUED" if run["retryQueued"] else run["state"]}

    @router.post("/runs/{run_id}/retry-failed")
    def retry(request: Request, run_id: str, csrf: str = Form("")):
        session = _signed_in(request)
        if session is None:
            return _to_login()
        principal, token = session
        _check_csrf(request, token, csrf)
        if principal.scope != "write":
            return RedirectResponse(f"/console/runs/{quote(run_id)}?message={quote('This token has read scope: sign in with a write token to retry.')}", status_code=303)
        try:
            with open_scope(request, principal) as scope:
                result = runs_api.retry_failed(scope, run_id, None, actor=principal.actor)
            message = (f"Retry queued: {result['retriedCount']} failed target(s) queued for another attempt."
                       if result["retriedCount"] else "Nothing to retry: the run has no failed targets.")
        except ApiError as exc:
            message = f"Not retried: {exc.message}"
        except CalibrError as exc:
            message = f"Not retried: {calibr_error_response(exc)['error']['message']}"
        return RedirectResponse(f"/console/runs/{quote(run_id)}?message={quote(message)}", status_code=303)

    return router


def console_secret() -> bytes:
    return secrets.token_bytes(32)


__all__ = ["build_router", "console_secret"]

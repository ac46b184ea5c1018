"""``POST /api/v1/webhooks/stripe`` (and a read-only stats route), as a router factory.

The lead mounts ``build_router(require_read, require_write)`` in the HTTP API. The webhook
route authenticates by the ``Stripe-Signature`` header (``stripe.Webhook.construct_event``
with a timestamp tolerance), not by token: an invalid signature or a stale timestamp is a
401 and is counted; a verified event is recorded once by id and, for the types we act on,
written to the outbox (``stripe.webhook.received``). The route never calls Stripe and never
syncs inline. Only imported when STRIPE_CONNECT_ENABLED is on.
"""

from __future__ import annotations

from typing import Callable

import stripe
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from prometheus_client import Counter
from sqlalchemy import func, select

from calibr_pipeline import settings as settings_module
from calibr_pipeline.services.stripe_sync import record_rejection, receive_webhook_event, webhook_backlog

WEBHOOK_PATH = "/api/v1/webhooks/stripe"
DEFAULT_TOLERANCE_SECONDS = 300

SIGNATURE_FAILURES = Counter("calibr_stripe_webhook_signature_failures", "Stripe webhook requests refused: bad signature, stale timestamp or bad body.", ["reason"])
WEBHOOK_EVENTS = Counter("calibr_stripe_webhook_events", "Verified Stripe webhook events by outcome.", ["outcome"])


def build_router(
    require_read: Callable,
    require_write: Callable,
    *,
    warehouse_url: str | None = None,
    webhook_secret: str | None = None,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
) -> APIRouter:
    """``require_read`` guards the stats route; ``require_write`` is accepted for symmetry with
    the other routers (the webhook itself is authenticated by its signature)."""
    router = APIRouter(tags=["stripe"])

    def _config() -> tuple[str, str]:
        loaded = settings_module.load_settings()
        url = warehouse_url or loaded.WAREHOUSE_URL or settings_module.warehouse_url()
        secret = webhook_secret or (loaded.STRIPE_WEBHOOK_SECRET.get_secret_value() if loaded.STRIPE_WEBHOOK_SECRET else None)
        if not secret:
            raise RuntimeError("CALIBR_STRIPE_WEBHOOK_SECRET is not set")
        return url, secret

    async def _refuse(url: str, reason: str, status: int, message: str) -> JSONResponse:
        SIGNATURE_FAILURES.labels(reason).inc()
        await run_in_threadpool(record_rejection, url, reason)
        return JSONResponse({"error": {"type": "invalid_request", "message": message}}, status_code=status)

    @router.post(WEBHOOK_PATH, summary="Stripe webhook endpoint (signature-authenticated)")
    async def stripe_webhook(request: Request):
        url, secret = _config()
        body = await request.body()
        try:
            text = body.decode("utf-8")
            event = stripe.Webhook.construct_event(text, request.headers.get("stripe-signature"), secret, tolerance=tolerance)
        except stripe.SignatureVerificationError as exc:
            stale = "tolerance" in str(exc).lower()
            return await _refuse(url, "timestamp" if stale else "signature", 401,
                                 "timestamp outside the tolerance window" if stale else "invalid Stripe-Signature")
        except (ValueError, UnicodeDecodeError):
            return await _refuse(url, "body", 400, "the body is not a JSON Stripe event")
        payload = event.to_dict()
        if not isinstance(payload.get("id"), str) or not payload["id"].startswith("evt_"):
            return await _refuse(url, "body", 400, "the body is not a Stripe event (no evt_ id)")
        outcome = await run_in_threadpool(receive_webhook_event, url, payload)
        WEBHOOK_EVENTS.labels(outcome.status).inc()
        return {"received": True, "status": outcome.status}

    @router.get("/api/v1/stripe/webhooks/stats", dependencies=[Depends(require_read)], summary="Stripe webhook counters")
    def stripe_webhook_stats():
        from calibr_pipeline.warehouse.engine import session_scope
        from calibr_pipeline.warehouse.models import StripeWebhookEvent, StripeWebhookRejection

        url, _ = _config()
        with session_scope(url) as session:
            by_status = dict(session.execute(select(StripeWebhookEvent.status, func.count()).group_by(StripeWebhookEvent.status)).all())
            rejected = dict(session.execute(select(StripeWebhookRejection.reason, func.count()).group_by(StripeWebhookRejection.reason)).all())
            backlog = webhook_backlog(session)
        return {"events": by_status, "rejections": rejected, "backlog": backlog}

    del require_write  # accepted for the router-factory contract; no token-guarded write route here
    return router

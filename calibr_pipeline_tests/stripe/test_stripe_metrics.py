"""Stripe and event-archive metrics read from the warehouse by `calibr serve`'s collector."""

from __future__ import annotations

from datetime import date

from calibr_pipeline.monitoring.metrics import CalibrCollector
from calibr_pipeline.warehouse.engine import session_scope
from calibr_pipeline.warehouse.models import EventArchive, OutboxEvent, StripeSyncRun, StripeWebhookEvent, StripeWebhookRejection


def _samples(url: str) -> dict:
    out = {}
    for family in CalibrCollector(url).collect():
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_stripe_and_archive_metrics(seeded):
    url, tenant_id = seeded
    with session_scope(url) as session:
        for seconds, error in ((0.4, None), (3.0, None), (70.0, "rate_limited: x")):
            session.add(StripeSyncRun(tenant_id=tenant_id, account_id="acct_1", sync_date=date(2026, 11, 20), seconds=seconds, objects=3, error=error))
        session.add_all([StripeWebhookRejection(reason="signature"), StripeWebhookRejection(reason="signature"), StripeWebhookRejection(reason="timestamp")])
        session.add(StripeWebhookEvent(event_id="evt_1", event_type="product.created", status="ignored"))
        session.add(OutboxEvent(tenant_id=tenant_id, event_type="stripe.webhook.received", payload={}))  # raw row: a pending webhook
        session.add(EventArchive(source_table="event_log", month="2026-05", tenant_key="acme", path="/x", file_format="jsonl.gz", row_count=42,
                                 first_id="1", last_id="42", sha256="0" * 64, state="archived"))
    m = _samples(url)
    assert m[("calibr_stripe_sync_runs_total", (("outcome", "ok"), ("tenant", "acme")))] == 2
    assert m[("calibr_stripe_sync_runs_total", (("outcome", "error"), ("tenant", "acme")))] == 1
    assert m[("calibr_stripe_sync_duration_seconds_bucket", (("le", "1.0"), ("tenant", "acme")))] == 1
    assert m[("calibr_stripe_sync_duration_seconds_bucket", (("le", "60.0"), ("tenant", "acme")))] == 2
    assert m[("calibr_stripe_sync_duration_seconds_count", (("tenant", "acme"),))] == 3
    assert m[("calibr_stripe_webhook_backlog", ())] == 1
    assert m[("calibr_stripe_webhook_signature_failures_total", (("reason", "signature"),))] == 2
    assert m[("calibr_stripe_webhook_signature_failures_total", (("reason", "body"),))] == 0
    assert m[("calibr_stripe_webhook_events_total", (("status", "ignored"),))] == 1
    assert m[("calibr_event_archive_rows", (("table", "event_log"),))] == 42
    assert m[("calibr_event_archive_last_success_timestamp_seconds", ())] > 1.7e9
    assert m[("calibr_warehouse_up", ())] == 1

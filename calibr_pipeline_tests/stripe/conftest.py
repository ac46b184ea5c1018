"""A Stripe sandbox on loopback and an environment with the connector switched on."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from calibr_pipeline.sandbox.stripe_api import StripeSandbox, serve_stripe

WEBHOOK_SECRET = "whsec_test_calibr_sandbox_secret"


@pytest.fixture
def stripe_world(monkeypatch):
    sandbox, server = serve_stripe(StripeSandbox(retry_schedule=(0.05, 0.1, 0.2)))
    monkeypatch.setenv("STRIPE_CONNECT_ENABLED", "true")
    monkeypatch.setenv("CALIBR_STRIPE_API_KEY", sandbox.platform_key)
    monkeypatch.setenv("CALIBR_STRIPE_CLIENT_ID", sandbox.client_id)
    monkeypatch.setenv("CALIBR_STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET)
    monkeypatch.setenv("CALIBR_STRIPE_API_BASE", server.base_url)
    monkeypatch.setenv("CALIBR_STRIPE_CONNECT_BASE", server.base_url)
    monkeypatch.setenv("CALIBR_SECRETS_KEYS", Fernet.generate_key().decode())  # the vault seals Connect tokens
    # the SDK's backoff starts at 0.5 s; keep fault tests quick
    import stripe

    monkeypatch.setattr(stripe._http_client.HTTPClient, "INITIAL_DELAY", 0.01)
    monkeypatch.setattr(stripe._http_client.HTTPClient, "MAX_DELAY", 0.05)
    try:
        yield sandbox, server
    finally:
        server.stop()


@pytest.fixture
def client(stripe_world):
    from calibr_pipeline.connectors.stripe.client import StripeConnect

    sandbox, server = stripe_world
    return StripeConnect(sandbox.platform_key, sandbox.client_id, api_base=server.base_url, connect_base=server.base_url, max_network_retries=3)

"""Stripe Connect against the loopback sandbox through the official SDK: OAuth, paginated and
incremental sync, minor units, faults and 429s, the sandbox's own protocol rules."""

from __future__ import annotations

from datetime import date, datetime, timezone
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import stripe
from sqlalchemy import select

from calibr_pipeline.connectors.stripe.client import StripeConnectorError
from calibr_pipeline.connectors.stripe.sealing import unseal_secret
from calibr_pipeline.services.stripe_sync import connect_account, map_manually, sync_catalog, sync_transactions_day
from calibr_pipeline.warehouse.engine import session_scope
from calibr_pipeline.warehouse.models import StripeAccount, StripeProductMap, StripeSyncRun, Transaction

DAY = date(2026, 11, 20)
NOON = int(datetime(2026, 11, 20, 12, tzinfo=timezone.utc).timestamp())


def _connect(url, sandbox, client, tenant="acme") -> str:
    account = sandbox.create_account()
    return connect_account(url, client, tenant_slug=tenant, code=sandbox.authorization_code(account))


def test_oauth_authorize_redirect_and_code_exchange_store_sealed_tokens(seeded, stripe_world, client):
    url, _ = seeded
    sandbox, _server = stripe_world
    authorize = client.authorize_url(state="st4te", redirect_uri="https://calibr.example/stripe/callback")
    assert authorize.startswith(_server.base_url + "/oauth/authorize?") and "client_id=ca_sandbox_platform" in authorize
    redirect = requests.get(authorize, allow_redirects=False, timeout=5)
    assert redirect.status_code == 302
    location = redirect.headers["Location"]
    assert location.startswith("https://calibr.example/stripe/callback?") and "state=st4te" in location
    code = parse_qs(urlsplit(location).query)["code"][0]
    account_id = connect_account(url, client, tenant_slug="acme", code=code)
    assert account_id.startswith("acct_")
    with session_scope(url) as session:
        stored = session.scalar(select(StripeAccount))
    access = unseal_secret(stored.access_token_sealed)
    assert access.startswith("sk_test_") and access not in stored.access_token_sealed and "***" in repr(stored)
    # a code is single-use
    with pytest.raises(StripeConnectorError, match="invalid_grant"):
        client.exchange_code(code)


def test_catalog_sync_paginates_maps_by_sku_and_is_incremental(seeded, stripe_world, client):
    url, _ = seeded
    sandbox, _ = stripe_world
    account = _connect(url, sandbox, client)
    for i in range(230):
        product = sandbox.create(account, "product", {"name": f"P{i}", "metadata": {"sku": "A"} if i == 0 else {}})
        sandbox.create(account, "price", {"product": product["id"], "unit_amount": str(1999 + i), "currency": "usd",
                                          "metadata": {"sku": "B"} if i == 1 else {}})
    before = len(sandbox.requests)
    report = sync_catalog(url, client, tenant_slug="acme")
    assert (report.products, report.prices) == (230, 230)
    assert [r[1] for r in sandbox.requests[before:]].count("/v1/products") == 3  # 100 + 100 + 30, following has_more
    with session_scope(url) as session:
        rows = session.scalars(select(StripeProductMap)).all()
        by_sku = {r.sku: r for r in rows if r.sku}
    assert len(rows) == 460
    assert by_sku["A"].match_source == "sku_metadata" and by_sku["A"].variant_id is not None
    assert by_sku["B"].stripe_price_id.startswith("price_") and by_sku["B"].unit_amount_minor == 2000 and by_sku["B"].currency == "USD"
    # incremental: only objects created since the cursor are listed again
    new = sandbox.create(account, "product", {"name": "New", "metadata": {"sku": "C"}})
    again = sync_catalog(url, client, tenant_slug="acme")
    assert again.products <= 2 and again.prices <= 1
    # a manual match survives later syncs
    map_manually(url, account_id=account, stripe_product_id=new["id"], sku="A")
    sync_catalog(url, client, tenant_slug="acme")
    with session_scope(url) as session:
        manual = session.scalar(select(StripeProductMap).where(StripeProductMap.stripe_product_id == new["id"], StripeProductMap.stripe_price_id == ""))
    assert (manual.sku, manual.match_source) == ("A", "manual")


def test_transactions_in_minor_units_replace_their_day(seeded, stripe_world, client):
    url, _ = seeded
    sandbox, _ = stripe_world
    account = _connect(url, sandbox, client)
    for i, amount in enumerate((1999, 250, 100000)):
        sandbox.create(account, "payment_intent", {"amount": str(amount), "currency": "eur", "description": f"order {i}"}, created=NOON + i)
    sandbox.create(account, "payment_intent", {"amount": "500", "currency": "eur"}, created=NOON + 86400)  # the next day
    report = sync_transactions_day(url, client, tenant_slug="acme", day=DAY)
    assert (report.payment_intents, report.balance_transactions) == (3, 3)
    sync_transactions_day(url, client, tenant_slug="acme", day=DAY)  # re-run: replaced, not duplicated
    with session_scope(url) as session:
        rows = session.scalars(select(Transaction).order_by(Transaction.source, Transaction.amount_minor)).all()
    assert len(rows) == 6 and {r.occurred_date for r in rows} == {DAY} and {r.currency for r in rows} == {"EUR"}
    charges = [r for r in rows if r.source == "balance_transaction"]
    assert [(r.amount_minor, r.fee_minor, r.net_minor) for r in charges] == [(250, 37, 213), (1999, 88, 1911), (100000, 2930, 97070)]
    assert all(isinstance(r.amount_minor, int) for r in rows)


def test_429_with_stripe_should_retry_is_retried_by_the_sdk(seeded, stripe_world, client):
    url, _ = seeded
    sandbox, _ = stripe_world
    account = _connect(url, sandbox, client)
    sandbox.create(account, "payment_intent", {"amount": "1200", "currency": "usd"}, created=NOON)
    sandbox.fail_next(2, status=429)
    report = sync_transactions_day(url, client, tenant_slug="acme", day=DAY)
    assert report.errors == [] and report.payment_intents == 1


def test_persistent_faults_fail_the_sync_with_a_classified_error_and_are_recorded(seeded, stripe_world, client):
    url, _ = seeded
    sandbox, _ = stripe_world
    account = _connect(url, sandbox, client)
    sandbox.fail_next(10, status=429)
    report = sync_transactions_day(url, client, tenant_slug="acme", day=DAY)
    assert report.errors and "rate_limited" in report.errors[0]
    sandbox.clear_faults()
    sandbox.fail_next(10, status=500)
    report = sync_transactions_day(url, client, tenant_slug="acme", day=DAY)
    assert "http_5xx" in report.errors[0]
    with session_scope(url) as session:
        runs = session.scalars(select(StripeSyncRun).where(StripeSyncRun.account_id == account)).all()
    assert len(runs) == 2 and all(r.error for r in runs)


def test_sandbox_speaks_stripes_protocol(stripe_world):
    sandbox, server = stripe_world
    account = sandbox.create_account()
    sdk = stripe.StripeClient(sandbox.platform_key, base_addresses={"api": server.base_url}, max_network_retries=0)
    options = {"stripe_account": account, "idempotency_key": "key-1"}
    first = sdk.v1.products.create({"name": "Tent", "metadata": {"sku": "TENT-1"}}, options)
    again = sdk.v1.products.create({"name": "Tent", "metadata": {"sku": "TENT-1"}}, options)
    assert first.id == again.id and first.metadata["sku"] == "TENT-1"
    with pytest.raises(stripe.IdempotencyError):
        sdk.v1.products.create({"name": "Other"}, options)
    with pytest.raises(stripe.AuthenticationError):
        stripe.StripeClient("sk_test_wrong", base_addresses={"api": server.base_url}).v1.products.list(options={"stripe_account": account})
    with pytest.raises(stripe.InvalidRequestError):
        sdk.v1.products.list({"limit": 101}, {"stripe_account": account})
    raw = requests.get(f"{server.base_url}/v1/products?limit=1", headers={"Authorization": f"Bearer {sandbox.platform_key}", "Stripe-Account": account}, timeout=5).json()
    assert raw["object"] == "list" and raw["has_more"] is False and raw["url"] == "/v1/products" and len(raw["data"]) == 1

"""The demo's Stripe step (only with STRIPE_CONNECT_ENABLED): a loopback Stripe, one Connect
Standard account per demo tenant connected through OAuth, products carrying our SKUs in
their metadata, today's payments, and the ``stripe_sync`` job for today's partitions."""

from __future__ import annotations

import datetime as dt
import os
import urllib.parse
import urllib.request

from sqlalchemy import func, select

from calibr_pipeline.sandbox.stripe_api import StripeSandbox, serve_stripe
from calibr_pipeline.warehouse.engine import session_scope
from calibr_pipeline.warehouse.models import Project, StripeProductMap, Tenant, Transaction, Variant

DEMO_PLATFORM_KEY = "sk_test_platform_sandbox"
DEMO_CLIENT_ID = "ca_sandbox_platform"
DEMO_WEBHOOK_SECRET = "whsec_calibr_demo_sandbox"


def prepare_environment(environ=os.environ) -> None:
    """With the flag on, point every unset CALIBR_STRIPE_* variable at the sandbox's values."""

    if environ.get("STRIPE_CONNECT_ENABLED", "").strip().lower() not in ("1", "true", "yes", "on"):
        return
    environ.setdefault("CALIBR_STRIPE_API_KEY", DEMO_PLATFORM_KEY)
    environ.setdefault("CALIBR_STRIPE_CLIENT_ID", DEMO_CLIENT_ID)
    environ.setdefault("CALIBR_STRIPE_WEBHOOK_SECRET", DEMO_WEBHOOK_SECRET)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def run_stripe_demo(defs, instance, warehouse_url: str, tenants: list[str], today: dt.date):
    """Returns (results by step, stop callback for the sandbox)."""
    from calibr_pipeline.connectors.stripe.client import StripeConnect
    from calibr_pipeline.demo import run_job_for_day
    from calibr_pipeline.services.stripe_sync import connect_account

    sandbox, server = serve_stripe(StripeSandbox(platform_key=os.environ["CALIBR_STRIPE_API_KEY"], client_id=os.environ["CALIBR_STRIPE_CLIENT_ID"]))
    os.environ["CALIBR_STRIPE_API_BASE"] = os.environ["CALIBR_STRIPE_CONNECT_BASE"] = server.base_url
    client = StripeConnect(sandbox.platform_key, sandbox.client_id, api_base=server.base_url, connect_base=server.base_url)
    noon = int(dt.datetime(today.year, today.month, today.day, 12, tzinfo=dt.timezone.utc).timestamp())
    opener = urllib.request.build_opener(_NoRedirect)
    for tenant in tenants:
        # the merchant approves on (sandbox) connect.stripe.com and is sent back with a code
        authorize = client.authorize_url(state=client.new_state(), redirect_uri="http://127.0.0.1/stripe/callback")
        try:
            opener.open(authorize, timeout=10)
            raise RuntimeError("the sandbox did not redirect")
        except urllib.error.HTTPError as redirect:
            location = redirect.headers["Location"]
        code = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)["code"][0]
        account = connect_account(warehouse_url, client, tenant_slug=tenant, code=code)
        with session_scope(warehouse_url) as session:
            skus = session.scalars(select(Variant.sku).join(Project, Project.id == Variant.project_id).join(Tenant, Tenant.id == Project.tenant_id)
                                   .where(Tenant.slug == tenant).order_by(Variant.sku).limit(12)).all()
            currency = session.scalar(select(Project.currency).join(Tenant, Tenant.id == Project.tenant_id).where(Tenant.slug == tenant)) or "USD"
        for i, sku in enumerate(skus):
            product = sandbox.create(account, "product", {"name": f"{sku} (Stripe)", "metadata": {"sku": sku} if i < 10 else {}})
            sandbox.create(account, "price", {"product": product["id"], "unit_amount": str(1500 + 100 * i), "currency": currency.lower()})
        for i in range(6):
            sandbox.create(account, "payment_intent", {"amount": str(2500 + 375 * i), "currency": currency.lower(), "description": f"demo order {i + 1}"}, created=noon + 60 * i)
        print(f"{tenant}: Stripe account {account} connected through OAuth (sandbox at {server.base_url})")
    results = run_job_for_day(defs, instance, "stripe_sync", tenants, today)
    with session_scope(warehouse_url) as session:
        for tenant in tenants:
            tenant_id = session.scalar(select(Tenant.id).where(Tenant.slug == tenant))
            mapped = session.scalar(select(func.count()).select_from(StripeProductMap).where(StripeProductMap.tenant_id == tenant_id, StripeProductMap.variant_id.is_not(None)))
            paid = session.scalar(select(func.count()).select_from(Transaction).where(Transaction.tenant_id == tenant_id))
            print(f"  stripe_sync {tenant} {today}: {'SUCCESS' if results.get(tenant) else 'FAILED'}, {mapped} Stripe prices/products mapped to SKUs, {paid} transactions")
    return {f"{t} stripe": ok for t, ok in results.items()}, server.stop

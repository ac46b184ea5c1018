"""Stripe area (only loaded when STRIPE_CONNECT_ENABLED is on; see calibr_pipeline/definitions.py).

Assets partitioned by day x tenant: ``stripe_product_map`` (incremental catalog sync of every
connected account of the tenant) and ``stripe_transactions`` (the day's PaymentIntents and
BalanceTransactions, replaced on re-run). ``stripe_webhook_sensor`` turns
``stripe.webhook.received`` outbox events into a sync of that day (run_key = event id);
``daily_stripe_sync`` syncs yesterday for every tenant at 04:30 UTC.
"""

from datetime import date, timedelta

import dagster as dg
from sqlalchemy import select

from calibr_pipeline import settings
from calibr_pipeline.defs.outbox import Dispatch, dispatch_outbox
from calibr_pipeline.defs.partitions import DAILY_TENANT_PARTITIONS, TENANT_PARTITIONS, day_tenant
from calibr_pipeline.defs.resources import WarehouseResource
from calibr_pipeline.services.stripe_sync import WEBHOOK_EVENT
from calibr_pipeline.warehouse.models import StripeAccount, Tenant
from calibr_pipeline.warehouse.outbox import PendingEvent


class StripeResource(dg.ConfigurableResource):
    """The platform's Stripe credentials; empty fields fall back to CALIBR_STRIPE_* variables."""

    api_base: str = ""
    connect_base: str = ""
    max_network_retries: int = 3

    def client(self):
        from calibr_pipeline.connectors.stripe.client import StripeConnect

        loaded = settings.require_valid_environment()
        if loaded.STRIPE_API_KEY is None or loaded.STRIPE_CLIENT_ID is None:
            raise dg.Failure("CALIBR_STRIPE_API_KEY and CALIBR_STRIPE_CLIENT_ID must be set for the Stripe connector")
        return StripeConnect(
            loaded.STRIPE_API_KEY.get_secret_value(), loaded.STRIPE_CLIENT_ID,
            api_base=self.api_base or loaded.STRIPE_API_BASE, connect_base=self.connect_base or loaded.STRIPE_CONNECT_BASE,
            max_network_retries=self.max_network_retries,
        )


@dg.asset(partitions_def=DAILY_TENANT_PARTITIONS, group_name="stripe", kinds={"stripe", "sql"},
          description="Stripe products/prices of the tenant's connected accounts linked to our SKUs (`stripe_product_map`); incremental by `created` cursor.")
def stripe_product_map(context: dg.AssetExecutionContext, warehouse: WarehouseResource, stripe_api: StripeResource) -> dg.MaterializeResult:
    from calibr_pipeline.services.stripe_sync import sync_catalog

    part = day_tenant(context)
    warehouse.ensure_schema()
    report = sync_catalog(warehouse.resolved_url, stripe_api.client(), tenant_slug=part.tenant_slug)
    return dg.MaterializeResult(metadata={"accounts": report.accounts, "products": report.products, "prices": report.prices})


@dg.asset(partitions_def=DAILY_TENANT_PARTITIONS, group_name="stripe", kinds={"stripe", "sql"}, deps=[stripe_product_map],
          description="The day's PaymentIntents and BalanceTransactions of the tenant's connected accounts in `transactions` (minor units); re-running replaces the day.")
def stripe_transactions(context: dg.AssetExecutionContext, warehouse: WarehouseResource, stripe_api: StripeResource) -> dg.MaterializeResult:
    from calibr_pipeline.services.stripe_sync import sync_transactions_day

    part = day_tenant(context)
    warehouse.ensure_schema()
    report = sync_transactions_day(warehouse.resolved_url, stripe_api.client(), tenant_slug=part.tenant_slug, day=part.day)
    if report.errors:
        raise dg.Failure(f"Stripe sync failed for {len(report.errors)} account(s): {'; '.join(report.errors)[:500]}")
    return dg.MaterializeResult(metadata={"accounts": report.accounts, "payment_intents": report.payment_intents,
                                          "balance_transactions": report.balance_transactions})


stripe_sync_job = dg.define_asset_job("stripe_sync", selection=[stripe_product_map, stripe_transactions], partitions_def=DAILY_TENANT_PARTITIONS)


def build_webhook_dispatch(session, event: PendingEvent) -> Dispatch:
    payload = event.payload
    tenant = session.scalar(select(Tenant.slug).join(StripeAccount, StripeAccount.tenant_id == Tenant.id).where(StripeAccount.account_id == payload["account_id"]))
    if tenant is None:
        raise ValueError(f"Stripe account {payload['account_id']} is not connected to any tenant")
    key = dg.MultiPartitionKey({"date": payload["day"], "tenant": tenant})
    return Dispatch(dg.RunRequest(run_key=event.id, partition_key=key, tags={"calibr/outbox_event": event.id, "calibr/trigger": payload["type"]}),
                    partitions={TENANT_PARTITIONS.name: [tenant]})


@dg.sensor(job=stripe_sync_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING,
           description="`stripe.webhook.received` outbox events -> a sync of that account's tenant and day (run_key = event id).")
def stripe_webhook_sensor(context: dg.SensorEvaluationContext, warehouse: WarehouseResource) -> dg.SensorResult:
    return dispatch_outbox(context, warehouse, WEBHOOK_EVENT, build_webhook_dispatch)


@dg.schedule(job=stripe_sync_job, cron_schedule="30 4 * * *", execution_timezone="UTC", default_status=dg.DefaultScheduleStatus.RUNNING,
             description="04:30 UTC: sync yesterday for every tenant with a connected Stripe account.")
def daily_stripe_sync(context: dg.ScheduleEvaluationContext, warehouse: WarehouseResource):
    day = (context.scheduled_execution_time.date() - timedelta(days=1)) if context.scheduled_execution_time else date.today() - timedelta(days=1)
    with warehouse.session() as session:
        tenants = sorted(set(session.scalars(select(Tenant.slug).join(StripeAccount, StripeAccount.tenant_id == Tenant.id))))
    return [dg.RunRequest(run_key=f"stripe:{t}:{day}", partition_key=dg.MultiPartitionKey({"date": day.isoformat(), "tenant": t})) for t in tenants]


defs = dg.Definitions(
    assets=[stripe_product_map, stripe_transactions], jobs=[stripe_sync_job], sensors=[stripe_webhook_sensor], schedules=[daily_stripe_sync],
    resources={"stripe_api": StripeResource()},
)

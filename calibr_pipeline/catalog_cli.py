"""``calibr catalog sync --project SLUG``: read a project's shop catalogs now.

The same thing the ``shop_catalog`` asset does, through Dagster, so the run shows in the
UI like a scheduled one: the tenant's partition key is registered when it is missing
(the ``tenant_partitions_sensor`` would add it only on its next tick) and today's
``date × tenant`` partition (or ``--date``) of the ``catalog_sync`` job is executed in
this process on the instance the UI shows. The asset reads every shop of the project's
tenant, so a tenant with several projects has all of them refreshed.

Errors the user can fix exit 2 with one line: an unknown project, a project without a
shop, a shop that cannot be read (unreachable, refused token, wrong currency).
"""

from __future__ import annotations

import datetime as dt

from calibr_pipeline.domain.errors import CalibrError


def add_catalog_commands(sub) -> None:
    catalog = sub.add_parser("catalog", help="merchant catalog").add_subparsers(dest="catalog_command", required=True)
    p = catalog.add_parser("sync", help="read the project's shop catalogs into the warehouse now (the shop_catalog asset)")
    p.add_argument("--project", required=True, help="project slug")
    p.add_argument("--date", type=dt.date.fromisoformat, help="partition date (YYYY-MM-DD; default today, UTC)")
    p.set_defaults(func=cmd_catalog_sync)


def cmd_catalog_sync(args) -> int:
    from calibr_pipeline.cli import _dagster_instance, _warehouse_url
    from calibr_pipeline.warehouse.engine import session_scope
    from calibr_pipeline.warehouse.tenancy import project_by_slug, shops_for_tenant

    url = _warehouse_url(args)
    day = args.date or dt.datetime.now(dt.UTC).date()
    with session_scope(url) as session:
        project = project_by_slug(session, args.project)
        tenant_slug = project.tenant.slug
        shops = [s.name for s in project.shops]
        shop_names = {str(s.id): s.name for s in shops_for_tenant(session, project.tenant)}
    if not shops:
        raise CalibrError(
            f"project {args.project!r} has no shop; add one with `calibr shops add --project {args.project} --name NAME ...`"
        )

    instance = _dagster_instance()
    success, failure, metadata = run_catalog_sync(url, instance, tenant_slug, day, shop_names)
    if not success:
        raise CalibrError(f"catalog sync of project {args.project!r} ({day}) failed: {failure}")
    per_shop = metadata.get("per_shop") or {}
    print(f"catalog sync {tenant_slug} {day}: {metadata.get('variants', 0)} variants from {metadata.get('shops', 0)} shop(s)")
    for name, figures in sorted(per_shop.items()):
        print(
            f"  {name}: {figures.get('variants_read', 0)} variants from {figures.get('source')}, "
            f"{figures.get('api_requests', 0)} API requests, {figures.get('throttled_answers', 0)} throttled"
        )
    return 0


def run_catalog_sync(
    warehouse_url: str, instance, tenant_slug: str, day: dt.date, shop_names: dict[str, str] | None = None
) -> tuple[bool, str, dict]:
    """Execute the ``catalog_sync`` job for ``(day, tenant)``; (success, failure text, asset metadata)."""
    from calibr_pipeline.definitions import build_definitions
    from calibr_pipeline.defs.partitions import TENANT_PARTITIONS, DayTenant
    from calibr_pipeline.defs.resources import WarehouseResource

    if not instance.has_dynamic_partition(TENANT_PARTITIONS.name, tenant_slug):
        instance.add_dynamic_partitions(TENANT_PARTITIONS.name, [tenant_slug])
    defs = build_definitions(warehouse=WarehouseResource(url=warehouse_url))
    result = defs.resolve_job_def("catalog_sync").execute_in_process(
        instance=instance,
        partition_key=DayTenant(day, tenant_slug).key,
        run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
        tags={"calibr/trigger": "cli"},
        raise_on_error=False,
    )
    if result.success:
        metadata: dict = {}
        for event in result.get_asset_materialization_events():
            for key, value in event.materialization.metadata.items():
                metadata[key] = getattr(value, "value", value)
        return True, "", metadata
    return False, _failure_text(result, shop_names or {}), {}


def _failure_text(result, shop_names: dict[str, str]) -> str:
    """One line out of the failed step: the per-shop failures the asset reports, else Dagster's message."""
    for event in result.all_events:
        if not event.is_step_failure:
            continue
        data = event.step_failure_data
        user = data.user_failure_data
        if user is not None:
            failures = user.metadata.get("failures")
            value = getattr(failures, "value", failures)
            if isinstance(value, dict) and value:
                return "; ".join(f"shop {shop_names.get(shop, shop)!r}: {reason}" for shop, reason in value.items())
            if user.description:
                return user.description
        if data.error is not None:
            return data.error.message.strip().splitlines()[0]
    return "the catalog_sync run failed (see it in the Dagster UI)"


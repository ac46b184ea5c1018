"""The one Definitions object: every area's definitions plus the resources they share."""

import warnings

import dagster as dg

# Partitioned asset checks are a Dagster preview feature; we rely on them deliberately so
# a check result belongs to the (date, tenant) partition it judged.
warnings.filterwarnings("ignore", category=dg.PreviewWarning, message=".*partitions_def on an AssetCheckSpec.*")

# Area modules, not their Definitions objects: Dagster's module loader must find exactly one.
from calibr_pipeline import settings  # noqa: E402
from calibr_pipeline.defs.analytics import definitions as analytics_area  # noqa: E402
from calibr_pipeline.defs.catalog import definitions as catalog_area  # noqa: E402
from calibr_pipeline.defs.competitors import definitions as competitor_area  # noqa: E402
from calibr_pipeline.defs.copilot import definitions as copilot_area  # noqa: E402
from calibr_pipeline.defs.events import definitions as events_area  # noqa: E402
from calibr_pipeline.defs.executors import configured_kind, with_executor  # noqa: E402
from calibr_pipeline.defs.operations import definitions as operations_area  # noqa: E402
from calibr_pipeline.defs.pricing import definitions as pricing_area  # noqa: E402
from calibr_pipeline.defs.resources import (  # noqa: E402
    AlertsResource,
    ScraperResource,
    ShopifyAdminResource,
    WarehouseResource,
)


def default_resources() -> dict:
    return {
        "warehouse": WarehouseResource(),
        "scraper": ScraperResource(),
        "shopify_admin": ShopifyAdminResource(),
        "alerts": AlertsResource(),
    }


def build_definitions(*, executor: str | None = None, **resource_overrides) -> dg.Definitions:
    """All definitions; tests and benchmarks override resources (warehouse URL, timeouts).

    ``executor`` (default ``CALIBR_EXECUTOR``) puts every asset job on one executor
    (calibr_pipeline/defs/executors.py); unset, each job keeps its own.
    """
    resources = default_resources() | resource_overrides
    areas = [catalog_area.defs, competitor_area.defs, pricing_area.defs, operations_area.defs, copilot_area.defs, events_area.defs,
             analytics_area.defs]
    if settings.stripe_connect_enabled():  # off: nothing of the Stripe connector is imported
        from calibr_pipeline.defs.stripe import definitions as stripe_area

        areas.append(stripe_area.defs)
    merged = dg.Definitions.merge(*areas, dg.Definitions(resources=resources))
    return with_executor(merged, executor or configured_kind())


def definitions_from_environment() -> dg.Definitions:
    """The definitions as the environment says now (executor, warehouse, hosts), built on
    each call. A code pointer for processes that load the job themselves, Celery workers
    included: ``ReconstructableRepository.for_module("calibr_pipeline.definitions",
    "definitions_from_environment")``; ``defs`` below is the same thing, built at import."""
    return build_definitions()


defs = build_definitions()

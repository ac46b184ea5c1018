"""Every API endpoint with a valid request for one tenant: (name, method, path, json body, needs write)."""

from __future__ import annotations

from calibr_pipeline_tests.api.conftest import TenantData


def endpoints(t: TenantData) -> list[tuple[str, str, str, object, bool]]:
    return [
        ("health detailed", "GET", "/api/health/detailed", None, False),
        ("competitors add", "POST", f"/api/v1/projects/{t.project}/competitors", {"sku": t.sku, "url": t.competitor_url}, True),
        ("project competitors", "GET", f"/api/v1/projects/{t.project}/competitors", None, False),
        ("competitors", "GET", "/api/v1/competitors", None, False),
        ("observations", "GET", f"/api/v1/competitors/{t.listing_id}/observations", None, False),
        ("rules create", "POST", f"/api/v1/projects/{t.project}/rules", {"name": "x", "transform": {"kind": "percent_change", "value": "1"}, "scope": {"kind": "project"}}, True),
        ("rules list", "GET", f"/api/v1/projects/{t.project}/rules", None, False),
        ("rule get", "GET", f"/api/v1/rules/{t.rule_id}", None, False),
        ("materialize", "POST", f"/api/v1/rules/{t.rule_id}/materialize", None, True),
        ("runs list", "GET", "/api/v1/runs", None, False),
        ("run get", "GET", f"/api/v1/runs/{t.applied_run}", None, False),
        ("run targets", "GET", f"/api/v1/runs/{t.applied_run}/targets", None, False),
        ("explain", "GET", f"/api/v1/targets/{t.target_id}/explain", None, False),
        ("apply", "POST", f"/api/v1/runs/{t.queued_run}/apply", None, True),
        ("revert", "POST", f"/api/v1/runs/{t.applied_run}/revert", None, True),
        ("retry failed", "POST", f"/api/v1/runs/{t.partial_run}/retry-failed", {}, True),
        ("reconcile", "POST", f"/api/v1/runs/{t.applied_run}/reconcile", {}, True),
        ("audit", "GET", "/api/v1/audit", None, False),
        ("price changes", "GET", "/api/v1/price-changes", None, False),
    ]

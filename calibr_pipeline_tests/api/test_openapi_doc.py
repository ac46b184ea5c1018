"""docs/openapi.json is the app's current OpenAPI document (regenerate: make openapi)."""

from calibr_pipeline.api.openapi_doc import DOC, render


def test_committed_openapi_document_is_current():
    assert DOC.read_text() == render(), "docs/openapi.json is stale: run `make openapi` and commit it"


def test_every_area_router_is_documented():
    import json

    paths = json.loads(DOC.read_text())["paths"]
    for path in ("/api/health", "/api/v1/projects/{slug}/competitors", "/api/v1/rules/{rule_id}/materialize", "/api/v1/runs/{run_id}/retry-failed",
                 "/api/v1/targets/{target_id}/explain", "/api/v1/audit", "/api/v1/price-changes"):
        assert path in paths

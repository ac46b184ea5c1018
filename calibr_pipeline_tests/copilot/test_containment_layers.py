"""Each containment layer on its own: the database layer is driven with raw SQL that the SQL
policy would have refused, to show it holds by itself."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from calibr_pipeline.domain.copilot_sql import SqlRefusal
from calibr_pipeline.services.copilot_query import execute_contained, execute_readonly
from calibr_pipeline.warehouse.engine import get_engine
from calibr_pipeline_tests.copilot.conftest import OTHER_SKU, SECRET_TOKEN


def refused(world, sql, **kw):
    with pytest.raises(SqlRefusal) as info:
        execute_contained(world["url"], sql, tenant_id=world["acme"][0], **kw)
    return info.value.code


@pytest.mark.parametrize("sql", [
    "SELECT access_token FROM shops",
    "SELECT * FROM tenants",
    "SELECT payload FROM event_log",
    "SELECT prompt FROM copilot_audit",
    "SELECT error_message FROM competitor_price_observations",
])
def test_database_layer_denies_reading_anything_but_the_copilot_views(copilot_world, sql):
    assert refused(copilot_world, sql) == "permission_denied"


@pytest.mark.parametrize("sql", [
    "DELETE FROM variants",
    "UPDATE variants SET price = '1.00'",
    "INSERT INTO tenants (slug, name, created_at) VALUES ('x', 'x', '2026-01-01')",
    "DROP VIEW copilot_catalog",
    "CREATE TABLE evil (a int)",
])
def test_database_layer_denies_writes_and_ddl(copilot_world, sql):
    assert refused(copilot_world, sql) in ("permission_denied", "query_failed")
    with get_engine(copilot_world["url"]).connect() as connection:
        assert connection.execute(text("SELECT COUNT(*) FROM variants")).scalar() == 7
        assert connection.execute(text("SELECT COUNT(*) FROM tenants")).scalar() == 2
        assert connection.execute(text("SELECT COUNT(*) FROM information_schema.views WHERE table_name = 'copilot_catalog'")).scalar() == 1 \
            if not copilot_world["url"].startswith("sqlite") else connection.execute(text("SELECT COUNT(*) FROM copilot_catalog")).scalar() == 7


def test_database_layer_stops_slow_queries(copilot_world):
    slow = ("SELECT COUNT(*) FROM copilot_catalog a JOIN copilot_catalog b ON a.sku <> b.sku JOIN copilot_catalog c ON b.sku <> c.sku "
            "JOIN copilot_catalog d ON c.sku <> d.sku JOIN copilot_catalog e ON d.sku <> e.sku JOIN copilot_catalog f ON e.sku <> f.sku "
            "JOIN copilot_catalog g ON f.sku <> g.sku JOIN copilot_catalog h ON g.sku <> h.sku")
    if not copilot_world["url"].startswith("sqlite"):
        slow = "SELECT pg_sleep(5)"
    assert refused(copilot_world, slow, time_budget_s=0.3) == "time_budget_exceeded"


def test_sqlite_attach_and_pragmas_are_denied(copilot_world):
    if not copilot_world["url"].startswith("sqlite"):
        pytest.skip("SQLite only")
    assert refused(copilot_world, "ATTACH DATABASE ':memory:' AS evil") in ("permission_denied", "query_failed")
    assert refused(copilot_world, "PRAGMA writable_schema = 1") == "permission_denied"
    assert refused(copilot_world, "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT n FROM r") == "permission_denied"


def test_postgres_views_return_only_the_tenant_in_app_tenant_id(copilot_world):
    """Row-level gate in the views themselves: even an unscoped read of a view sees one tenant."""
    if copilot_world["url"].startswith("sqlite"):
        pytest.skip("PostgreSQL only: on SQLite the tenant predicate comes from the rewriter, checked by verify_rewritten")
    result = execute_contained(copilot_world["url"], "SELECT sku FROM copilot_catalog", tenant_id=copilot_world["acme"][0])
    assert result.row_count == 6 and OTHER_SKU not in {r["sku"] for r in result.rows}
    other = execute_contained(copilot_world["url"], "SELECT sku FROM copilot_catalog", tenant_id=copilot_world["zeta"][0])
    assert [r["sku"] for r in other.rows] == [OTHER_SKU]
    # set_config is executable by PUBLIC in PostgreSQL, so the database layer alone cannot stop a
    # query from switching app.tenant_id: the SQL policy's function allow-list does (system_function).
    from calibr_pipeline.domain.copilot_sql import rewrite_query

    with pytest.raises(SqlRefusal) as info:
        rewrite_query("SELECT set_config('app.tenant_id', '2', true), sku FROM catalog", tenant_id=1, project_id=1, dialect="postgres")
    assert info.value.code == "system_function"


def test_executor_refuses_sql_that_does_not_pin_the_tenant(copilot_world):
    tenant_id, project_id = copilot_world["acme"]
    with pytest.raises(SqlRefusal) as info:
        execute_readonly(copilot_world["url"], "SELECT sku FROM copilot_catalog", tenant_id=tenant_id, project_id=project_id)
    assert info.value.code == "internal_rewrite_check"
    with pytest.raises(SqlRefusal):
        execute_readonly(copilot_world["url"], f"SELECT sku FROM copilot_catalog WHERE tenant_id = {tenant_id + 1} AND project_id = {project_id}",
                         tenant_id=tenant_id, project_id=project_id)
    ok = execute_readonly(copilot_world["url"], f"SELECT sku FROM copilot_catalog WHERE tenant_id = {tenant_id} AND project_id = {project_id}",
                          tenant_id=tenant_id, project_id=project_id)
    assert ok.row_count == 6


def test_rows_are_capped(copilot_world):
    result = execute_contained(copilot_world["url"], "SELECT sku FROM copilot_catalog", tenant_id=copilot_world["acme"][0], max_rows=2)
    assert result.row_count == 2 and result.truncated


def test_no_secret_in_any_copilot_view(copilot_world):
    with get_engine(copilot_world["url"]).connect() as connection:
        for view in ("copilot_catalog", "copilot_market_position", "copilot_competitor_prices", "copilot_rules", "copilot_rule_runs",
                     "copilot_rule_targets", "copilot_price_changes"):
            if not copilot_world["url"].startswith("sqlite"):
                connection.execute(text("SELECT set_config('app.tenant_id', :t, true)"), {"t": str(copilot_world["acme"][0])})
            rows = connection.execute(text(f"SELECT * FROM {view}")).all()
            assert SECRET_TOKEN not in repr(rows)


def test_percent_signs_and_quotes_survive_execution(copilot_world):
    result = execute_contained(copilot_world["url"], "SELECT '50%' AS pct, 'it''s' AS q, sku FROM copilot_catalog WHERE sku LIKE 'TENT%' ORDER BY sku",
                               tenant_id=copilot_world["acme"][0])
    assert result.rows == [{"pct": "50%", "q": "it's", "sku": "TENT-1"}, {"pct": "50%", "q": "it's", "sku": "TENT-2"}]

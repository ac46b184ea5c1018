"""Row-level security on PostgreSQL: as the API role, a query that forgets its tenant filter
sees 0 rows of another tenant, on every tenant-owned table."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from calibr_pipeline.services.api_tokens import create_token
from calibr_pipeline.services.rule_runs import create_run, request_apply_of, save_rule
from calibr_pipeline.warehouse.engine import get_engine, session_scope, upgrade_to_head
from calibr_pipeline.warehouse.outbox import record_event
from calibr_pipeline.warehouse.rls import API_ROLE, PIPELINE_ROLE, POLICY, apply_row_level_security, enter_tenant, tenant_tables
from calibr_pipeline.warehouse.tenancy import get_or_create_project, get_or_create_tenant, upsert_shop
from calibr_pipeline_tests.conftest import variant

RULE = {"name": "Raise", "transform": {"kind": "percent_change", "value": "10"}, "scope": {"kind": "project"}}


# Row-level security is a PostgreSQL feature; on SQLite the scoping is the query layer
# (warehouse/scoped.py), tested through the API in calibr_pipeline_tests/api.
pytestmark = [pytest.mark.postgres, pytest.mark.parametrize("warehouse_url", ["postgres"], indirect=True)]


@pytest.fixture
def pg_url(warehouse_url):
    return warehouse_url


@pytest.fixture
def two_tenants(pg_url):
    from calibr_pipeline.warehouse.catalog_store import upsert_catalog

    ids = {}
    for slug in ("alpha", "beta"):
        with session_scope(pg_url) as session:
            tenant = get_or_create_tenant(session, slug)
            project = get_or_create_project(session, tenant, f"{slug}-store", currency="USD")
            shop = upsert_shop(session, project, "main", platform="shopify", admin_endpoint="https://x.myshopify.com/admin/api/2025-01/graphql.json",
                               access_token=f"shpat_{slug}", currency="USD")
            upsert_catalog(session, shop, [variant("A", "10.00"), variant("B", "20.00")])
            save_rule(session, project_slug=project.slug, definition=RULE, actor="test")
            run = create_run(session, project_slug=project.slug, rule_name="Raise", actor="test")
            request_apply_of(session, run, actor="test")
            record_event(session, "automation.run.retry", {"run_id": run.id, "targets": [1]}, tenant_id=tenant.id, actor="test")
            create_token(session, tenant_slug=slug, scope="read", actor="test")
            ids[slug] = tenant.id
    return ids


def _count(connection, sql: str, **params) -> int:
    return connection.execute(text(sql), params).scalar_one()


def test_roles_are_not_owners_and_cannot_bypass_rls(pg_url):
    with get_engine(pg_url).connect() as connection:
        for role in (API_ROLE, PIPELINE_ROLE):
            row = connection.execute(text("SELECT rolsuper, rolbypassrls, rolcanlogin FROM pg_roles WHERE rolname = :r"), {"r": role}).one()
            assert tuple(row) == (False, False, False)
            owned = _count(connection, "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() AND tableowner = :r", r=role)
            assert owned == 0


def test_every_tenant_owned_table_has_rls_and_both_policies(pg_url):
    with get_engine(pg_url).connect() as connection:
        by_tenant, by_project = tenant_tables(connection)
        assert {"event_log", "outbox", "outbox_dead_letters", "price_write_dlq", "rule_runs", "rule_targets", "api_tokens"} <= set(by_tenant)
        assert {"shops", "competitor_listings", "pricing_rules", "variants"} <= set(by_project)
        for table in [*by_tenant, *by_project, "tenants"]:
            assert connection.execute(text("SELECT relrowsecurity FROM pg_class WHERE relname = :t"), {"t": table}).scalar_one(), table
            policies = set(connection.execute(text("SELECT policyname FROM pg_policies WHERE tablename = :t"), {"t": table}).scalars())
            assert {POLICY, POLICY + "_pipeline"} <= policies, table


def test_a_query_that_forgets_its_tenant_filter_returns_no_rows_of_another_tenant(pg_url, two_tenants):
    alpha, beta = two_tenants["alpha"], two_tenants["beta"]
    with get_engine(pg_url).connect() as connection:
        by_tenant, by_project = tenant_tables(connection)
        owner_counts = {t: _count(connection, f'SELECT count(*) FROM "{t}"') for t in by_tenant + by_project}
        connection.rollback()
        with connection.begin():
            enter_tenant(connection, alpha)
            assert connection.execute(text("SELECT current_user")).scalar_one() == API_ROLE
            # The forgetful queries: no WHERE clause at all.
            runs = connection.execute(text("SELECT tenant_id FROM rule_runs")).scalars().all()
            assert runs and set(runs) == {alpha}
            events = connection.execute(text("SELECT tenant_id FROM event_log")).scalars().all()
            assert events and set(events) == {alpha}
            assert connection.execute(text("SELECT slug FROM tenants")).scalars().all() == ["alpha"]
            assert connection.execute(text("SELECT slug FROM projects")).scalars().all() == ["alpha-store"]
            for table in by_tenant:
                assert _count(connection, f'SELECT count(*) FROM "{table}" WHERE tenant_id = :b', b=beta) == 0, table
            for table in by_project:
                assert _count(connection, f'SELECT count(*) FROM "{table}" WHERE project_id IN (SELECT id FROM projects)') == _count(
                    connection, f'SELECT count(*) FROM "{table}"'), table
            seen = {t: _count(connection, f'SELECT count(*) FROM "{t}"') for t in by_tenant + by_project}
        assert any(owner_counts[t] > seen[t] for t in seen)  # the owner sees both tenants; the API role only one
        assert seen["rule_runs"] == 1 and owner_counts["rule_runs"] == 2


def test_without_a_tenant_the_api_role_sees_nothing_and_the_pipeline_role_everything(pg_url, two_tenants):
    with get_engine(pg_url).connect() as connection:
        with connection.begin():
            connection.execute(text(f"SET LOCAL ROLE {API_ROLE}"))
            assert _count(connection, "SELECT count(*) FROM rule_runs") == 0
            assert _count(connection, "SELECT count(*) FROM outbox") == 0
        with connection.begin():
            connection.execute(text(f"SET LOCAL ROLE {PIPELINE_ROLE}"))
            assert _count(connection, "SELECT count(*) FROM rule_runs") == 2
        with connection.begin():
            enter_tenant(connection, two_tenants["beta"], role=PIPELINE_ROLE)
            assert _count(connection, "SELECT count(*) FROM rule_runs") == 1


def test_the_api_role_cannot_write_into_another_tenant_or_read_views(pg_url, two_tenants):
    engine = get_engine(pg_url)
    with engine.connect() as connection:
        with pytest.raises(DBAPIError, match="row-level security"):
            with connection.begin():
                enter_tenant(connection, two_tenants["alpha"])
                connection.execute(text("INSERT INTO event_log (tenant_id, event_type, actor, payload, created_at) "
                                        "VALUES (:b, 'forged', 'x', '{}', now())"), {"b": two_tenants["beta"]})
        with pytest.raises(DBAPIError, match="permission denied"):
            with connection.begin():
                enter_tenant(connection, two_tenants["alpha"])
                view = connection.execute(text("SELECT viewname FROM pg_views WHERE schemaname = current_schema() LIMIT 1")).scalar_one()
                connection.execute(text(f'SELECT * FROM "{view}"'))  # views run as their owner: not granted
        assert _count(connection, "SELECT count(*) FROM event_log WHERE event_type = 'forged'") == 0


def test_applying_rls_again_changes_nothing(pg_url):
    with get_engine(pg_url).begin() as connection:
        before = connection.execute(text("SELECT count(*) FROM pg_policies")).scalar_one()
        apply_row_level_security(connection)
        assert connection.execute(text("SELECT count(*) FROM pg_policies")).scalar_one() == before
    upgrade_to_head(pg_url)


def test_pipeline_sessions_act_as_the_pipeline_role_not_the_owner(pg_url, two_tenants, monkeypatch):
    """Every ORM transaction (sensors, assets, CLI, API) runs as calibr_pipeline: no DDL, no
    BYPASSRLS; a tenant set for the transaction narrows it to that tenant's rows."""
    with session_scope(pg_url) as session:
        assert session.execute(text("SELECT current_user")).scalar_one() == PIPELINE_ROLE
        assert session.execute(text("SELECT count(*) FROM rule_runs")).scalar_one() == 2  # cross-tenant work, no tenant set
    with pytest.raises(DBAPIError, match="must be owner|permission denied"):
        with session_scope(pg_url) as session:
            session.execute(text("ALTER TABLE rule_runs ADD COLUMN sneaky integer"))
    with session_scope(pg_url) as session:
        session.commit()  # a new transaction is the pipeline role again, not the owner
        assert session.execute(text("SELECT current_user")).scalar_one() == PIPELINE_ROLE
        enter_tenant(session, two_tenants["alpha"], role=PIPELINE_ROLE)
        assert session.execute(text("SELECT count(*) FROM rule_runs")).scalar_one() == 1
    monkeypatch.setenv("CALIBR_WAREHOUSE_SESSION_ROLE", "owner")
    with session_scope(pg_url) as session:
        assert session.execute(text("SELECT current_user")).scalar_one() not in (PIPELINE_ROLE, API_ROLE)


def test_a_tenant_scoped_session_stays_scoped_in_every_transaction(pg_url, two_tenants):
    """act_as_tenant (the API's sessions): role and tenant are set as each transaction starts,
    so a commit in the middle of a request does not fall back to the pipeline's wider view."""
    from calibr_pipeline.warehouse.rls import act_as_tenant

    with session_scope(pg_url) as session:
        act_as_tenant(session, two_tenants["alpha"])
        assert session.execute(text("SELECT current_user")).scalar_one() == API_ROLE
        assert session.execute(text("SELECT count(*) FROM rule_runs")).scalar_one() == 1
        session.commit()
        assert session.execute(text("SELECT current_user")).scalar_one() == API_ROLE
        assert session.execute(text("SELECT slug FROM tenants")).scalars().all() == ["alpha"]

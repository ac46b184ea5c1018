"""Row-level security on PostgreSQL: tenant isolation under the query layer.

Two roles, created idempotently (they are cluster-wide, shared by every database of the
server): ``calibr_api`` and ``calibr_pipeline``. Neither owns a table nor has BYPASSRLS,
and both are NOLOGIN: the warehouse owner switches to one for a transaction with
``SET LOCAL ROLE`` (deployments may instead ``ALTER ROLE … LOGIN PASSWORD …`` and connect
as it). The tenant is a per-transaction setting, ``SET LOCAL app.tenant_id``.

Every table with a ``tenant_id`` column gets a policy keyed on it, every table with only a
``project_id`` a policy through ``projects``, and ``tenants`` one on its id. For
``calibr_api`` rows of other tenants (and tenant-less rows) do not exist; with no tenant set
it sees nothing. ``calibr_pipeline`` is scoped the same way when it sets a tenant and sees
every tenant when it does not (sensors and schedules work across tenants).

:func:`apply_row_level_security` runs after every upgrade (like the views), so a table a
later migration adds with a ``tenant_id`` or ``project_id`` is covered without more work.
"""

from __future__ import annotations

from sqlalchemy import bindparam, text
from sqlalchemy.engine import Connection

API_ROLE = "calibr_api"
PIPELINE_ROLE = "calibr_pipeline"
ROLES = (API_ROLE, PIPELINE_ROLE)
POLICY = "calibr_tenant_isolation"
TENANT_SETTING = "app.tenant_id"
# Session.info key: (role, tenant id) every transaction of that session starts with.
ACTING_AS = "calibr_acting_as"

_TENANT = f"NULLIF(current_setting('{TENANT_SETTING}', true), '')::bigint"
# Tables the API never needs to see (Alembic's bookkeeping) are left out.
_SKIPPED = {"alembic_version"}


def _create_role(connection: Connection, role: str) -> None:
    # Several test databases migrate at once: another may create the role between the
    # check and the CREATE, so a duplicate is expected and ignored.
    connection.execute(text(f"""
        DO $$
        BEGIN
          IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN
            CREATE ROLE {role} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
          END IF;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END $$;
    """))
    connection.execute(text(f"""
        DO $$
        BEGIN
          IF NOT pg_has_role(current_user, '{role}', 'MEMBER') THEN
            EXECUTE format('GRANT {role} TO %I', current_user);
          END IF;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END $$;
    """))


def tenant_tables(connection: Connection) -> tuple[list[str], list[str]]:
    """(tables with tenant_id, tables with project_id but no tenant_id) in the current schema."""
    rows = connection.execute(text("""
        SELECT c.table_name, c.column_name FROM information_schema.columns c
        JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
        WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE' AND c.column_name IN ('tenant_id', 'project_id')
    """)).all()
    columns: dict[str, set[str]] = {}
    for table, column in rows:
        if table not in _SKIPPED:
            columns.setdefault(table, set()).add(column)
    by_tenant = sorted(t for t, cols in columns.items() if "tenant_id" in cols)
    by_project = sorted(t for t, cols in columns.items() if "tenant_id" not in cols)
    return by_tenant, by_project


def apply_row_level_security(connection: Connection) -> None:
    """Idempotent: roles, grants and one policy per role and tenant-owned table (PostgreSQL only).

    Only what is missing is created: upgrades run often (every CLI command, every run's
    first session) and ALTER TABLE / CREATE POLICY lock the table.
    """
    if connection.dialect.name != "postgresql":
        return
    known_roles = set(connection.execute(text("SELECT rolname FROM pg_roles WHERE rolname IN :names").bindparams(
        bindparam("names", expanding=True)), {"names": list(ROLES)}).scalars())
    for role in ROLES:
        if role not in known_roles:
            _create_role(connection, role)
    schema = _schema(connection)
    missing_usage = [r for r in ROLES if not connection.execute(text("SELECT has_schema_privilege(:r, current_schema(), 'USAGE')"), {"r": r}).scalar()]
    if missing_usage:
        connection.execute(text(f"GRANT USAGE ON SCHEMA {schema} TO {', '.join(missing_usage)}"))
    for role in ROLES:
        _grant_missing(connection, schema, role, "pg_tables", "tablename", "has_table_privilege", "SELECT, INSERT, UPDATE, DELETE")
        _grant_missing(connection, schema, role, "pg_sequences", "sequencename", "has_sequence_privilege", "USAGE", "USAGE, SELECT", kind="SEQUENCE ")
    # The analyst views run with their owner's rights (no row-level security under them):
    # the pipeline, which works across tenants anyway, reads them; the API role never does.
    _grant_missing(connection, schema, PIPELINE_ROLE, "pg_views", "viewname", "has_table_privilege", "SELECT")
    by_tenant, by_project = tenant_tables(connection)
    predicates = {table: f"tenant_id = {_TENANT}" for table in by_tenant}
    predicates |= {
        table: f"project_id IN (SELECT p.id FROM projects p WHERE p.tenant_id = {_TENANT})" for table in by_project
    }
    predicates["tenants"] = f"id = {_TENANT}"
    existing = set(connection.execute(text("SELECT tablename, policyname FROM pg_policies WHERE schemaname = current_schema()")).all())
    secured = set(connection.execute(text(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND c.relrowsecurity"
    )).scalars())
    for table, predicate in sorted(predicates.items()):
        if table not in secured:
            connection.execute(text(f'ALTER TABLE "{table}" ENABLE ROW LEVEL SECURITY'))
        for role, policy, using in (
            (API_ROLE, POLICY, predicate),
            (PIPELINE_ROLE, POLICY + "_pipeline", f"{_TENANT} IS NULL OR ({predicate})"),
        ):
            if (table, policy) not in existing:
                connection.execute(text(f'CREATE POLICY "{policy}" ON "{table}" TO {role} USING ({using}) WITH CHECK ({using})'))


def _grant_missing(connection: Connection, schema: str, role: str, catalog: str, name: str, has_privilege: str, checked: str,
                   granted: str | None = None, *, kind: str = "") -> None:
    """GRANT ``granted`` (default: ``checked``) to ``role`` on each object of the schema listed
    in ``catalog`` that lacks ``checked``: only what is missing, so repeated upgrades lock nothing."""
    missing = connection.execute(text(
        f"SELECT {name} FROM {catalog} WHERE schemaname = current_schema() "
        f"AND NOT {has_privilege}(:r, quote_ident(schemaname) || '.' || quote_ident({name}), :p)"
    ), {"r": role, "p": checked}).scalars().all()
    for object_name in missing:
        connection.execute(text(f'GRANT {granted or checked} ON {kind}{schema}."{object_name}" TO {role}'))


def remove_row_level_security(connection: Connection) -> None:
    if connection.dialect.name != "postgresql":
        return
    for table, policy in connection.execute(text(
        "SELECT tablename, policyname FROM pg_policies WHERE schemaname = current_schema() AND policyname LIKE 'calibr_tenant_isolation%'"
    )).all():
        connection.execute(text(f'DROP POLICY "{policy}" ON "{table}"'))
        connection.execute(text(f'ALTER TABLE "{table}" DISABLE ROW LEVEL SECURITY'))
    # The roles stay: they are cluster-wide and other databases may use them.
    roles = ", ".join(ROLES)
    connection.execute(text(f"REVOKE ALL ON ALL TABLES IN SCHEMA {_schema(connection)} FROM {roles}"))
    connection.execute(text(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {_schema(connection)} FROM {roles}"))


def _schema(connection: Connection) -> str:
    return '"' + connection.execute(text("SELECT current_schema()")).scalar_one().replace('"', '""') + '"'


def act_as_tenant(session, tenant_id: int, *, role: str = API_ROLE) -> None:
    """For the rest of this session (every transaction it opens): act as ``role`` for
    ``tenant_id`` on PostgreSQL. Set before the first statement, it costs no round trip of
    its own: the transaction's start sets role and tenant together (warehouse/engine.py)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    session.info[ACTING_AS] = (role, int(tenant_id))
    if session.in_transaction():
        enter_tenant(session, tenant_id, role=role)


def enter_tenant(connection_or_session, tenant_id: int, *, role: str = API_ROLE) -> None:
    """For the rest of this transaction: act as ``role`` for ``tenant_id`` (PostgreSQL only)."""
    bind = connection_or_session.get_bind() if hasattr(connection_or_session, "get_bind") else connection_or_session
    if bind.dialect.name != "postgresql":
        return
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    # One round trip: set_config('role', …, true) is SET LOCAL ROLE.
    connection_or_session.execute(
        text(f"SELECT set_config('role', :role, true), set_config('{TENANT_SETTING}', :tenant, true)"),
        {"role": role, "tenant": str(int(tenant_id))},
    )

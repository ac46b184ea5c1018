"""copilot: audit table, tenant-scoped copilot views and the read-only copilot role

Revision ID: 0009
Revises: 0008

The copilot's model-written SQL reads only the ``copilot_*`` views created here (the SQL
policy in ``domain/copilot_sql.py`` maps the logical names a model sees onto them and
injects the tenant and project predicate). Every view carries ``tenant_id`` and
``project_id``. On PostgreSQL each view is also a ``security_barrier`` view that returns
only the rows of the tenant in ``app.tenant_id`` (``SET LOCAL`` by the executor; unset
means no rows), and the NOLOGIN role ``calibr_copilot_reader`` may SELECT these views and
nothing else. The role is cluster-wide, so it is created idempotently and race-safely
(several databases of one cluster migrate at once in the tests).

Unlike ``warehouse/views.py`` these views are not recreated on every upgrade: they carry
grants to the reader role, which a DROP/CREATE would lose.
"""

from alembic import op
import sqlalchemy as sa

import calibr_pipeline.warehouse.types


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

READER_ROLE = "calibr_copilot_reader"


def _views(dialect: str) -> dict[str, tuple[str, str]]:
    """name -> (SELECT ..., tenant column expression)."""
    # SQLite stores money as text and CAST(... AS NUMERIC) yields integers for whole amounts,
    # so model-written arithmetic would divide integers; REAL keeps it decimal. PostgreSQL stays exact.
    n = ("CAST({} AS REAL)" if dialect == "sqlite" else "CAST({} AS NUMERIC)").format
    page_title = "json_extract(o.extracted, '$.title')" if dialect == "sqlite" else "(o.extracted ->> 'title')"
    return {
        "copilot_catalog": (f"""
SELECT p.tenant_id, v.project_id, v.sku, pr.title AS product_title, v.title AS variant_title, pr.product_type, pr.vendor,
    v.currency, {n('v.price')} AS price, {n('v.cost')} AS cost, {n('v.map_price')} AS map_price,
    CASE WHEN v.cost IS NOT NULL AND {n('v.price')} > 0
         THEN ROUND({n(f"({n('v.price')} - {n('v.cost')}) * 100 / {n('v.price')}")}, 2) END AS margin_pct
FROM variants v
JOIN projects p ON p.id = v.project_id
JOIN products pr ON pr.id = v.product_id""", "p.tenant_id"),
        "copilot_market_position": (f"""
SELECT mp.tenant_id, mp.project_id, mp.position_date, v.sku, pr.title AS product_title, pr.product_type, pr.vendor, mp.currency,
    {n('mp.our_price')} AS our_price, {n('v.cost')} AS cost, mp.competitor_count, {n('mp.lowest_price')} AS lowest_price,
    {n('mp.median_price')} AS median_price, {n('mp.highest_price')} AS highest_price, {n('mp.spread_pct')} AS spread_pct,
    {n('mp.price_index')} AS price_index, mp.position, c.name AS lowest_competitor
FROM market_positions mp
JOIN variants v ON v.id = mp.variant_id
JOIN products pr ON pr.id = v.product_id
LEFT JOIN competitors c ON c.id = mp.lowest_competitor_id""", "mp.tenant_id"),
        "copilot_competitor_prices": (f"""
SELECT s.tenant_id, s.project_id, s.snapshot_date, v.sku, c.name AS competitor, c.domain, c.trusted,
    {n('s.amount')} AS amount, s.currency AS amount_currency, {n('s.amount_in_project_currency')} AS price,
    s.project_currency AS currency, s.on_sale, s.availability, {page_title} AS page_title
FROM normalized_price_snapshots s
JOIN variants v ON v.id = s.variant_id
JOIN competitors c ON c.id = s.competitor_id
JOIN competitor_price_observations o ON o.id = s.observation_id""", "s.tenant_id"),
        "copilot_rules": ("""
SELECT p.tenant_id, r.project_id, r.name, r.active, r.created_by, r.created_at, r.updated_at
FROM pricing_rules r
JOIN projects p ON p.id = r.project_id""", "p.tenant_id"),
        "copilot_rule_runs": ("""
SELECT r.tenant_id, r.project_id, r.id AS run_id, pr.name AS rule, r.kind, r.state, r.requested_by, r.queued_at, r.completed_at
FROM rule_runs r
LEFT JOIN pricing_rules pr ON pr.id = r.rule_id""", "r.tenant_id"),
        "copilot_rule_targets": (f"""
SELECT t.tenant_id, r.project_id, t.run_id, t.sku, t.currency, {n('t.from_price')} AS from_price, {n('t.to_price')} AS to_price,
    t.action, t.proposal_status, t.state, t.reason
FROM rule_targets t
JOIN rule_runs r ON r.id = t.run_id""", "t.tenant_id"),
        "copilot_price_changes": (f"""
SELECT a.tenant_id, a.project_id, a.created_at, a.run_id, a.sku, a.event_type, a.actor, {n('a.from_price')} AS from_price,
    {n('a.to_price')} AS to_price, a.currency
FROM price_audit a""", "a.tenant_id"),
    }


def upgrade() -> None:
    op.create_table('copilot_audit',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('project_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('entry_point', sa.String(length=16), nullable=False),
    sa.Column('command', sa.String(length=16), nullable=False),
    sa.Column('prompt', sa.Text(), nullable=False),
    sa.Column('backend', sa.String(length=32), nullable=False),
    sa.Column('model', sa.String(length=200), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('answer', sa.Text(), nullable=True),
    sa.Column('tool_calls', sa.JSON(), nullable=False),
    sa.Column('executed_sql', sa.JSON(), nullable=False),
    sa.Column('row_count', sa.Integer(), nullable=False),
    sa.Column('refusal_code', sa.String(length=64), nullable=True),
    sa.Column('refusal_reason', sa.Text(), nullable=True),
    sa.Column('rule_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('preview_run_id', sa.String(length=36), nullable=True),
    sa.Column('duration_ms', sa.Integer(), nullable=False),
    sa.Column('created_at', calibr_pipeline.warehouse.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_copilot_audit_project_id_projects')),
    sa.ForeignKeyConstraint(['rule_id'], ['pricing_rules.id'], name=op.f('fk_copilot_audit_rule_id_pricing_rules')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_copilot_audit_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_copilot_audit'))
    )
    with op.batch_alter_table('copilot_audit', schema=None) as batch_op:
        batch_op.create_index('ix_copilot_audit_tenant_time', ['tenant_id', 'created_at'], unique=False)

    dialect = op.get_bind().dialect.name
    for name, (select, tenant_column) in _views(dialect).items():
        if dialect == "postgresql":
            gate = f"\nWHERE {tenant_column} = NULLIF(current_setting('app.tenant_id', true), '')::bigint"
            op.execute(f"CREATE VIEW {name} WITH (security_barrier = true) AS{select}{gate}")
        else:
            op.execute(f"CREATE VIEW {name} AS{select}")
    if dialect == "postgresql":
        op.execute(f"""
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{READER_ROLE}') THEN
        BEGIN
            CREATE ROLE {READER_ROLE} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;  -- another database's migration won the race
        END;
    END IF;
    BEGIN
        EXECUTE format('GRANT {READER_ROLE} TO %I', current_user);
    EXCEPTION WHEN insufficient_privilege OR invalid_grant_operation THEN
        RAISE NOTICE 'cannot grant {READER_ROLE} to %: the copilot refuses SQL until a superuser does', current_user;
    END;
END
$$""")
        op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {READER_ROLE}")
        for name in _views(dialect):
            op.execute(f"GRANT SELECT ON {name} TO {READER_ROLE}")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for name in _views(dialect):
        op.execute(f"DROP VIEW IF EXISTS {name}")
    if dialect == "postgresql":
        # The role is cluster-wide and other databases may use it: it stays; its grants here went with the views.
        pass
    with op.batch_alter_table('copilot_audit', schema=None) as batch_op:
        batch_op.drop_index('ix_copilot_audit_tenant_time')
    op.drop_table('copilot_audit')

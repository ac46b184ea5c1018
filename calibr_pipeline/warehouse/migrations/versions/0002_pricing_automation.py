"""pricing automation

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 22:42:37.798588
"""
from alembic import op
import sqlalchemy as sa

import calibr_pipeline.warehouse.types


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('warehouse_meta',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_warehouse_meta'))
    )
    op.create_table('pricing_rules',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('project_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('definition', sa.JSON(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.Column('created_at', calibr_pipeline.warehouse.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', calibr_pipeline.warehouse.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_pricing_rules_project_id_projects')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pricing_rules')),
    sa.UniqueConstraint('project_id', 'name', name=op.f('uq_pricing_rules_project_id_name'))
    )
    with op.batch_alter_table('pricing_rules', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pricing_rules_project_id'), ['project_id'], unique=False)

    op.create_table('rule_runs',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('project_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('rule_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('source_run_id', sa.String(length=36), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('requested_by', sa.String(length=200), nullable=False),
    sa.Column('correlation_id', sa.String(length=64), nullable=False),
    sa.Column('rule_snapshot', sa.JSON(), nullable=True),
    sa.Column('queued_at', calibr_pipeline.warehouse.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('started_at', calibr_pipeline.warehouse.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('completed_at', calibr_pipeline.warehouse.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('failed_at', calibr_pipeline.warehouse.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('metadata', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_rule_runs_project_id_projects')),
    sa.ForeignKeyConstraint(['rule_id'], ['pricing_rules.id'], name=op.f('fk_rule_runs_rule_id_pricing_rules')),
    sa.ForeignKeyConstraint(['source_run_id'], ['rule_runs.id'], name=op.f('fk_rule_runs_source_run_id_rule_runs')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_rule_runs_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rule_runs'))
    )
    with op.batch_alter_table('rule_runs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rule_runs_state'), ['state'], unique=False)
        batch_op.create_index(batch_op.f('ix_rule_runs_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('rule_run_metrics',
    sa.Column('run_id', sa.String(length=36), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('targets_total', sa.Integer(), nullable=False),
    sa.Column('targets_write', sa.Integer(), nullable=False),
    sa.Column('targets_pending', sa.Integer(), nullable=False),
    sa.Column('targets_applying', sa.Integer(), nullable=False),
    sa.Column('targets_applied', sa.Integer(), nullable=False),
    sa.Column('targets_failed', sa.Integer(), nullable=False),
    sa.Column('success_rate', calibr_pipeline.warehouse.types.ExactDecimal(precision=20, scale=6), nullable=True),
    sa.Column('duration_seconds', calibr_pipeline.warehouse.types.ExactDecimal(precision=20, scale=6), nullable=True),
    sa.Column('dlq_size', sa.Integer(), nullable=False),
    sa.Column('throttled_count', sa.Integer(), nullable=False),
    sa.Column('retry_count', sa.Integer(), nullable=False),
    sa.Column('write_requests', sa.Integer(), nullable=False),
    sa.Column('computed_at', calibr_pipeline.warehouse.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['rule_runs.id'], name=op.f('fk_rule_run_metrics_run_id_rule_runs')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_rule_run_metrics_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('run_id', name=op.f('pk_rule_run_metrics'))
    )
    op.create_table('rule_targets',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('run_id', sa.String(length=36), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('variant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('sku', sa.String(length=200), nullable=False),
    sa.Column('product_external_id', sa.String(length=200), nullable=False),
    sa.Column('variant_external_id', sa.String(length=200), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('from_price', calibr_pipeline.warehouse.types.ExactDecimal(precision=20, scale=6), nullable=False),
    sa.Column('to_price', calibr_pipeline.warehouse.types.ExactDecimal(precision=20, scale=6), nullable=False),
    sa.Column('action', sa.String(length=8), nullable=False),
    sa.Column('proposal_status', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('max_attempts', sa.Integer(), nullable=False),
    sa.Column('last_attempt_at', calibr_pipeline.warehouse.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('error_code', sa.String(length=64), nullable=True),
    sa.Column('applied_at', calibr_pipeline.warehouse.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('idempotency_key', sa.String(length=120), nullable=False),
    sa.Column('explain', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['rule_runs.id'], name=op.f('fk_rule_targets_run_id_rule_runs')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_rule_targets_tenant_id_tenants')),
    sa.ForeignKeyConstraint(['variant_id'], ['variants.id'], name=op.f('fk_rule_targets_variant_id_variants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rule_targets')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_rule_targets_idempotency_key')),
    sa.UniqueConstraint('run_id', 'variant_id', name=op.f('uq_rule_targets_run_id_variant_id'))
    )
    with op.batch_alter_table('rule_targets', schema=None) as batch_op:
        batch_op.create_index('ix_rule_targets_run_state', ['run_id', 'state'], unique=False)

    op.create_table('price_audit',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('project_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('run_id', sa.String(length=36), nullable=False),
    sa.Column('target_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('variant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('sku', sa.String(length=200), nullable=False),
    sa.Column('event_type', sa.String(length=64), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('from_price', calibr_pipeline.warehouse.types.ExactDecimal(precision=20, scale=6), nullable=False),
    sa.Column('to_price', calibr_pipeline.warehouse.types.ExactDecimal(precision=20, scale=6), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('correlation_id', sa.String(length=64), nullable=False),
    sa.Column('idempotency_key', sa.String(length=120), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('created_at', calibr_pipeline.warehouse.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_price_audit_project_id_projects')),
    sa.ForeignKeyConstraint(['run_id'], ['rule_runs.id'], name=op.f('fk_price_audit_run_id_rule_runs')),
    sa.ForeignKeyConstraint(['target_id'], ['rule_targets.id'], name=op.f('fk_price_audit_target_id_rule_targets')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_price_audit_tenant_id_tenants')),
    sa.ForeignKeyConstraint(['variant_id'], ['variants.id'], name=op.f('fk_price_audit_variant_id_variants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_price_audit')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_price_audit_idempotency_key'))
    )
    with op.batch_alter_table('price_audit', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_price_audit_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_price_audit_run_id'), ['run_id'], unique=False)

    op.create_table('price_write_dlq',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('run_id', sa.String(length=36), nullable=False),
    sa.Column('target_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('error_type', sa.String(length=64), nullable=False),
    sa.Column('error_message', sa.Text(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', calibr_pipeline.warehouse.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('resolved_at', calibr_pipeline.warehouse.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('resolution', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['run_id'], ['rule_runs.id'], name=op.f('fk_price_write_dlq_run_id_rule_runs')),
    sa.ForeignKeyConstraint(['target_id'], ['rule_targets.id'], name=op.f('fk_price_write_dlq_target_id_rule_targets')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_price_write_dlq_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_price_write_dlq')),
    sa.UniqueConstraint('target_id', name=op.f('uq_price_write_dlq_target_id'))
    )
    with op.batch_alter_table('price_write_dlq', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_price_write_dlq_run_id'), ['run_id'], unique=False)

    op.create_table('reconciliation_mismatches',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('run_id', sa.String(length=36), nullable=False),
    sa.Column('target_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('sku', sa.String(length=200), nullable=False),
    sa.Column('expected_price', calibr_pipeline.warehouse.types.ExactDecimal(precision=20, scale=6), nullable=False),
    sa.Column('actual_price', calibr_pipeline.warehouse.types.ExactDecimal(precision=20, scale=6), nullable=True),
    sa.Column('difference', calibr_pipeline.warehouse.types.ExactDecimal(precision=20, scale=6), nullable=True),
    sa.Column('retry_run_id', sa.String(length=36), nullable=True),
    sa.Column('detected_at', calibr_pipeline.warehouse.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['rule_runs.id'], name=op.f('fk_reconciliation_mismatches_run_id_rule_runs')),
    sa.ForeignKeyConstraint(['target_id'], ['rule_targets.id'], name=op.f('fk_reconciliation_mismatches_target_id_rule_targets')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_reconciliation_mismatches_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reconciliation_mismatches'))
    )
    with op.batch_alter_table('reconciliation_mismatches', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_reconciliation_mismatches_run_id'), ['run_id'], unique=False)

    with op.batch_alter_table('event_log', schema=None) as batch_op:
        batch_op.add_column(sa.Column('project_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True))
        batch_op.add_column(sa.Column('run_id', sa.String(length=36), nullable=True))
        batch_op.create_index(batch_op.f('ix_event_log_run_id'), ['run_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_event_log_project_id_projects'), 'projects', ['project_id'], ['id'])

    with op.batch_alter_table('variants', schema=None) as batch_op:
        batch_op.add_column(sa.Column('map_price', calibr_pipeline.warehouse.types.ExactDecimal(precision=20, scale=6), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('variants', schema=None) as batch_op:
        batch_op.drop_column('map_price')

    with op.batch_alter_table('event_log', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_event_log_project_id_projects'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_event_log_run_id'))
        batch_op.drop_column('run_id')
        batch_op.drop_column('project_id')

    with op.batch_alter_table('reconciliation_mismatches', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_reconciliation_mismatches_run_id'))

    op.drop_table('reconciliation_mismatches')
    with op.batch_alter_table('price_write_dlq', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_price_write_dlq_run_id'))

    op.drop_table('price_write_dlq')
    with op.batch_alter_table('price_audit', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_price_audit_run_id'))
        batch_op.drop_index(batch_op.f('ix_price_audit_created_at'))

    op.drop_table('price_audit')
    with op.batch_alter_table('rule_targets', schema=None) as batch_op:
        batch_op.drop_index('ix_rule_targets_run_state')

    op.drop_table('rule_targets')
    op.drop_table('rule_run_metrics')
    with op.batch_alter_table('rule_runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rule_runs_tenant_id'))
        batch_op.drop_index(batch_op.f('ix_rule_runs_state'))

    op.drop_table('rule_runs')
    with op.batch_alter_table('pricing_rules', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_pricing_rules_project_id'))

    op.drop_table('pricing_rules')
    op.drop_table('warehouse_meta')

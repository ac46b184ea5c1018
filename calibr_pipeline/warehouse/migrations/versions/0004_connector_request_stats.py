"""connector request stats

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 23:18:09.975754
"""
from alembic import op
import sqlalchemy as sa

import calibr_pipeline.warehouse.types


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('connector_request_stats',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('connector', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('dagster_run_id', sa.String(length=64), nullable=False),
    sa.Column('minute', calibr_pipeline.warehouse.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('sum_seconds', sa.Float(), nullable=False),
    sa.Column('le_0_05', sa.Integer(), nullable=False),
    sa.Column('le_0_1', sa.Integer(), nullable=False),
    sa.Column('le_0_25', sa.Integer(), nullable=False),
    sa.Column('le_0_5', sa.Integer(), nullable=False),
    sa.Column('le_1', sa.Integer(), nullable=False),
    sa.Column('le_2_5', sa.Integer(), nullable=False),
    sa.Column('le_5', sa.Integer(), nullable=False),
    sa.Column('le_10', sa.Integer(), nullable=False),
    sa.Column('le_30', sa.Integer(), nullable=False),
    sa.Column('le_60', sa.Integer(), nullable=False),
    sa.Column('updated_at', calibr_pipeline.warehouse.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_connector_request_stats')),
    sa.UniqueConstraint('connector', 'status', 'tenant_id', 'dagster_run_id', 'minute', name='uq_connector_request_stats_key')
    )
    with op.batch_alter_table('connector_request_stats', schema=None) as batch_op:
        batch_op.create_index('ix_connector_request_stats_minute', ['minute'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('connector_request_stats', schema=None) as batch_op:
        batch_op.drop_index('ix_connector_request_stats_minute')
    op.drop_table('connector_request_stats')

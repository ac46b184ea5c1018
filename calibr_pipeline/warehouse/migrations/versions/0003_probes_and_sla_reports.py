"""probes and sla reports

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 23:09:10.567484
"""
from alembic import op
import sqlalchemy as sa

import calibr_pipeline.warehouse.types


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('probe_results',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('target', sa.String(length=200), nullable=False),
    sa.Column('url', sa.String(length=500), nullable=False),
    sa.Column('ok', sa.Boolean(), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=True),
    sa.Column('latency_ms', sa.Integer(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('probed_at', calibr_pipeline.warehouse.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_probe_results'))
    )
    with op.batch_alter_table('probe_results', schema=None) as batch_op:
        batch_op.create_index('ix_probe_results_target_time', ['target', 'probed_at'], unique=False)

    op.create_table('sla_reports',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('month', sa.Date(), nullable=False),
    sa.Column('target', sa.String(length=200), nullable=False),
    sa.Column('probes', sa.Integer(), nullable=False),
    sa.Column('successes', sa.Integer(), nullable=False),
    sa.Column('uptime_pct', calibr_pipeline.warehouse.types.ExactDecimal(precision=20, scale=6), nullable=True),
    sa.Column('sla_target_pct', calibr_pipeline.warehouse.types.ExactDecimal(precision=20, scale=6), nullable=False),
    sa.Column('met', sa.Boolean(), nullable=True),
    sa.Column('longest_outage_minutes', sa.Integer(), nullable=False),
    sa.Column('computed_at', calibr_pipeline.warehouse.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sla_reports')),
    sa.UniqueConstraint('month', 'target', name=op.f('uq_sla_reports_month_target'))
    )


def downgrade() -> None:
    op.drop_table('sla_reports')
    with op.batch_alter_table('probe_results', schema=None) as batch_op:
        batch_op.drop_index('ix_probe_results_target_time')

    op.drop_table('probe_results')

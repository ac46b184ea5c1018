"""cost history: the unit cost of each variant over time (variant_cost_history)

Revision ID: 0012
Revises: 0011

Margins in the analytics models use the cost valid on the order's day, so a cost change
read by a catalog sync no longer rewrites past margins. Existing variants get one row
each: their current cost, valid from the day of their last catalog change (the models
apply the first known cost to the days before it, as before this migration).
"""
from alembic import op
import sqlalchemy as sa

import calibr_pipeline.warehouse.types


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('variant_cost_history',
    sa.Column('variant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('valid_from', sa.Date(), nullable=False),
    sa.Column('valid_to', sa.Date(), nullable=True),
    sa.Column('project_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('cost', calibr_pipeline.warehouse.types.ExactDecimal(precision=20, scale=6), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('recorded_at', calibr_pipeline.warehouse.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_variant_cost_history_project_id_projects')),
    sa.ForeignKeyConstraint(['variant_id'], ['variants.id'], name=op.f('fk_variant_cost_history_variant_id_variants')),
    sa.PrimaryKeyConstraint('variant_id', 'valid_from', name=op.f('pk_variant_cost_history'))
    )
    op.create_index(op.f('ix_variant_cost_history_project_id'), 'variant_cost_history', ['project_id'], unique=False)
    # One row per existing variant: its cost now, from the day of its last catalog change.
    bind = op.get_bind()
    variants = sa.table('variants', sa.column('id'), sa.column('project_id'), sa.column('cost'), sa.column('currency'), sa.column('updated_at'))
    history = sa.table('variant_cost_history', sa.column('variant_id'), sa.column('valid_from', sa.Date()), sa.column('project_id'),
                       sa.column('cost'), sa.column('currency'), sa.column('recorded_at', calibr_pipeline.warehouse.types.UTCDateTime()))
    now = calibr_pipeline.warehouse.types.utcnow()
    rows = [
        {"variant_id": r.id, "valid_from": sa.Date().python_type.fromisoformat(str(r.updated_at)[:10]), "project_id": r.project_id,
         "cost": r.cost, "currency": r.currency, "recorded_at": now}
        for r in bind.execute(sa.select(variants))
    ]
    if rows:
        op.bulk_insert(history, rows)


def downgrade() -> None:
    op.drop_index(op.f('ix_variant_cost_history_project_id'), table_name='variant_cost_history')
    op.drop_table('variant_cost_history')

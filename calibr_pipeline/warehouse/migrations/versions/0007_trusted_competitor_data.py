"""Trusted competitor data: snapshot exclusion reason (FX), trust score, reasons, quarantine and project threshold

Revision ID: 0007
Revises: 0006

Issue 10 (trust score and quarantine per normalized snapshot) and issue 7 item 7 (a missing
or stale FX rate excludes the snapshot with a reason instead of failing the partition).
"""

import sqlalchemy as sa
from alembic import op

import calibr_pipeline.warehouse.types

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('projects', schema=None) as batch_op:
        batch_op.add_column(sa.Column('trust_threshold', calibr_pipeline.warehouse.types.ExactDecimal(precision=20, scale=6), nullable=True))
    with op.batch_alter_table('normalized_price_snapshots', schema=None) as batch_op:
        batch_op.add_column(sa.Column('excluded_reason', sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column('trust_score', calibr_pipeline.warehouse.types.ExactDecimal(precision=20, scale=6), nullable=True))
        batch_op.add_column(sa.Column('trust_reasons', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('quarantined', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('normalized_price_snapshots', schema=None) as batch_op:
        batch_op.drop_column('quarantined')
        batch_op.drop_column('trust_reasons')
        batch_op.drop_column('trust_score')
        batch_op.drop_column('excluded_reason')
    if op.get_bind().dialect.name == "sqlite":
        # Native DROP COLUMN (SQLite >= 3.35): a batch rebuild of `projects` would drop a
        # table other tables reference while foreign keys are enforced.
        op.execute("ALTER TABLE projects DROP COLUMN trust_threshold")
    else:
        op.drop_column('projects', 'trust_threshold')

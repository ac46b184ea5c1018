"""event registry versions, event archives, Stripe connector tables

Revision ID: 0008
Revises: 0007

``schema_version`` on outbox, event_log and outbox_dead_letters (existing rows are v1, the
only version that existed before the registry); ``event_archives`` (cold-storage manifests).
"""

from alembic import op
import sqlalchemy as sa

import calibr_pipeline.warehouse.types

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
UTC = calibr_pipeline.warehouse.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    for table in ('outbox', 'event_log'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('schema_version', sa.Integer(), server_default='1', nullable=False))
    with op.batch_alter_table('outbox_dead_letters', schema=None) as batch_op:
        batch_op.add_column(sa.Column('schema_version', sa.Integer(), nullable=True))

    op.create_table('event_archives',
    sa.Column('id', Id, nullable=False),
    sa.Column('source_table', sa.String(length=32), nullable=False),
    sa.Column('month', sa.String(length=7), nullable=False),
    sa.Column('tenant_key', sa.String(length=64), nullable=False),
    sa.Column('path', sa.String(length=1000), nullable=False),
    sa.Column('file_format', sa.String(length=16), nullable=False),
    sa.Column('row_count', sa.Integer(), nullable=False),
    sa.Column('first_id', sa.String(length=64), nullable=False),
    sa.Column('last_id', sa.String(length=64), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('archived_at', UTC, nullable=False),
    sa.Column('restored_at', UTC, nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_event_archives')),
    sa.UniqueConstraint('path', name=op.f('uq_event_archives_path')),
    )
    with op.batch_alter_table('event_archives', schema=None) as batch_op:
        batch_op.create_index('ix_event_archives_lookup', ['source_table', 'month', 'tenant_key'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('event_archives', schema=None) as batch_op:
        batch_op.drop_index('ix_event_archives_lookup')
    op.drop_table('event_archives')
    with op.batch_alter_table('outbox_dead_letters', schema=None) as batch_op:
        batch_op.drop_column('schema_version')
    for table in ('event_log', 'outbox'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('schema_version')

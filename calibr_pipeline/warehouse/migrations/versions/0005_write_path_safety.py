"""write-path safety: run leases, preview age, target backoff and skip states, DLQ retry count, drift

Revision ID: 0005
Revises: 0004

* ``rule_runs``: ``previewed_at`` (previews expire), ``lease_owner`` / ``lease_expires_at``
  (one writer per run, claimed by compare-and-set);
* ``rule_targets``: ``next_attempt_at`` (backoff between attempts) and a wider ``state``
  for the terminal skip states (SKIPPED_STALE, SKIPPED_GUARDRAIL, SKIPPED_SUPERSEDED);
* ``price_write_dlq``: ``retry_count`` / ``last_retry_at`` (the drain gives up);
* ``reconciliation_mismatches``: ``kind`` (lost_write | drift | missing).
"""
from alembic import op
import sqlalchemy as sa

import calibr_pipeline.warehouse.types


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('rule_runs') as batch:
        batch.add_column(sa.Column('previewed_at', calibr_pipeline.warehouse.types.UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('lease_owner', sa.String(length=120), nullable=True))
        batch.add_column(sa.Column('lease_expires_at', calibr_pipeline.warehouse.types.UTCDateTime(timezone=True), nullable=True))
    with op.batch_alter_table('rule_targets') as batch:
        batch.add_column(sa.Column('next_attempt_at', calibr_pipeline.warehouse.types.UTCDateTime(timezone=True), nullable=True))
        batch.alter_column('state', existing_type=sa.String(length=16), type_=sa.String(length=24), existing_nullable=True)
    with op.batch_alter_table('price_write_dlq') as batch:
        batch.add_column(sa.Column('retry_count', sa.Integer(), nullable=False, server_default='0'))
        batch.add_column(sa.Column('last_retry_at', calibr_pipeline.warehouse.types.UTCDateTime(timezone=True), nullable=True))
    with op.batch_alter_table('reconciliation_mismatches') as batch:
        batch.add_column(sa.Column('kind', sa.String(length=16), nullable=False, server_default='lost_write'))


def downgrade() -> None:
    with op.batch_alter_table('reconciliation_mismatches') as batch:
        batch.drop_column('kind')
    with op.batch_alter_table('price_write_dlq') as batch:
        batch.drop_column('last_retry_at')
        batch.drop_column('retry_count')
    with op.batch_alter_table('rule_targets') as batch:
        batch.alter_column('state', existing_type=sa.String(length=24), type_=sa.String(length=16), existing_nullable=True)
        batch.drop_column('next_attempt_at')
    with op.batch_alter_table('rule_runs') as batch:
        batch.drop_column('lease_expires_at')
        batch.drop_column('lease_owner')
        batch.drop_column('previewed_at')

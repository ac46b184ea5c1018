"""event registry versions, event archives, Stripe connector tables

Revision ID: 0008
Revises: 0007

``schema_version`` on outbox, event_log and outbox_dead_letters (existing rows are v1, the
only version that existed before the registry); ``event_archives`` (cold-storage manifests);
the Stripe connector's tables (created whatever the flag, empty while it is off).
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
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('schema_version', sa.Integer(), server_default='1', nullable=False))
    # On SQLite event_log is rebuilt with AUTOINCREMENT: archival deletes old rows, and
    # without it SQLite would hand a deleted (archived) row's id to the next event.
    is_sqlite = op.get_bind().dialect.name == 'sqlite'
    with op.batch_alter_table('event_log', schema=None, recreate='always' if is_sqlite else 'auto',
                              table_kwargs={'sqlite_autoincrement': True} if is_sqlite else {}) as batch_op:
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

    # --- Stripe connector ---------------------------------------------------------------
    op.create_table('stripe_sync_cursors',
    sa.Column('id', Id, nullable=False),
    sa.Column('account_id', sa.String(length=64), nullable=False),
    sa.Column('object_kind', sa.String(length=32), nullable=False),
    sa.Column('created_cursor', sa.BigInteger(), nullable=False),
    sa.Column('synced_at', UTC, nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stripe_sync_cursors')),
    sa.UniqueConstraint('account_id', 'object_kind', name=op.f('uq_stripe_sync_cursors_account_id_object_kind'))
    )
    op.create_table('stripe_webhook_rejections',
    sa.Column('id', Id, nullable=False),
    sa.Column('reason', sa.String(length=32), nullable=False),
    sa.Column('received_at', UTC, nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stripe_webhook_rejections'))
    )
    op.create_index(op.f('ix_stripe_webhook_rejections_received_at'), 'stripe_webhook_rejections', ['received_at'], unique=False)
    op.create_table('stripe_accounts',
    sa.Column('id', Id, nullable=False),
    sa.Column('tenant_id', Id, nullable=False),
    sa.Column('account_id', sa.String(length=64), nullable=False),
    sa.Column('access_token_sealed', sa.Text(), nullable=False),
    sa.Column('refresh_token_sealed', sa.Text(), nullable=True),
    sa.Column('scope', sa.String(length=32), nullable=False),
    sa.Column('livemode', sa.Boolean(), nullable=False),
    sa.Column('connected_at', UTC, nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_stripe_accounts_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stripe_accounts')),
    sa.UniqueConstraint('account_id', name=op.f('uq_stripe_accounts_account_id'))
    )
    op.create_index(op.f('ix_stripe_accounts_tenant_id'), 'stripe_accounts', ['tenant_id'], unique=False)
    op.create_table('stripe_sync_runs',
    sa.Column('id', Id, nullable=False),
    sa.Column('tenant_id', Id, nullable=False),
    sa.Column('account_id', sa.String(length=64), nullable=False),
    sa.Column('sync_date', sa.Date(), nullable=False),
    sa.Column('started_at', UTC, nullable=False),
    sa.Column('seconds', sa.Float(), nullable=False),
    sa.Column('objects', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_stripe_sync_runs_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stripe_sync_runs'))
    )
    op.create_index(op.f('ix_stripe_sync_runs_started_at'), 'stripe_sync_runs', ['started_at'], unique=False)
    op.create_table('stripe_webhook_events',
    sa.Column('id', Id, nullable=False),
    sa.Column('event_id', sa.String(length=64), nullable=False),
    sa.Column('event_type', sa.String(length=100), nullable=False),
    sa.Column('account_id', sa.String(length=64), nullable=True),
    sa.Column('tenant_id', Id, nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('outbox_id', sa.String(length=36), nullable=True),
    sa.Column('received_at', UTC, nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_stripe_webhook_events_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stripe_webhook_events')),
    sa.UniqueConstraint('event_id', name=op.f('uq_stripe_webhook_events_event_id'))
    )
    op.create_table('transactions',
    sa.Column('id', Id, nullable=False),
    sa.Column('tenant_id', Id, nullable=False),
    sa.Column('account_id', sa.String(length=64), nullable=False),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('stripe_id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=64), nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('fee_minor', sa.BigInteger(), nullable=True),
    sa.Column('net_minor', sa.BigInteger(), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('occurred_at', UTC, nullable=False),
    sa.Column('occurred_date', sa.Date(), nullable=False),
    sa.Column('payment_intent_id', sa.String(length=64), nullable=True),
    sa.Column('description', sa.String(length=500), nullable=True),
    sa.Column('synced_at', UTC, nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_transactions_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_transactions')),
    sa.UniqueConstraint('stripe_id', name=op.f('uq_transactions_stripe_id'))
    )
    op.create_index('ix_transactions_tenant_date', 'transactions', ['tenant_id', 'occurred_date', 'source'], unique=False)
    op.create_table('stripe_product_map',
    sa.Column('id', Id, nullable=False),
    sa.Column('tenant_id', Id, nullable=False),
    sa.Column('account_id', sa.String(length=64), nullable=False),
    sa.Column('stripe_product_id', sa.String(length=64), nullable=False),
    sa.Column('stripe_price_id', sa.String(length=64), nullable=False),
    sa.Column('product_name', sa.String(length=500), nullable=True),
    sa.Column('sku', sa.String(length=200), nullable=True),
    sa.Column('variant_id', Id, nullable=True),
    sa.Column('match_source', sa.String(length=16), nullable=False),
    sa.Column('unit_amount_minor', sa.BigInteger(), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=True),
    sa.Column('updated_at', UTC, nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_stripe_product_map_tenant_id_tenants')),
    sa.ForeignKeyConstraint(['variant_id'], ['variants.id'], name=op.f('fk_stripe_product_map_variant_id_variants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stripe_product_map')),
    sa.UniqueConstraint('account_id', 'stripe_product_id', 'stripe_price_id', name='uq_stripe_product_map_key')
    )
    op.create_index(op.f('ix_stripe_product_map_tenant_id'), 'stripe_product_map', ['tenant_id'], unique=False)


def downgrade() -> None:
    for table in ('stripe_product_map', 'transactions', 'stripe_webhook_events', 'stripe_sync_runs', 'stripe_accounts',
                  'stripe_webhook_rejections', 'stripe_sync_cursors'):
        op.drop_table(table)
    with op.batch_alter_table('event_archives', schema=None) as batch_op:
        batch_op.drop_index('ix_event_archives_lookup')
    op.drop_table('event_archives')
    with op.batch_alter_table('outbox_dead_letters', schema=None) as batch_op:
        batch_op.drop_column('schema_version')
    for table in ('event_log', 'outbox'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('schema_version')  # event_log keeps AUTOINCREMENT on SQLite (harmless)

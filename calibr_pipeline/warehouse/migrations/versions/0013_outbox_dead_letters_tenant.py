"""outbox_dead_letters.tenant_id: a dead-lettered event belongs to its tenant, like the outbox

Revision ID: 0013
Revises: 0012

With a tenant_id the table falls under row-level security on PostgreSQL (warehouse/rls.py,
re-applied after every upgrade): the API role sees only its tenant's dead letters. Existing
rows take the tenant of the outbox event they came from; events that had none (a malformed
event without a tenant) keep NULL, which only the pipeline sees.
"""
from alembic import op
import sqlalchemy as sa


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outbox_dead_letters') as batch:
        batch.add_column(sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True))
        batch.create_foreign_key('fk_outbox_dead_letters_tenant_id_tenants', 'tenants', ['tenant_id'], ['id'])
        batch.create_index('ix_outbox_dead_letters_tenant_id', ['tenant_id'])
    op.execute(
        "UPDATE outbox_dead_letters SET tenant_id = "
        "(SELECT outbox.tenant_id FROM outbox WHERE outbox.id = outbox_dead_letters.outbox_id)"
    )


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        # The row-level security policies on the table read tenant_id: they go first.
        policies = bind.execute(sa.text(
            "SELECT policyname FROM pg_policies WHERE schemaname = current_schema() AND tablename = 'outbox_dead_letters'"
        )).scalars().all()
        for policy in policies:
            op.execute(f'DROP POLICY "{policy}" ON outbox_dead_letters')
        op.execute("ALTER TABLE outbox_dead_letters DISABLE ROW LEVEL SECURITY")
    with op.batch_alter_table('outbox_dead_letters') as batch:
        batch.drop_index('ix_outbox_dead_letters_tenant_id')
        batch.drop_constraint('fk_outbox_dead_letters_tenant_id_tenants', type_='foreignkey')
        batch.drop_column('tenant_id')

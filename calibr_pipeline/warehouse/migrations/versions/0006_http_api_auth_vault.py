"""HTTP API tokens and the secrets vault (issue 13)

Revision ID: 0006
Revises: 0005

- ``api_tokens``: per-tenant API tokens, stored as SHA-256 hashes only; index
  ``ix_rule_targets_run_id_id`` for the API's target pages.
- every plaintext ``shops.access_token`` is encrypted with the vault's key (calibr_pipeline.secrets; the key file is created if there is none).
- PostgreSQL: roles ``calibr_api`` and ``calibr_pipeline`` (idempotent; not owners, no
  BYPASSRLS) and row-level security on every tenant-owned table (warehouse/rls.py).
"""
from alembic import op
import sqlalchemy as sa

import calibr_pipeline.warehouse.types

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
UTC = calibr_pipeline.warehouse.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table('api_tokens',
    sa.Column('id', Id, nullable=False),
    sa.Column('tenant_id', Id, nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('token_prefix', sa.String(length=16), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('scope', sa.String(length=8), nullable=False),
    sa.Column('rate_limit_per_minute', sa.Integer(), nullable=True),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.Column('created_at', UTC, nullable=False),
    sa.Column('expires_at', UTC, nullable=True),
    sa.Column('revoked_at', UTC, nullable=True),
    sa.Column('last_used_at', UTC, nullable=True),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_api_tokens_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_api_tokens_token_hash')),
    )
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_tokens_tenant_id'), ['tenant_id'], unique=False)
    with op.batch_alter_table('rule_targets', schema=None) as batch_op:
        batch_op.create_index('ix_rule_targets_run_id_id', ['run_id', 'id'], unique=False)
    _encrypt_shop_tokens()
    from calibr_pipeline.warehouse.rls import apply_row_level_security

    apply_row_level_security(op.get_bind())


def _encrypt_shop_tokens() -> None:
    bind = op.get_bind()
    shops = sa.table('shops', sa.column('id', sa.Integer()), sa.column('access_token', sa.Text()))
    rows = bind.execute(sa.select(shops.c.id, shops.c.access_token).where(shops.c.access_token.is_not(None))).all()
    plaintext = [(shop_id, token) for shop_id, token in rows if not token.startswith('fernet:')]
    if not plaintext:
        return
    from calibr_pipeline.secrets.vault import current_vault

    vault = current_vault()
    for shop_id, token in plaintext:
        bind.execute(shops.update().where(shops.c.id == shop_id).values(access_token=vault.encrypt(token)))


def _decrypt_shop_tokens() -> None:
    bind = op.get_bind()
    shops = sa.table('shops', sa.column('id', sa.Integer()), sa.column('access_token', sa.Text()))
    rows = bind.execute(sa.select(shops.c.id, shops.c.access_token).where(shops.c.access_token.like('fernet:%'))).all()
    if rows:
        from calibr_pipeline.secrets.vault import current_vault

        vault = current_vault()
        for shop_id, token in rows:
            bind.execute(shops.update().where(shops.c.id == shop_id).values(access_token=vault.decrypt(token)))


def downgrade() -> None:
    from calibr_pipeline.warehouse.rls import remove_row_level_security

    remove_row_level_security(op.get_bind())
    _decrypt_shop_tokens()
    with op.batch_alter_table('rule_targets', schema=None) as batch_op:
        batch_op.drop_index('ix_rule_targets_run_id_id')
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_tokens_tenant_id'))
    op.drop_table('api_tokens')

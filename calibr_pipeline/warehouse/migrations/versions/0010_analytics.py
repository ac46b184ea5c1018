"""analytics: orders, order lines, refund lines, rejected order records, competitor trend flags, weekly digests, Amazon accounts, SKU map, competitive prices

Revision ID: 0010
Revises: 0009
"""
from alembic import op
import sqlalchemy as sa

import calibr_pipeline.warehouse.types


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('weekly_digests',
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('week_start', sa.Date(), nullable=False),
    sa.Column('markdown', sa.Text(), nullable=False),
    sa.Column('charts', sa.JSON(), nullable=False),
    sa.Column('directory', sa.String(length=1000), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_weekly_digests_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'week_start', name=op.f('pk_weekly_digests'))
    )
    op.create_table('amazon_accounts',
    sa.Column('shop_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('seller_id', sa.String(length=64), nullable=False),
    sa.Column('marketplace_id', sa.String(length=32), nullable=False),
    sa.Column('token_url', sa.String(length=500), nullable=False),
    sa.Column('client_id', sa.String(length=200), nullable=False),
    sa.Column('sealed_credentials', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_amazon_accounts_shop_id_shops')),
    sa.PrimaryKeyConstraint('shop_id', name=op.f('pk_amazon_accounts'))
    )
    op.create_table('order_refund_lines',
    sa.Column('shop_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('refund_external_id', sa.String(length=200), nullable=False),
    sa.Column('line_external_id', sa.String(length=200), nullable=False),
    sa.Column('order_external_id', sa.String(length=200), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('project_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('refunded_at', calibr_pipeline.warehouse.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('refund_day', sa.Date(), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('amount', calibr_pipeline.warehouse.types.ExactDecimal(precision=20, scale=6), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_order_refund_lines_project_id_projects')),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_order_refund_lines_shop_id_shops')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_order_refund_lines_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('shop_id', 'refund_external_id', 'line_external_id', name=op.f('pk_order_refund_lines'))
    )
    op.create_index('ix_order_refund_lines_order', 'order_refund_lines', ['shop_id', 'order_external_id'], unique=False)
    op.create_table('order_sync_errors',
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('partition_day', sa.Date(), nullable=False),
    sa.Column('shop_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('channel', sa.String(length=32), nullable=False),
    sa.Column('external_id', sa.String(length=200), nullable=True),
    sa.Column('field', sa.String(length=200), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_order_sync_errors_shop_id_shops')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_order_sync_errors_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'partition_day', 'shop_id', 'position', name=op.f('pk_order_sync_errors'))
    )
    op.create_table('orders',
    sa.Column('shop_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('external_id', sa.String(length=200), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('project_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('channel', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('order_day', sa.Date(), nullable=False),
    sa.Column('created_at', calibr_pipeline.warehouse.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', calibr_pipeline.warehouse.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('cancelled_at', calibr_pipeline.warehouse.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('test', sa.Boolean(), nullable=False),
    sa.Column('source_name', sa.String(length=100), nullable=True),
    sa.Column('synced_day', sa.Date(), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_orders_project_id_projects')),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_orders_shop_id_shops')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_orders_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('shop_id', 'external_id', name=op.f('pk_orders'))
    )
    op.create_index('ix_orders_project_day', 'orders', ['project_id', 'order_day'], unique=False)
    op.create_table('amazon_competitive_prices',
    sa.Column('shop_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('asin', sa.String(length=20), nullable=False),
    sa.Column('price_day', sa.Date(), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('project_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('variant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('landed_price', calibr_pipeline.warehouse.types.ExactDecimal(precision=20, scale=6), nullable=True),
    sa.Column('listing_price', calibr_pipeline.warehouse.types.ExactDecimal(precision=20, scale=6), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=True),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_amazon_competitive_prices_project_id_projects')),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_amazon_competitive_prices_shop_id_shops')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_amazon_competitive_prices_tenant_id_tenants')),
    sa.ForeignKeyConstraint(['variant_id'], ['variants.id'], name=op.f('fk_amazon_competitive_prices_variant_id_variants')),
    sa.PrimaryKeyConstraint('shop_id', 'asin', 'price_day', name=op.f('pk_amazon_competitive_prices'))
    )
    op.create_table('amazon_sku_map',
    sa.Column('shop_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('seller_sku', sa.String(length=200), nullable=False),
    sa.Column('asin', sa.String(length=20), nullable=False),
    sa.Column('variant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_amazon_sku_map_shop_id_shops')),
    sa.ForeignKeyConstraint(['variant_id'], ['variants.id'], name=op.f('fk_amazon_sku_map_variant_id_variants')),
    sa.PrimaryKeyConstraint('shop_id', 'seller_sku', name=op.f('pk_amazon_sku_map'))
    )
    op.create_table('order_lines',
    sa.Column('shop_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('external_id', sa.String(length=200), nullable=False),
    sa.Column('order_external_id', sa.String(length=200), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('project_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('channel', sa.String(length=32), nullable=False),
    sa.Column('order_day', sa.Date(), nullable=False),
    sa.Column('variant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('variant_external_id', sa.String(length=200), nullable=True),
    sa.Column('sku', sa.String(length=200), nullable=True),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('original_unit_price', calibr_pipeline.warehouse.types.ExactDecimal(precision=20, scale=6), nullable=False),
    sa.Column('discounted_unit_price', calibr_pipeline.warehouse.types.ExactDecimal(precision=20, scale=6), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_order_lines_project_id_projects')),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_order_lines_shop_id_shops')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_order_lines_tenant_id_tenants')),
    sa.ForeignKeyConstraint(['variant_id'], ['variants.id'], name=op.f('fk_order_lines_variant_id_variants')),
    sa.PrimaryKeyConstraint('shop_id', 'external_id', name=op.f('pk_order_lines'))
    )
    op.create_index('ix_order_lines_order', 'order_lines', ['shop_id', 'order_external_id'], unique=False)
    op.create_index('ix_order_lines_project_day', 'order_lines', ['project_id', 'order_day'], unique=False)
    op.create_table('competitor_trends',
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('as_of_day', sa.Date(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('variant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('sku', sa.String(length=200), nullable=False),
    sa.Column('competitor_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('listing_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('flag', sa.String(length=32), nullable=False),
    sa.Column('direction', sa.String(length=8), nullable=False),
    sa.Column('window_days', sa.Integer(), nullable=False),
    sa.Column('size_pct', sa.Float(), nullable=False),
    sa.Column('statistic', sa.Float(), nullable=True),
    sa.Column('explanation', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['competitor_id'], ['competitors.id'], name=op.f('fk_competitor_trends_competitor_id_competitors')),
    sa.ForeignKeyConstraint(['listing_id'], ['competitor_listings.id'], name=op.f('fk_competitor_trends_listing_id_competitor_listings')),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_competitor_trends_project_id_projects')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_competitor_trends_tenant_id_tenants')),
    sa.ForeignKeyConstraint(['variant_id'], ['variants.id'], name=op.f('fk_competitor_trends_variant_id_variants')),
    sa.PrimaryKeyConstraint('tenant_id', 'as_of_day', 'position', name=op.f('pk_competitor_trends'))
    )


def downgrade() -> None:
    op.drop_table('competitor_trends')
    op.drop_index('ix_order_lines_project_day', table_name='order_lines')
    op.drop_index('ix_order_lines_order', table_name='order_lines')
    op.drop_table('order_lines')
    op.drop_table('amazon_sku_map')
    op.drop_table('amazon_competitive_prices')
    op.drop_index('ix_orders_project_day', table_name='orders')
    op.drop_table('orders')
    op.drop_table('order_sync_errors')
    op.drop_index('ix_order_refund_lines_order', table_name='order_refund_lines')
    op.drop_table('order_refund_lines')
    op.drop_table('amazon_accounts')
    op.drop_table('weekly_digests')

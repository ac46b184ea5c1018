"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-23 22:14:04.970223
"""
from alembic import op
import sqlalchemy as sa

import calibr_pipeline.warehouse.types


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('fx_rates',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('rate_date', sa.Date(), nullable=False),
    sa.Column('base_currency', sa.String(length=3), nullable=False),
    sa.Column('quote_currency', sa.String(length=3), nullable=False),
    sa.Column('rate', calibr_pipeline.warehouse.types.ExactDecimal(precision=20, scale=6), nullable=False),
    sa.Column('source', sa.String(length=100), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_fx_rates')),
    sa.UniqueConstraint('rate_date', 'base_currency', 'quote_currency', name=op.f('uq_fx_rates_rate_date_base_currency_quote_currency'))
    )
    op.create_table('outbox_dead_letters',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('outbox_id', sa.String(length=36), nullable=False),
    sa.Column('event_type', sa.String(length=100), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('created_at', calibr_pipeline.warehouse.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox_dead_letters')),
    sa.UniqueConstraint('outbox_id', name=op.f('uq_outbox_dead_letters_outbox_id'))
    )
    op.create_table('tenants',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('slug', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('created_at', calibr_pipeline.warehouse.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tenants')),
    sa.UniqueConstraint('slug', name=op.f('uq_tenants_slug'))
    )
    op.create_table('alert_deliveries',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('title', sa.String(length=500), nullable=False),
    sa.Column('source', sa.String(length=300), nullable=False),
    sa.Column('destination', sa.String(length=64), nullable=False),
    sa.Column('ok', sa.Boolean(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', calibr_pipeline.warehouse.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_alert_deliveries_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_deliveries'))
    )
    op.create_table('event_log',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('event_type', sa.String(length=100), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('correlation_id', sa.String(length=64), nullable=True),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('created_at', calibr_pipeline.warehouse.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_event_log_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_event_log'))
    )
    with op.batch_alter_table('event_log', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_event_log_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_event_log_event_type'), ['event_type'], unique=False)
        batch_op.create_index(batch_op.f('ix_event_log_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('outbox',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('event_type', sa.String(length=100), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('created_at', calibr_pipeline.warehouse.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('dispatched_at', calibr_pipeline.warehouse.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('dispatched_run_key', sa.String(length=100), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_outbox_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox'))
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_pending', ['dispatched_at', 'created_at'], unique=False)

    op.create_table('projects',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('slug', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('created_at', calibr_pipeline.warehouse.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_projects_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_projects')),
    sa.UniqueConstraint('slug', name=op.f('uq_projects_slug'))
    )
    with op.batch_alter_table('projects', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_projects_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('competitors',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('project_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('domain', sa.String(length=300), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=True),
    sa.Column('trusted', sa.Boolean(), nullable=False),
    sa.Column('created_at', calibr_pipeline.warehouse.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_competitors_project_id_projects')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_competitors')),
    sa.UniqueConstraint('project_id', 'domain', name=op.f('uq_competitors_project_id_domain'))
    )
    with op.batch_alter_table('competitors', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_competitors_project_id'), ['project_id'], unique=False)

    op.create_table('shops',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('project_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('platform', sa.String(length=32), nullable=False),
    sa.Column('admin_endpoint', sa.String(length=500), nullable=True),
    sa.Column('api_version', sa.String(length=16), nullable=True),
    sa.Column('access_token', sa.String(length=500), nullable=True),
    sa.Column('rate_limit_preset', sa.String(length=32), nullable=True),
    sa.Column('catalog_csv_path', sa.String(length=1000), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('created_at', calibr_pipeline.warehouse.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_shops_project_id_projects')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_shops')),
    sa.UniqueConstraint('project_id', 'name', name=op.f('uq_shops_project_id_name'))
    )
    with op.batch_alter_table('shops', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_shops_project_id'), ['project_id'], unique=False)

    op.create_table('products',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('shop_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('project_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('external_id', sa.String(length=200), nullable=False),
    sa.Column('title', sa.String(length=500), nullable=False),
    sa.Column('product_type', sa.String(length=200), nullable=True),
    sa.Column('vendor', sa.String(length=200), nullable=True),
    sa.Column('tags', sa.JSON(), nullable=False),
    sa.Column('updated_at', calibr_pipeline.warehouse.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_products_project_id_projects')),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_products_shop_id_shops')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_products')),
    sa.UniqueConstraint('shop_id', 'external_id', name=op.f('uq_products_shop_id_external_id'))
    )
    with op.batch_alter_table('products', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_products_project_id'), ['project_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_products_shop_id'), ['shop_id'], unique=False)

    op.create_table('variants',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('product_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('shop_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('project_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('external_id', sa.String(length=200), nullable=False),
    sa.Column('sku', sa.String(length=200), nullable=False),
    sa.Column('title', sa.String(length=500), nullable=True),
    sa.Column('price', calibr_pipeline.warehouse.types.ExactDecimal(precision=20, scale=6), nullable=False),
    sa.Column('compare_at_price', calibr_pipeline.warehouse.types.ExactDecimal(precision=20, scale=6), nullable=True),
    sa.Column('cost', calibr_pipeline.warehouse.types.ExactDecimal(precision=20, scale=6), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('updated_at', calibr_pipeline.warehouse.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['product_id'], ['products.id'], name=op.f('fk_variants_product_id_products')),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_variants_project_id_projects')),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_variants_shop_id_shops')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_variants')),
    sa.UniqueConstraint('project_id', 'sku', name=op.f('uq_variants_project_id_sku')),
    sa.UniqueConstraint('shop_id', 'external_id', name=op.f('uq_variants_shop_id_external_id'))
    )
    with op.batch_alter_table('variants', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_variants_product_id'), ['product_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_variants_shop_id'), ['shop_id'], unique=False)

    op.create_table('competitor_listings',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('project_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('competitor_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('variant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('url', sa.String(length=2000), nullable=False),
    sa.Column('page_kind', sa.String(length=16), nullable=False),
    sa.Column('variant_hint', sa.String(length=200), nullable=True),
    sa.Column('match_type', sa.String(length=16), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', calibr_pipeline.warehouse.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['competitor_id'], ['competitors.id'], name=op.f('fk_competitor_listings_competitor_id_competitors')),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_competitor_listings_project_id_projects')),
    sa.ForeignKeyConstraint(['variant_id'], ['variants.id'], name=op.f('fk_competitor_listings_variant_id_variants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_competitor_listings')),
    sa.UniqueConstraint('variant_id', 'url', name=op.f('uq_competitor_listings_variant_id_url'))
    )
    with op.batch_alter_table('competitor_listings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_competitor_listings_competitor_id'), ['competitor_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_competitor_listings_project_id'), ['project_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_competitor_listings_variant_id'), ['variant_id'], unique=False)

    op.create_table('market_positions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('project_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('variant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('position_date', sa.Date(), nullable=False),
    sa.Column('our_price', calibr_pipeline.warehouse.types.ExactDecimal(precision=20, scale=6), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('competitor_count', sa.Integer(), nullable=False),
    sa.Column('lowest_price', calibr_pipeline.warehouse.types.ExactDecimal(precision=20, scale=6), nullable=True),
    sa.Column('highest_price', calibr_pipeline.warehouse.types.ExactDecimal(precision=20, scale=6), nullable=True),
    sa.Column('median_price', calibr_pipeline.warehouse.types.ExactDecimal(precision=20, scale=6), nullable=True),
    sa.Column('spread', calibr_pipeline.warehouse.types.ExactDecimal(precision=20, scale=6), nullable=True),
    sa.Column('spread_pct', calibr_pipeline.warehouse.types.ExactDecimal(precision=20, scale=6), nullable=True),
    sa.Column('position', sa.String(length=16), nullable=False),
    sa.Column('lowest_competitor_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('price_index', calibr_pipeline.warehouse.types.ExactDecimal(precision=20, scale=6), nullable=True),
    sa.Column('computed_at', calibr_pipeline.warehouse.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['lowest_competitor_id'], ['competitors.id'], name=op.f('fk_market_positions_lowest_competitor_id_competitors')),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_market_positions_project_id_projects')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_market_positions_tenant_id_tenants')),
    sa.ForeignKeyConstraint(['variant_id'], ['variants.id'], name=op.f('fk_market_positions_variant_id_variants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_market_positions')),
    sa.UniqueConstraint('variant_id', 'position_date', name=op.f('uq_market_positions_variant_id_position_date'))
    )
    with op.batch_alter_table('market_positions', schema=None) as batch_op:
        batch_op.create_index('ix_market_positions_tenant_date', ['tenant_id', 'position_date'], unique=False)
        batch_op.create_index(batch_op.f('ix_market_positions_variant_id'), ['variant_id'], unique=False)

    op.create_table('competitor_price_observations',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('project_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('listing_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('observation_date', sa.Date(), nullable=False),
    sa.Column('dagster_run_id', sa.String(length=64), nullable=True),
    sa.Column('url', sa.String(length=2000), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('http_status', sa.Integer(), nullable=True),
    sa.Column('error_class', sa.String(length=32), nullable=True),
    sa.Column('error_message', sa.Text(), nullable=True),
    sa.Column('amount', calibr_pipeline.warehouse.types.ExactDecimal(precision=20, scale=6), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=True),
    sa.Column('regular_amount', calibr_pipeline.warehouse.types.ExactDecimal(precision=20, scale=6), nullable=True),
    sa.Column('availability', sa.String(length=16), nullable=True),
    sa.Column('extraction_source', sa.String(length=32), nullable=True),
    sa.Column('extracted', sa.JSON(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('elapsed_ms', sa.Integer(), nullable=True),
    sa.Column('fetched_at', calibr_pipeline.warehouse.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['listing_id'], ['competitor_listings.id'], name=op.f('fk_competitor_price_observations_listing_id_competitor_listings')),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_competitor_price_observations_project_id_projects')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_competitor_price_observations_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_competitor_price_observations'))
    )
    with op.batch_alter_table('competitor_price_observations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_competitor_price_observations_listing_id'), ['listing_id'], unique=False)
        batch_op.create_index('ix_observations_tenant_date', ['tenant_id', 'observation_date'], unique=False)

    op.create_table('normalized_price_snapshots',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('project_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('listing_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('competitor_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('variant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('observation_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('snapshot_date', sa.Date(), nullable=False),
    sa.Column('amount', calibr_pipeline.warehouse.types.ExactDecimal(precision=20, scale=6), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('regular_amount', calibr_pipeline.warehouse.types.ExactDecimal(precision=20, scale=6), nullable=True),
    sa.Column('on_sale', sa.Boolean(), nullable=False),
    sa.Column('availability', sa.String(length=16), nullable=True),
    sa.Column('project_currency', sa.String(length=3), nullable=False),
    sa.Column('fx_rate', calibr_pipeline.warehouse.types.ExactDecimal(precision=20, scale=6), nullable=True),
    sa.Column('amount_in_project_currency', calibr_pipeline.warehouse.types.ExactDecimal(precision=20, scale=6), nullable=True),
    sa.Column('observed_at', calibr_pipeline.warehouse.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['competitor_id'], ['competitors.id'], name=op.f('fk_normalized_price_snapshots_competitor_id_competitors')),
    sa.ForeignKeyConstraint(['listing_id'], ['competitor_listings.id'], name=op.f('fk_normalized_price_snapshots_listing_id_competitor_listings')),
    sa.ForeignKeyConstraint(['observation_id'], ['competitor_price_observations.id'], name=op.f('fk_normalized_price_snapshots_observation_id_competitor_price_observations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_normalized_price_snapshots_project_id_projects')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_normalized_price_snapshots_tenant_id_tenants')),
    sa.ForeignKeyConstraint(['variant_id'], ['variants.id'], name=op.f('fk_normalized_price_snapshots_variant_id_variants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_normalized_price_snapshots')),
    sa.UniqueConstraint('listing_id', 'snapshot_date', name=op.f('uq_normalized_price_snapshots_listing_id_snapshot_date'))
    )
    with op.batch_alter_table('normalized_price_snapshots', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_normalized_price_snapshots_variant_id'), ['variant_id'], unique=False)
        batch_op.create_index('ix_snapshots_tenant_date', ['tenant_id', 'snapshot_date'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('normalized_price_snapshots', schema=None) as batch_op:
        batch_op.drop_index('ix_snapshots_tenant_date')
        batch_op.drop_index(batch_op.f('ix_normalized_price_snapshots_variant_id'))

    op.drop_table('normalized_price_snapshots')
    with op.batch_alter_table('competitor_price_observations', schema=None) as batch_op:
        batch_op.drop_index('ix_observations_tenant_date')
        batch_op.drop_index(batch_op.f('ix_competitor_price_observations_listing_id'))

    op.drop_table('competitor_price_observations')
    with op.batch_alter_table('market_positions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_market_positions_variant_id'))
        batch_op.drop_index('ix_market_positions_tenant_date')

    op.drop_table('market_positions')
    with op.batch_alter_table('competitor_listings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_competitor_listings_variant_id'))
        batch_op.drop_index(batch_op.f('ix_competitor_listings_project_id'))
        batch_op.drop_index(batch_op.f('ix_competitor_listings_competitor_id'))

    op.drop_table('competitor_listings')
    with op.batch_alter_table('variants', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_variants_shop_id'))
        batch_op.drop_index(batch_op.f('ix_variants_product_id'))

    op.drop_table('variants')
    with op.batch_alter_table('products', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_products_shop_id'))
        batch_op.drop_index(batch_op.f('ix_products_project_id'))

    op.drop_table('products')
    with op.batch_alter_table('shops', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_shops_project_id'))

    op.drop_table('shops')
    with op.batch_alter_table('competitors', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_competitors_project_id'))

    op.drop_table('competitors')
    with op.batch_alter_table('projects', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_projects_tenant_id'))

    op.drop_table('projects')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_pending')

    op.drop_table('outbox')
    with op.batch_alter_table('event_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_event_log_tenant_id'))
        batch_op.drop_index(batch_op.f('ix_event_log_event_type'))
        batch_op.drop_index(batch_op.f('ix_event_log_created_at'))

    op.drop_table('event_log')
    op.drop_table('alert_deliveries')
    op.drop_table('tenants')
    op.drop_table('outbox_dead_letters')
    op.drop_table('fx_rates')

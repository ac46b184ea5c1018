"""analyst views

Revision ID: 0002
Revises: 0001
"""
from alembic import op

from calibr_pipeline.warehouse.views import drop_views, recreate_views

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    recreate_views(op)


def downgrade() -> None:
    drop_views(op)

"""analytics: reserved for issue 8 (analytics sources)

Revision ID: 0010
Revises: 0009

The revision chain is laid out ahead of the work so that areas developed in parallel
each own one migration file; a revision with nothing in it yet changes nothing.
"""

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass

"""trusted competitor data: reserved for issue 10 (extraction, trust scores, quarantine)

Revision ID: 0007
Revises: 0006

The revision chain is laid out ahead of the work so that areas developed in parallel
each own one migration file; a revision with nothing in it yet changes nothing.
"""

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass

"""event registry stripe: reserved for issue 11 (event registry, archival, Stripe)

Revision ID: 0008
Revises: 0007

The revision chain is laid out ahead of the work so that areas developed in parallel
each own one migration file; a revision with nothing in it yet changes nothing.
"""

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass

"""copilot: reserved for issue 9 (copilot audit)

Revision ID: 0009
Revises: 0008

The revision chain is laid out ahead of the work so that areas developed in parallel
each own one migration file; a revision with nothing in it yet changes nothing.
"""

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass

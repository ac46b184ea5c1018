"""http api auth vault: reserved for issue 13 (HTTP API, tokens, RLS, secrets vault)

Revision ID: 0006
Revises: 0005

The revision chain is laid out ahead of the work so that areas developed in parallel
each own one migration file; a revision with nothing in it yet changes nothing.
"""

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass

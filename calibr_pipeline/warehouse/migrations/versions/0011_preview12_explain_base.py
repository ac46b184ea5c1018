"""rule_runs.explain_base: the part of every target's explain trace that a run shares, stored once

Revision ID: 0011
Revises: 0010

A preview stores per target only the trace's own part (``{"compact": 1, "steps": ...}``);
the rule name, currency, computed_at, transform and guardrails are the run's, in this
column. Targets written before this revision keep their whole trace and read as before.
"""
from alembic import op
import sqlalchemy as sa


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('rule_runs') as batch:
        batch.add_column(sa.Column('explain_base', sa.JSON(), nullable=True))


def downgrade() -> None:
    # A plain ALTER TABLE … DROP COLUMN (SQLite ≥ 3.35), not a batch copy of rule_runs: the
    # copilot's views (migration 0009) read rule_runs, and SQLite refuses the batch's rename
    # of its copy while a view names the table.
    with op.batch_alter_table('rule_runs', recreate='never') as batch:
        batch.drop_column('explain_base')

"""Grants: a real `cancelled` end state (it was stored as `released` with the end reason `cancelled`).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""
from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

OLD_STATES = "state IN ('pending', 'active', 'released', 'expired', 'failed')"
NEW_STATES = "state IN ('pending', 'active', 'released', 'expired', 'cancelled', 'failed')"


def _check(states_sql: str) -> None:
    # SQLite cannot alter a CHECK constraint: batch mode copies the table (its indexes come along).
    with op.batch_alter_table("grants") as batch:
        batch.drop_constraint("ck_grants_state", type_="check")
        batch.create_check_constraint("ck_grants_state", states_sql)


def upgrade() -> None:
    _check(NEW_STATES)
    op.execute("UPDATE grants SET state = 'cancelled' WHERE state = 'released' AND end_reason = 'cancelled'")


def downgrade() -> None:
    op.execute("UPDATE grants SET state = 'released', end_reason = 'cancelled' WHERE state = 'cancelled'")
    _check(OLD_STATES)

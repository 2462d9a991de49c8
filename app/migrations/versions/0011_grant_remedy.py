"""Grants: which remedy each one is (the bypass group, or a Temporary Access Pass) and the pass's Graph method id.

A pass is a grant like a bypass membership (one open per person, the same cap, confirm and expiry); its code is
never stored, only the id Graph gave the method, so the portal can delete the pass when the student is done.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("grants") as batch:
        batch.add_column(sa.Column("remedy", sa.String(16), nullable=False, server_default="bypass"))
        batch.add_column(sa.Column("tap_method_id", sa.String(64), nullable=False, server_default=""))
        batch.create_check_constraint("ck_grants_remedy", "remedy IN ('bypass', 'tap')")


def downgrade() -> None:
    with op.batch_alter_table("grants") as batch:
        batch.drop_constraint("ck_grants_remedy", type_="check")
        batch.drop_column("tap_method_id")
        batch.drop_column("remedy")

"""Grants: the invite the student signed in with before unlocking, so closing a batch releases only its own grants.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("grants") as batch:
        batch.add_column(sa.Column("invite_id", sa.Integer, nullable=True))
        batch.create_index("ix_grants_invite_id", ["invite_id"])


def downgrade() -> None:
    with op.batch_alter_table("grants") as batch:
        batch.drop_index("ix_grants_invite_id")
        batch.drop_column("invite_id")

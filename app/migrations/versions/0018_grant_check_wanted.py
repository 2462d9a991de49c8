"""Grants: an early methods check the student asked for, and why the last check could not run.

The worker does every methods check now (a poll only reads the database): "I have finished" marks the grant
for its next confirmation pass, and the pass leaves a note every instance's poll can show.

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-30
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.adapters.store import UTCDateTime

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("grants") as batch:
        batch.add_column(sa.Column("check_wanted_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("check_note", sa.String(32), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("grants") as batch:
        batch.drop_column("check_note")
        batch.drop_column("check_wanted_at")

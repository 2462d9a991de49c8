"""Batch rows: drop the invite, invite time and reminder columns that nothing ever wrote.

The invites table is the one record of what a batch sent (each invite carries its batch and student, a reminder
is a newer invite) and a grant carries the invite it came through (0016); a copy on the row would only drift.

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-30
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.adapters.store import UTCDateTime

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

UNUSED = ("invite_id", "invited_at", "reminders_sent", "last_reminder_at")


def upgrade() -> None:
    with op.batch_alter_table("batch_rows") as batch:
        for column in UNUSED:
            batch.drop_column(column)


def downgrade() -> None:
    with op.batch_alter_table("batch_rows") as batch:
        batch.add_column(sa.Column("invite_id", sa.Integer, nullable=True))
        batch.add_column(sa.Column("invited_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("reminders_sent", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("last_reminder_at", UTCDateTime(), nullable=True))

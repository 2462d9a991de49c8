"""Weekly batches: the batch and one row per CSV line (its check, its invite, its reminders).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.adapters.store import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("label", sa.String(128), nullable=False),
        sa.Column("file_name", sa.String(256), nullable=False, server_default=""),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_by", sa.String(320), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("rows_total", sa.Integer, nullable=False, server_default="0"),
        sa.Column("rows_checked", sa.Integer, nullable=False, server_default="0"),
        sa.Column("checked_at", UTCDateTime(), nullable=True),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.Column("sent_by", sa.String(320), nullable=False, server_default=""),
        sa.Column("closed_at", UTCDateTime(), nullable=True),
        sa.Column("closed_by", sa.String(320), nullable=False, server_default=""),
        sa.CheckConstraint("state IN ('checking', 'ready', 'sent', 'closed')", name="ck_batches_state"),
    )
    op.create_index("ix_batches_state", "batches", ["state"])
    op.create_table(
        "batch_rows",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("batch_id", sa.Integer, sa.ForeignKey("batches.id", ondelete="CASCADE"), nullable=False),
        sa.Column("line", sa.Integer, nullable=False),
        sa.Column("upn", sa.String(320), nullable=True),
        sa.Column("shown", sa.String(128), nullable=False, server_default=""),
        sa.Column("mail", sa.String(256), nullable=False, server_default=""),
        sa.Column("name", sa.String(256), nullable=False, server_default=""),
        sa.Column("problem", sa.String(32), nullable=False, server_default=""),
        sa.Column("checked", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("diagnosis", sa.String(64), nullable=False, server_default=""),
        sa.Column("invite_id", sa.Integer, nullable=True),
        sa.Column("invited_at", UTCDateTime(), nullable=True),
        sa.Column("reminders_sent", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_reminder_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_batch_rows_batch", "batch_rows", ["batch_id", "line"])
    op.create_index("ix_batch_rows_upn", "batch_rows", ["upn"])


def downgrade() -> None:
    op.drop_table("batch_rows")
    op.drop_table("batches")

"""Invites: links mailed to one student, keyed by the hash of their token (app/adapters/store/invites.py).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.adapters.store import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "invites",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("upn", sa.String(320), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(320), nullable=False),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("opened_at", UTCDateTime(), nullable=True),
        sa.Column("used_at", UTCDateTime(), nullable=True),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.Column("revoked_by", sa.String(320), nullable=False, server_default=""),
        sa.Column("batch_id", sa.Integer, nullable=True),
        sa.Column("mail_id", sa.Integer, nullable=True),
        sa.Column("sealed_token", sa.Text, nullable=True),
    )
    op.create_index("uq_invites_token_hash", "invites", ["token_hash"], unique=True)
    op.create_index("ix_invites_upn", "invites", ["upn"])
    op.create_index("ix_invites_created_at", "invites", ["created_at"])
    op.create_index("ix_invites_batch_id", "invites", ["batch_id"])


def downgrade() -> None:
    op.drop_table("invites")

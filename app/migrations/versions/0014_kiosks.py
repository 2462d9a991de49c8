"""Kiosks: enrolled shared devices, found by the hash of their browser's credential.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.adapters.store import UTCDateTime

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kiosks",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("enrolled_at", UTCDateTime(), nullable=False),
        sa.Column("enrolled_by", sa.String(320), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(), nullable=True),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.Column("revoked_by", sa.String(320), nullable=False, server_default=""),
        sa.Column("revoke_reason", sa.Text, nullable=False, server_default=""),
    )


def downgrade() -> None:
    op.drop_table("kiosks")

"""Portal sessions: server-side records under the hash of the browser's token.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.adapters.store import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "portal_sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("upn", sa.String(320), nullable=False),
        sa.Column("display_name", sa.String(256), nullable=False, server_default=""),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.Column("revoked_by", sa.String(320), nullable=False, server_default=""),
        sa.Column("revoke_reason", sa.Text, nullable=False, server_default=""),
        sa.Column("mfa", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("client_address", sa.String(64), nullable=False, server_default=""),
        sa.CheckConstraint("kind IN ('student', 'staff', 'kiosk')", name="ck_portal_sessions_kind"),
    )
    op.create_index("ix_portal_sessions_upn", "portal_sessions", ["upn"])
    op.create_index("ix_portal_sessions_expires_at", "portal_sessions", ["expires_at"])


def downgrade() -> None:
    op.drop_table("portal_sessions")

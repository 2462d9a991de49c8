"""Bypass checks: the worker's last look at the bypass group (members, members no open grant backs).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.adapters.store import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bypass_checks",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("checked_at", UTCDateTime(), nullable=False),
        sa.Column("members", sa.Integer, nullable=False),
        sa.Column("without_grant", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("bypass_checks")

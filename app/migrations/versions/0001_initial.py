"""Initial schema: grants, audit trail, leases, rate budget, sign-in flows.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.adapters.store import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

OPEN_STATES_SQL = "state IN ('pending', 'active')"


def upgrade() -> None:
    op.create_table(
        "grants",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("upn", sa.String(320), nullable=False),
        sa.Column("user_dn", sa.String(1024), nullable=False),
        sa.Column("user_dn_key", sa.String(1024), nullable=False),
        sa.Column("entra_user_id", sa.String(64), nullable=False, server_default=""),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(320), nullable=False),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("activated_at", UTCDateTime(), nullable=True),
        sa.Column("ended_at", UTCDateTime(), nullable=True),
        sa.Column("end_reason", sa.Text, nullable=False, server_default=""),
        sa.Column("ttl_seconds", sa.Integer, nullable=True),
        sa.Column("dc_confirmed", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("last_checked_at", UTCDateTime(), nullable=True),
        sa.Column("check_count", sa.Integer, nullable=False, server_default="0"),
        sa.CheckConstraint("state IN ('pending', 'active', 'released', 'expired', 'failed')", name="ck_grants_state"),
    )
    op.create_index("ix_grants_upn", "grants", ["upn"])
    op.create_index("ix_grants_user_dn_key", "grants", ["user_dn_key"])
    op.create_index("ix_grants_state", "grants", ["state"])
    # At most one open grant per person: a partial unique index, understood by SQLite and PostgreSQL alike.
    op.create_index(
        "uq_grants_open_upn", "grants", ["upn"], unique=True,
        sqlite_where=sa.text(OPEN_STATES_SQL), postgresql_where=sa.text(OPEN_STATES_SQL),
    )

    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(320), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("upn", sa.String(320), nullable=True),
        sa.Column("grant_id", sa.Integer, nullable=True),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text, nullable=False, server_default="{}"),
    )
    op.create_index("ix_audit_events_at", "audit_events", ["at"])
    op.create_index("ix_audit_events_action", "audit_events", ["action"])
    op.create_index("ix_audit_events_upn", "audit_events", ["upn"])
    op.create_index("ix_audit_events_grant_id", "audit_events", ["grant_id"])

    op.create_table(
        "leases",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(256), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
    )

    op.create_table(
        "rate_budget",
        sa.Column("category", sa.String(32), primary_key=True),
        sa.Column("tokens", sa.Float, nullable=False, server_default="0"),
        sa.Column("updated_at", sa.Float, nullable=False, server_default="0"),
        sa.Column("stamps", sa.Text, nullable=False, server_default="[]"),
        sa.Column("blocked_until", sa.Float, nullable=False, server_default="0"),
    )

    op.create_table(
        "sign_in_flows",
        sa.Column("state", sa.String(128), primary_key=True),
        sa.Column("blob", sa.Text, nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_sign_in_flows_expires_at", "sign_in_flows", ["expires_at"])


def downgrade() -> None:
    op.drop_table("sign_in_flows")
    op.drop_table("rate_budget")
    op.drop_table("leases")
    op.drop_table("audit_events")
    op.drop_table("grants")

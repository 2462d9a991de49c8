"""Audit trail: the actor's kind and the reason get columns of their own.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("actor_kind", sa.String(16), nullable=False, server_default=""))
        batch.add_column(sa.Column("reason", sa.Text, nullable=False, server_default=""))
    # Older rows: the kind follows from the id the portal wrote; "portal" (a status page's release) stays unknown.
    op.execute("UPDATE audit_events SET actor_kind = 'worker' WHERE actor IN ('worker', 'system')")
    op.execute("UPDATE audit_events SET actor_kind = 'cli' WHERE actor LIKE 'cli:%'")
    op.execute("UPDATE audit_events SET actor_kind = 'student' WHERE actor_kind = '' AND actor LIKE '%@%'")


def downgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_column("reason")
        batch.drop_column("actor_kind")

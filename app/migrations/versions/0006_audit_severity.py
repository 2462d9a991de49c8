"""Audit trail: a severity of its own (info, warning), so the refusals worth a look can be listed quickly.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("severity", sa.String(16), nullable=False, server_default="info"))
    op.create_index("ix_audit_events_severity", "audit_events", ["severity"])


def downgrade() -> None:
    op.drop_index("ix_audit_events_severity", "audit_events")
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_column("severity")

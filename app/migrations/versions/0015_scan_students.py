"""Scans run by the worker: each scan's students with their prediction, and what the chunks so far cost.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("scans") as scans:
        scans.add_column(sa.Column("client", sa.String(64), nullable=False, server_default=""))
        scans.add_column(sa.Column("graph_requests", sa.Integer, nullable=False, server_default="0"))
        scans.add_column(sa.Column("sign_in_pages", sa.Integer, nullable=False, server_default="0"))
        scans.add_column(sa.Column("seconds", sa.Float, nullable=False, server_default="0"))
    op.create_table(
        "scan_students",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("scan_id", sa.Integer, sa.ForeignKey("scans.id", ondelete="CASCADE"), nullable=False),
        sa.Column("upn", sa.String(320), nullable=False),
        sa.Column("checked", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("row", sa.Text, nullable=False, server_default=""),
    )
    op.create_index("ix_scan_students_scan", "scan_students", ["scan_id", "checked", "id"])
    # A scan a web thread was running when this version arrived has no students to resume: it failed.
    op.execute("UPDATE scans SET state = 'failed', error = 'interrupted' WHERE state = 'running'")


def downgrade() -> None:
    op.drop_index("ix_scan_students_scan", table_name="scan_students")
    op.drop_table("scan_students")
    with op.batch_alter_table("scans") as scans:
        for column in ("seconds", "sign_in_pages", "graph_requests", "client"):
            scans.drop_column(column)

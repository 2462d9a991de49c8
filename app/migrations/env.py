"""Alembic environment: runs on the connection Store.upgrade() hands over (no alembic.ini needed)."""
from __future__ import annotations

from alembic import context

import app.adapters.outbox_store  # noqa: F401 - its table joins Base.metadata
import app.adapters.session_store  # noqa: F401 - so does the portal sessions'
from app.adapters.store import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    """Apply migrations on the caller's connection (SQLite in batch mode, for ALTERs it lacks)."""
    connection = config.attributes.get("connection")
    if connection is None:
        from sqlalchemy import create_engine

        url = config.get_main_option("sqlalchemy.url")
        if not url:
            raise RuntimeError("run migrations through Store(url).upgrade()")
        with create_engine(url).begin() as connection:
            _run(connection)
        return
    _run(connection)


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("offline (SQL script) migrations are not supported; use Store(url).upgrade()")
run_migrations_online()

"""An online backup of the SQLite database: SQLite's backup API copies a consistent snapshot while the portal runs.

PostgreSQL has its own tools (pg_dump, pg_restore); docs/backup.md says how to use both and how to restore.
"""
from __future__ import annotations

import os
import sqlite3
from datetime import datetime
from pathlib import Path

from sqlalchemy.engine import make_url

from app.adapters.store.base import SQLITE_BUSY_SECONDS


class BackupError(Exception):
    """The backup cannot be made (wrong database kind, missing file, target in the way)."""


def backup_sqlite(database_url: str, target: str | Path) -> int:
    """Copy the SQLite database at database_url into a new file, readable by its owner only; return its pages."""
    parsed = make_url(database_url)
    if parsed.get_backend_name() != "sqlite":
        raise BackupError("the database is PostgreSQL: back it up with pg_dump --format=custom (docs/backup.md)")
    source = Path(parsed.database or "")
    if not parsed.database or parsed.database == ":memory:" or not source.is_file():
        raise BackupError(f"there is no SQLite database at {source}")
    target = Path(target)
    if target.exists():
        raise BackupError(f"{target} exists already: name a new file")
    if not target.parent.is_dir():
        raise BackupError(f"the directory {target.parent} does not exist")
    partial = target.with_name(target.name + ".partial")
    # Created 0600 before a byte is written: the copy holds the same personal data as the database.
    os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
    try:
        live = sqlite3.connect(source, timeout=SQLITE_BUSY_SECONDS)
        copy = sqlite3.connect(partial)
        try:
            # One step (pages=-1): one read transaction, so the copy is one moment's snapshot; under WAL the
            # portal's writers go on meanwhile.
            live.backup(copy, pages=-1)
            pages = copy.execute("PRAGMA page_count").fetchone()[0]
        finally:
            copy.close()
            live.close()
        os.replace(partial, target)
    except sqlite3.Error as exc:
        partial.unlink(missing_ok=True)
        raise BackupError(f"the backup failed: {exc}") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return pages


BACKUP_PREFIX = "proofup-"  # the names backup_into gives, and the only files its rotation ever deletes
BACKUP_SUFFIX = ".sqlite3"


def backup_into(database_url: str, directory: str | Path, *, at: datetime, keep: int | None = None) -> Path:
    """Back up into a directory as proofup-<UTC time>.sqlite3; with keep, delete the oldest such copies beyond it."""
    directory = Path(directory)
    if keep is not None and keep < 1:
        raise BackupError("--keep must be at least 1")
    target = directory / f"{BACKUP_PREFIX}{at.strftime('%Y%m%d-%H%M%S')}{BACKUP_SUFFIX}"
    backup_sqlite(database_url, target)
    if keep is not None:
        # The UTC stamp in the name sorts by time; other files in the directory are never touched.
        copies = sorted(p for p in directory.glob(f"{BACKUP_PREFIX}*{BACKUP_SUFFIX}") if p.is_file())
        for old in copies[:-keep]:
            old.unlink(missing_ok=True)
    return target

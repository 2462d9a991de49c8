"""The desk's scans ("who will loop"): one row per scan with its progress while it runs and its report after.

A scan runs in the background of the instance that started it; its progress and report live here, so any
instance can show them. A row left running by an instance that died is read as interrupted (stale_after).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import CheckConstraint, Integer, String, Text, delete, select, update
from sqlalchemy.orm import Mapped, mapped_column

from app.adapters.store.base import Base, Database, UTCDateTime

SCAN_STATES = ("running", "done", "failed")
STALE_AFTER = timedelta(minutes=5)  # no progress for this long: the instance running it has gone


class ScanRecord(Base):
    __tablename__ = "scans"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(320))
    reason: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    state: Mapped[str] = mapped_column(String(16))
    phase: Mapped[str] = mapped_column(String(16), default="")
    done: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(String(64), default="")
    report: Mapped[str] = mapped_column(Text, default="")  # JSON: rows, counts, invalid, costs
    invited: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (CheckConstraint("state IN ('running', 'done', 'failed')", name="ck_scans_state"),)


@dataclass(frozen=True)
class ScanView:
    """A scan as the desk's page shows it; `report` is the stored JSON, parsed (empty while running)."""

    id: int
    source: str
    reason: str
    created_by: str
    created_at: datetime
    updated_at: datetime
    state: str
    phase: str
    done: int
    total: int
    error: str
    report: dict
    invited: int

    def interrupted(self, now: datetime) -> bool:
        """Tell whether a running scan has made no progress for too long (its instance stopped)."""
        return self.state == "running" and now - self.updated_at > STALE_AFTER


def _view(row: ScanRecord) -> ScanView:
    return ScanView(id=row.id, source=row.source, reason=row.reason, created_by=row.created_by,
                    created_at=row.created_at, updated_at=row.updated_at, state=row.state, phase=row.phase,
                    done=row.done, total=row.total, error=row.error,
                    report=json.loads(row.report) if row.report else {}, invited=row.invited)


class ScanStore:
    """The scans' rows: start, progress, finish or fail, read, forget old ones."""

    def __init__(self, store: Database):
        self.store = store

    def start(self, *, source: str, reason: str, created_by: str, now: datetime) -> int:
        """Write a running scan; return its id."""
        with self.store._tx(write=True) as s:  # noqa: SLF001 - the store's own transaction helper
            row = ScanRecord(source=source[:320], reason=reason, created_by=created_by, created_at=now,
                             updated_at=now, state="running")
            s.add(row)
            s.flush()
            return row.id

    def progress(self, scan_id: int, *, phase: str, done: int, total: int, now: datetime) -> None:
        """Record how far a running scan is."""
        self._update(scan_id, phase=phase[:16], done=done, total=total, updated_at=now)

    def finish(self, scan_id: int, report: dict[str, Any], *, now: datetime) -> None:
        """Store a scan's report and mark it done."""
        self._update(scan_id, state="done", phase="done", report=json.dumps(report), updated_at=now)

    def fail(self, scan_id: int, error: str, *, now: datetime) -> None:
        """Mark a scan failed with a short code (what the page words)."""
        self._update(scan_id, state="failed", error=error[:64], updated_at=now)

    def mark_invited(self, scan_id: int, count: int, *, now: datetime) -> bool:
        """Record that a done scan's invites went out; False when they already had (a second click)."""
        with self.store._tx(write=True) as s:  # noqa: SLF001
            changed = s.execute(update(ScanRecord).where(ScanRecord.id == scan_id, ScanRecord.state == "done",
                                                         ScanRecord.invited == 0)
                                .values(invited=max(1, count), updated_at=now))
            return changed.rowcount == 1

    def unmark_invited(self, scan_id: int, *, now: datetime) -> None:
        """Undo mark_invited after the invites failed as a whole (nothing was sent)."""
        self._update(scan_id, invited=0, updated_at=now)

    def get(self, scan_id: int) -> ScanView | None:
        with self.store._tx() as s:  # noqa: SLF001
            row = s.get(ScanRecord, scan_id)
            return _view(row) if row else None

    def recent(self, limit: int = 10) -> list[ScanView]:
        """Return the latest scans, newest first."""
        with self.store._tx() as s:  # noqa: SLF001
            return [_view(r) for r in s.scalars(select(ScanRecord).order_by(ScanRecord.id.desc()).limit(limit))]

    def purge_before(self, before: datetime, limit: int) -> int:
        """Delete at most `limit` scans started before a moment (their reports name students); return how many."""
        with self.store._tx(write=True) as s:  # noqa: SLF001
            old = select(ScanRecord.id).where(ScanRecord.created_at < before).order_by(ScanRecord.id).limit(limit)
            return s.execute(delete(ScanRecord).where(ScanRecord.id.in_(list(s.scalars(old))))).rowcount or 0

    def _update(self, scan_id: int, **values: Any) -> None:
        with self.store._tx(write=True) as s:  # noqa: SLF001
            s.execute(update(ScanRecord).where(ScanRecord.id == scan_id).values(**values))

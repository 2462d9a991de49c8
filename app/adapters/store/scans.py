"""The desk's scans ("who will loop"): one row per scan with its progress while it runs and its report after.

The page queues a scan here with its students (scan_students, one row each); the worker, under its lease,
predicts the next chunk of unchecked students each tick and writes their rows and the scan's progress in one
transaction, so a worker that dies mid-chunk loses only that chunk, which the next tick does again.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Sequence

from sqlalchemy import CheckConstraint, Float, ForeignKey, Index, Integer, String, Text, delete, func, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from app.adapters.store.base import Base, Database, UTCDateTime

SCAN_STATES = ("running", "done", "failed")  # running: queued or under way (the worker takes it next tick)


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
    client: Mapped[str] = mapped_column(String(64), default="")  # where the desk started it (the audit's client)
    graph_requests: Mapped[int] = mapped_column(Integer, default=0)  # what the chunks so far cost
    sign_in_pages: Mapped[int] = mapped_column(Integer, default=0)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)

    __table_args__ = (CheckConstraint("state IN ('running', 'done', 'failed')", name="ck_scans_state"),)


class ScanStudentRecord(Base):
    __tablename__ = "scan_students"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    scan_id: Mapped[int] = mapped_column(ForeignKey("scans.id", ondelete="CASCADE"))
    upn: Mapped[str] = mapped_column(String(320))
    checked: Mapped[bool] = mapped_column(default=False)
    row: Mapped[str] = mapped_column(Text, default="")  # JSON: the report's row of this student's prediction

    __table_args__ = (Index("ix_scan_students_scan", "scan_id", "checked", "id"),)


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
    client: str = ""
    graph_requests: int = 0
    sign_in_pages: int = 0
    seconds: float = 0.0

    @property
    def queued(self) -> bool:
        """Tell whether the worker has not taken the scan up yet (running, and no step of it recorded)."""
        return self.state == "running" and not self.phase


def _view(row: ScanRecord) -> ScanView:
    return ScanView(id=row.id, source=row.source, reason=row.reason, created_by=row.created_by,
                    created_at=row.created_at, updated_at=row.updated_at, state=row.state, phase=row.phase,
                    done=row.done, total=row.total, error=row.error,
                    report=json.loads(row.report) if row.report else {}, invited=row.invited, client=row.client,
                    graph_requests=row.graph_requests, sign_in_pages=row.sign_in_pages, seconds=row.seconds)


class ScanStore:
    """The scans' rows: queue, take a chunk, record it, finish or fail, read, forget old ones."""

    def __init__(self, store: Database):
        self.store = store

    def start(self, *, source: str, reason: str, created_by: str, now: datetime, upns: Sequence[str] = (),
              invalid: Sequence[str] = (), client: str = "") -> int:
        """Queue a scan with its students (the worker runs it); return its id."""
        with self.store._tx(write=True) as s:  # noqa: SLF001 - the store's own transaction helper
            row = ScanRecord(source=source[:320], reason=reason, created_by=created_by, created_at=now,
                             updated_at=now, state="running", total=len(upns), client=client[:64],
                             report=json.dumps({"invalid": list(invalid)}) if invalid else "")
            s.add(row)
            s.flush()
            s.add_all(ScanStudentRecord(scan_id=row.id, upn=str(upn)) for upn in upns)
            return row.id

    def running(self) -> list[ScanView]:
        """Return the scans the worker has still to finish, oldest first."""
        with self.store._tx() as s:  # noqa: SLF001
            return [_view(r) for r in s.scalars(select(ScanRecord).where(ScanRecord.state == "running")
                                                .order_by(ScanRecord.id))]

    def unchecked(self, scan_id: int, limit: int) -> list[str]:
        """Return the next `limit` students of a scan that have no prediction yet, in the order queued."""
        with self.store._tx() as s:  # noqa: SLF001
            return list(s.scalars(select(ScanStudentRecord.upn).where(ScanStudentRecord.scan_id == scan_id,
                                                                       ScanStudentRecord.checked.is_(False))
                                  .order_by(ScanStudentRecord.id).limit(limit)))

    def record_chunk(self, scan_id: int, rows: dict[str, dict[str, str]], *, graph_requests: int,
                     sign_in_pages: int, seconds: float, now: datetime) -> int:
        """Store a chunk's predictions and its cost with the scan's progress in one transaction; return how many.

        Only students still unchecked are written, so a chunk recorded twice counts once.
        """
        with self.store._tx(write=True) as s:  # noqa: SLF001
            written = 0
            for upn, row in rows.items():
                written += s.execute(update(ScanStudentRecord)
                                     .where(ScanStudentRecord.scan_id == scan_id, ScanStudentRecord.upn == upn,
                                            ScanStudentRecord.checked.is_(False))
                                     .values(checked=True, row=json.dumps(row))).rowcount or 0
            done = s.scalar(select(func.count()).where(ScanStudentRecord.scan_id == scan_id,
                                                       ScanStudentRecord.checked.is_(True)))
            s.execute(update(ScanRecord).where(ScanRecord.id == scan_id).values(
                done=done, updated_at=now, error="", graph_requests=ScanRecord.graph_requests + graph_requests,
                sign_in_pages=ScanRecord.sign_in_pages + sign_in_pages, seconds=ScanRecord.seconds + seconds))
            return written

    def checked(self, scan_id: int) -> int:
        """Return how many of a scan's students have a prediction (its `done` may run ahead within a chunk)."""
        with self.store._tx() as s:  # noqa: SLF001
            return s.scalar(select(func.count()).where(ScanStudentRecord.scan_id == scan_id,
                                                       ScanStudentRecord.checked.is_(True))) or 0

    def rows(self, scan_id: int) -> list[dict[str, str]]:
        """Return the predictions recorded for a scan's students, in the order queued."""
        with self.store._tx() as s:  # noqa: SLF001
            return [json.loads(r) for r in s.scalars(
                select(ScanStudentRecord.row).where(ScanStudentRecord.scan_id == scan_id,
                                                    ScanStudentRecord.checked.is_(True))
                .order_by(ScanStudentRecord.id))]

    def progress(self, scan_id: int, *, phase: str, done: int, total: int, now: datetime) -> None:
        """Record how far a running scan is."""
        self._update(scan_id, phase=phase[:16], done=done, total=total, updated_at=now)

    def finish(self, scan_id: int, report: dict[str, Any], *, now: datetime, session: Session | None = None) -> bool:
        """Store a running scan's report and mark it done (in a unit of work's session if given, with its audit
        line); False when it was not running (finished already)."""
        values = {"state": "done", "phase": "done", "report": json.dumps(report), "updated_at": now}
        if session is not None:
            return _set_running(session, scan_id, values)
        return self._update(scan_id, **values)

    def waiting(self, scan_id: int, error: str, *, now: datetime) -> None:
        """Note why a running scan's last chunk failed (it is tried again next tick); the next chunk clears it."""
        self._update(scan_id, error=error[:64], updated_at=now)

    def fail(self, scan_id: int, error: str, *, now: datetime) -> None:
        """Mark a running scan failed with a short code (what the page words)."""
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
        with self.store._tx(write=True) as s:  # noqa: SLF001
            s.execute(update(ScanRecord).where(ScanRecord.id == scan_id).values(invited=0, updated_at=now))

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
            old = list(s.scalars(select(ScanRecord.id).where(ScanRecord.created_at < before)
                                 .order_by(ScanRecord.id).limit(limit)))
            # SQLite enforces no cascade unless asked: the students go first, explicitly.
            s.execute(delete(ScanStudentRecord).where(ScanStudentRecord.scan_id.in_(old)))
            return s.execute(delete(ScanRecord).where(ScanRecord.id.in_(old))).rowcount or 0

    def _update(self, scan_id: int, **values: Any) -> bool:
        """Change a running scan (progress, finish, fail); False when it is no longer running."""
        with self.store._tx(write=True) as s:  # noqa: SLF001
            return _set_running(s, scan_id, values)


def _set_running(session: Session, scan_id: int, values: dict[str, Any]) -> bool:
    """Change a scan that is still running; False when it is not."""
    return (session.execute(update(ScanRecord).where(ScanRecord.id == scan_id, ScanRecord.state == "running")
                            .values(**values)).rowcount or 0) == 1

"""Weekly batches: the batch and one row per CSV line (its verdict), changed with its audit event.

Every change that a desk member or the worker makes commits together with its audit event, so a crash leaves
all of it or none. What a batch sent lives in the invites table (invites.batch_id).
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Iterator, Mapping

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, delete, func, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from app.adapters.store.audit import AuditLog
from app.adapters.store.base import Base, Database, UTCDateTime
from app.adapters.store.grants import _OPEN, GrantRow
from app.adapters.store.invites import InviteRow
from app.domain.actors import Actor
from app.domain.batch_csv import IntakeRow
from app.domain.batches import BatchGrants, BatchState, RowCheck
from app.domain.upn import Upn

_STATES_SQL = "state IN ({})".format(", ".join(f"'{s.value}'" for s in BatchState))


class BatchRecord(Base):
    __tablename__ = "batches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    label: Mapped[str] = mapped_column(String(128))
    file_name: Mapped[str] = mapped_column(String(256), default="")
    state: Mapped[str] = mapped_column(String(16), index=True)
    created_by: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    rows_total: Mapped[int] = mapped_column(Integer, default=0)
    rows_checked: Mapped[int] = mapped_column(Integer, default=0)
    check_percent: Mapped[int] = mapped_column(Integer, default=0)  # of the bulk check running now
    checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    sent_by: Mapped[str] = mapped_column(String(320), default="")
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    closed_by: Mapped[str] = mapped_column(String(320), default="")

    __table_args__ = (CheckConstraint(_STATES_SQL, name="ck_batches_state"),)

    def view(self) -> "BatchView":
        return BatchView(id=self.id, label=self.label, file_name=self.file_name, state=BatchState(self.state),
                         created_by=self.created_by, created_at=self.created_at, rows_total=self.rows_total,
                         rows_checked=self.rows_checked, check_percent=self.check_percent, checked_at=self.checked_at, sent_at=self.sent_at,
                         sent_by=self.sent_by, closed_at=self.closed_at, closed_by=self.closed_by)


class BatchRowRecord(Base):
    __tablename__ = "batch_rows"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"))
    line: Mapped[int] = mapped_column(Integer)
    upn: Mapped[str | None] = mapped_column(String(320), nullable=True, index=True)
    shown: Mapped[str] = mapped_column(String(128), default="")
    mail: Mapped[str] = mapped_column(String(256), default="")  # from the CSV, else the directory's at check time
    name: Mapped[str] = mapped_column(String(256), default="")
    problem: Mapped[str] = mapped_column(String(32), default="")  # why it is skipped; "" selected (once checked)
    checked: Mapped[bool] = mapped_column(default=False)
    diagnosis: Mapped[str] = mapped_column(String(64), default="")  # "state/reason" of the check
    # What was sent is the invites table's (invites.batch_id, a reminder a newer invite): no copy here.

    __table_args__ = (Index("ix_batch_rows_batch", "batch_id", "line"),)

    def view(self) -> "BatchRowView":
        return BatchRowView(id=self.id, batch_id=self.batch_id, line=self.line,
                            upn=Upn(self.upn) if self.upn else None, shown=self.shown, mail=self.mail,
                            name=self.name, problem=self.problem, checked=self.checked, diagnosis=self.diagnosis)


@dataclass(frozen=True)
class BatchView:
    """One batch as stored."""

    id: int
    label: str
    file_name: str
    state: BatchState
    created_by: str
    created_at: datetime
    rows_total: int
    rows_checked: int
    check_percent: int = 0
    checked_at: datetime | None = None
    sent_at: datetime | None = None
    sent_by: str = ""
    closed_at: datetime | None = None
    closed_by: str = ""


@dataclass(frozen=True)
class BatchRowView:
    """One row of a batch: the CSV's line and what the checks made of it (its invites are the invites table's)."""

    id: int
    batch_id: int
    line: int
    upn: Upn | None
    shown: str
    mail: str
    name: str
    problem: str
    checked: bool
    diagnosis: str

    @property
    def selected(self) -> bool:
        """Tell whether the row gets (or got) an invite: checked and nothing wrong."""
        return self.checked and not self.problem


class BatchStore:
    """The batch tables, with the verbs the batch use cases and the worker need."""

    def __init__(self, store: Database):
        self.store = store

    @contextmanager
    def _change(self) -> Iterator[tuple[Session, AuditLog]]:
        with self.store._tx(write=True) as s:  # noqa: SLF001 - the store's own transaction helper
            yield s, AuditLog(s, self.store.clock)

    def create(self, actor: Actor, *, label: str, file_name: str, rows: Iterable[IntakeRow],
               client: str = "") -> BatchView:
        """Write a new batch (checking) with its rows; the CSV's bad rows are checked already, with their problem."""
        rows = list(rows)
        with self._change() as (s, audit):
            batch = BatchRecord(label=label, file_name=file_name, state=BatchState.CHECKING.value,
                                created_by=actor.id, created_at=self.store.clock(), rows_total=len(rows),
                                rows_checked=sum(1 for r in rows if not r.ok), sent_by="", closed_by="")
            s.add(batch)
            s.flush()
            s.add_all(BatchRowRecord(batch_id=batch.id, line=r.line, upn=r.upn, shown=r.shown, mail=r.mail,
                                     name=r.name, problem=r.problem, checked=not r.ok, diagnosis="")
                      for r in rows)
            audit.add(actor, "batch.uploaded", None, batch_id=batch.id, label=label, file_name=file_name,
                      rows=len(rows), skipped_by_csv=batch.rows_checked, client=client)
            return batch.view()

    def get(self, batch_id: int) -> BatchView | None:
        """Return one batch, or None."""
        with self.store._tx() as s:  # noqa: SLF001
            row = s.get(BatchRecord, batch_id)
            return row.view() if row else None

    def recent(self, limit: int = 50) -> list[BatchView]:
        """Return the newest batches first."""
        with self.store._tx() as s:  # noqa: SLF001
            return [r.view() for r in s.scalars(select(BatchRecord).order_by(BatchRecord.id.desc()).limit(limit))]

    def in_state(self, state: BatchState, limit: int = 20) -> list[BatchView]:
        """Return the oldest batches in a state first (the worker's queue)."""
        with self.store._tx() as s:  # noqa: SLF001
            rows = s.scalars(select(BatchRecord).where(BatchRecord.state == state.value)
                             .order_by(BatchRecord.id).limit(limit))
            return [r.view() for r in rows]

    def sent_between(self, start: datetime, end: datetime, limit: int = 200) -> list[BatchView]:
        """Return the batches still sent (not closed) whose invites went out between two times, newest first."""
        with self.store._tx() as s:  # noqa: SLF001
            rows = s.scalars(select(BatchRecord).where(
                BatchRecord.state == BatchState.SENT.value, BatchRecord.sent_at >= start, BatchRecord.sent_at <= end)
                .order_by(BatchRecord.sent_at.desc()).limit(limit))
            return [r.view() for r in rows]

    def rows(self, batch_id: int) -> list[BatchRowView]:
        """Return a batch's rows in file order."""
        with self.store._tx() as s:  # noqa: SLF001
            rows = s.scalars(select(BatchRowRecord).where(BatchRowRecord.batch_id == batch_id)
                             .order_by(BatchRowRecord.line, BatchRowRecord.id))
            return [r.view() for r in rows]

    def unchecked(self, batch_id: int, limit: int) -> list[BatchRowView]:
        """Return up to limit rows the checks have not reached yet, in file order."""
        with self.store._tx() as s:  # noqa: SLF001
            rows = s.scalars(select(BatchRowRecord).where(BatchRowRecord.batch_id == batch_id,
                                                          BatchRowRecord.checked.is_(False))
                             .order_by(BatchRowRecord.line).limit(limit))
            return [r.view() for r in rows]

    def record_progress(self, batch_id: int, percent: int) -> None:
        """Note how far the running check is (0 to 100), for the page's progress bar."""
        with self.store._tx(write=True) as s:  # noqa: SLF001
            s.execute(update(BatchRecord).where(BatchRecord.id == batch_id).values(
                check_percent=max(0, min(100, int(percent)))))

    def record_checks(self, actor: Actor, batch_id: int, checks: Mapping[int, RowCheck]) -> BatchView | None:
        """Store the checks of some rows; the batch turns ready when none is left. None if it is not checking."""
        with self._change() as (s, audit):
            batch = s.get(BatchRecord, batch_id)
            if batch is None or batch.state != BatchState.CHECKING.value:
                return None
            done = 0
            for row_id, check in checks.items():
                values: dict[str, Any] = {"problem": check.problem, "diagnosis": check.diagnosis, "checked": True}
                if check.mail:
                    values["mail"] = check.mail
                done += s.execute(update(BatchRowRecord).where(
                    BatchRowRecord.id == row_id, BatchRowRecord.batch_id == batch_id,
                    BatchRowRecord.checked.is_(False)).values(**values)).rowcount
            batch.rows_checked += done
            left = s.scalar(select(func.count()).select_from(BatchRowRecord).where(
                BatchRowRecord.batch_id == batch_id, BatchRowRecord.checked.is_(False)))
            if not left:
                batch.state, batch.checked_at, batch.check_percent = BatchState.READY.value, self.store.clock(), 100
                selected = s.scalar(select(func.count()).select_from(BatchRowRecord).where(
                    BatchRowRecord.batch_id == batch_id, BatchRowRecord.problem == ""))
                audit.add(actor, "batch.checked", None, batch_id=batch_id, rows=batch.rows_total, selected=selected)
            return batch.view()

    def _move(self, actor: Actor, action: str, batch_id: int, wanted: Iterable[BatchState], to: BatchState,
              client: str, **values: Any) -> BatchView | None:
        """Move a batch from one of the wanted states (compare-and-set) with its audit line; None if it was not in one."""
        with self._change() as (s, audit):
            moved = s.execute(update(BatchRecord).where(
                BatchRecord.id == batch_id, BatchRecord.state.in_([w.value for w in wanted])).values(
                state=to.value, **values)).rowcount
            if not moved:
                return None
            audit.add(actor, action, None, batch_id=batch_id, client=client)
            return s.get(BatchRecord, batch_id).view()

    def mark_sent(self, actor: Actor, batch_id: int, *, client: str = "") -> BatchView | None:
        """Turn a checked batch sent (once: a second click finds it sent and gets None)."""
        return self._move(actor, "batch.sent", batch_id, [BatchState.READY], BatchState.SENT, client,
                          sent_at=self.store.clock(), sent_by=actor.id)

    def mark_closed(self, actor: Actor, batch_id: int, *, client: str = "") -> BatchView | None:
        """Close a batch in any open state (once); None if it is closed already or unknown."""
        return self._move(actor, "batch.closed", batch_id, [s for s in BatchState if s.open], BatchState.CLOSED,
                          client, closed_at=self.store.clock(), closed_by=actor.id)

    def latest_grants(self, upns: Iterable[Upn | None], since: datetime | None, *, batch_id: int) -> BatchGrants:
        """Return the grants opened since a time as the batch counts them (one query per 500 students)."""
        wanted = sorted({str(u) for u in upns if u})
        states: dict[str, str] = {}
        elsewhere: set[str] = set()
        with self.store._tx() as s:  # noqa: SLF001
            for start in range(0, len(wanted), 500):
                query = (select(GrantRow.upn, GrantRow.state, GrantRow.invite_id, InviteRow.batch_id)
                         .outerjoin(InviteRow, InviteRow.id == GrantRow.invite_id)
                         .where(GrantRow.upn.in_(wanted[start:start + 500])))
                if since is not None:
                    query = query.where(GrantRow.created_at >= since)
                for upn, state, invite_id, invite_batch in s.execute(query.order_by(GrantRow.id)):
                    if invite_id is None or invite_batch == batch_id:
                        states[upn] = state  # ordered by id: the newest wins
                    else:
                        elsewhere.add(upn)
        return BatchGrants(states, frozenset(elsewhere - states.keys()))

    def open_grants_from(self, batch_id: int) -> list[tuple[int, Upn]]:
        """Return (grant id, upn) of the open grants the batch's invites led to (the student signed in with one)."""
        invites = select(InviteRow.id).where(InviteRow.batch_id == batch_id)
        with self.store._tx() as s:  # noqa: SLF001
            return [(grant_id, Upn(upn)) for grant_id, upn in s.execute(
                select(GrantRow.id, GrantRow.upn).where(GrantRow.invite_id.in_(invites), GrantRow.state.in_(_OPEN))
                .order_by(GrantRow.id))]

    def of_student(self, upn: Upn, limit: int = 20) -> list[BatchView]:
        """Return the batches a student is a line of, newest first."""
        lines = select(BatchRowRecord.batch_id).where(BatchRowRecord.upn == Upn(upn))
        with self.store._tx() as s:  # noqa: SLF001
            return [r.view() for r in s.scalars(select(BatchRecord).where(BatchRecord.id.in_(lines))
                                                .order_by(BatchRecord.id.desc()).limit(limit))]

    def reopen(self, actor: Actor, batch_id: int, problem: str, *, client: str = "") -> int | None:
        """Put a checked batch's rows with this problem back to unchecked (the batch checking again), audited.

        Return how many rows; None when the batch is not ready (unknown, still checking, sent or closed).
        """
        with self._change() as (s, audit):
            batch = s.get(BatchRecord, batch_id)
            if batch is None or batch.state != BatchState.READY.value:
                return None
            count = s.execute(update(BatchRowRecord).where(
                BatchRowRecord.batch_id == batch_id, BatchRowRecord.problem == problem,
                BatchRowRecord.checked.is_(True)).values(checked=False, problem="", diagnosis="")).rowcount
            if count:
                batch.state, batch.rows_checked, batch.check_percent = BatchState.CHECKING.value, \
                    batch.rows_checked - count, 0
            audit.add(actor, "batch.recheck", None, batch_id=batch_id, rows=count, client=client)
            return count

    def purge_closed(self, before: datetime, limit: int) -> int:
        """Delete at most limit batches closed before a time, with their rows; return how many batches went."""
        with self.store._tx(write=True) as s:  # noqa: SLF001
            ids = list(s.scalars(select(BatchRecord.id).where(
                BatchRecord.state == BatchState.CLOSED.value, BatchRecord.closed_at < before)
                .order_by(BatchRecord.id).limit(limit)))
            if ids:
                s.execute(delete(BatchRowRecord).where(BatchRowRecord.batch_id.in_(ids)))
                s.execute(delete(BatchRecord).where(BatchRecord.id.in_(ids)))
            return len(ids)

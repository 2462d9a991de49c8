"""Portal sessions in the database: one row per session, keyed by the hash of the browser's token."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping

from sqlalchemy import Boolean, String, Text, and_, bindparam, select, text, update
from sqlalchemy.orm import Mapped, mapped_column

from app.adapters.store.base import Base, Database, HotRead, UTCDateTime
from app.adapters.store.grants import OPEN_GRANT_SQL, GrantRow, grant_view, open_grant_key
from app.domain.sessions import SessionKind, SessionRecord
from app.domain.upn import Upn


class SessionRow(Base):
    __tablename__ = "portal_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    upn: Mapped[str] = mapped_column(String(320), index=True)
    display_name: Mapped[str] = mapped_column(String(256), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_by: Mapped[str] = mapped_column(String(320), default="")
    revoke_reason: Mapped[str] = mapped_column(Text, default="")
    mfa: Mapped[bool] = mapped_column(Boolean, default=False)
    client_address: Mapped[str] = mapped_column(String(64), default="")

    def record(self) -> SessionRecord:
        return session_record({column.key: getattr(self, column.key) for column in self.__table__.columns})


def session_record(row: Mapping[str, Any]) -> SessionRecord:
    """Return the session a row of portal_sessions holds (from the ORM or a hot read alike)."""
    return SessionRecord(
        token_hash=row["token_hash"], kind=SessionKind(row["kind"]), upn=Upn(row["upn"]),
        display_name=row["display_name"], created_at=row["created_at"], last_seen_at=row["last_seen_at"],
        expires_at=row["expires_at"], revoked_at=row["revoked_at"], mfa=bool(row["mfa"]),
        client_address=row["client_address"],
    )


def _session_with_open_grant() -> HotRead:
    """Return the read of a session by its token hash, with the person's open grant (if any) in the same row.

    Every request of a signed-in browser reads its session, and every poll then its open grant: one SELECT
    instead of two (a round trip less on PostgreSQL), answered from the primary key and the open-grant index.
    """
    sessions, grants = SessionRow.__table__, GrantRow.__table__
    columns = [c.label(label) for c, label in zip(sessions.columns, _SESSION_COLUMNS.values())]
    columns += [c.label(label) for c, label in zip(grants.columns, _GRANT_COLUMNS.values())]
    joined = sessions.outerjoin(grants, and_(grants.c.upn == sessions.c.upn, text(OPEN_GRANT_SQL)))
    return HotRead(select(*columns).select_from(joined).where(sessions.c.token_hash == bindparam("token_hash")))


# The joined row's columns, told apart: {column: its label in the row}.
_SESSION_COLUMNS = {c.key: "s_" + c.key for c in SessionRow.__table__.columns}
_GRANT_COLUMNS = {c.key: "g_" + c.key for c in GrantRow.__table__.columns}
_SESSION_WITH_OPEN_GRANT = _session_with_open_grant()
# A signed-in browser's last-seen, at most once a minute (SessionPolicy.needs_touch).
_TOUCH = HotRead(update(SessionRow.__table__).where(
    SessionRow.token_hash == bindparam("token_hash"), SessionRow.revoked_at.is_(None),
    SessionRow.last_seen_at < bindparam("at")).values(last_seen_at=bindparam("at")))


class SessionStore:
    """Create, read (one primary-key lookup), touch and revoke portal sessions."""

    def __init__(self, store: Database):
        self.store = store

    def create_session(self, record: SessionRecord) -> None:
        """Write a new session (the worker's retention pass drops sessions past their end, in bounded chunks)."""
        with self.store._tx(write=True) as s:
            s.add(SessionRow(
                token_hash=record.token_hash, kind=record.kind.value, upn=Upn(record.upn),
                display_name=record.display_name[:256], created_at=record.created_at,
                last_seen_at=record.last_seen_at, expires_at=record.expires_at, revoked_at=None, revoked_by="",
                revoke_reason="", mfa=record.mfa, client_address=record.client_address[:64],
            ))

    def purge_expired(self, now: datetime, limit: int) -> int:
        """Delete at most limit sessions past their absolute end (nothing can revive them); return how many."""
        return self.store.delete_oldest(SessionRow.token_hash, SessionRow.expires_at < now,
                                        order_by=SessionRow.expires_at, limit=limit)

    def get_session(self, token_hash: str) -> SessionRecord | None:
        """Return the session stored under a token hash, or None (one primary-key read).

        The same read brings the person's open grant, kept for this thread's next open_grant_for() of them
        (a poll's): see Database.take_read_ahead for how briefly.
        """
        row = self.store.read_first(_SESSION_WITH_OPEN_GRANT, token_hash=token_hash)
        if row is None:
            return None
        record = session_record({key: row[label] for key, label in _SESSION_COLUMNS.items()})
        grant = None if row[_GRANT_COLUMNS["id"]] is None else grant_view(
            {key: row[label] for key, label in _GRANT_COLUMNS.items()})
        self.store.remember_read_ahead(open_grant_key(record.upn), grant)
        return record

    def touch_session(self, token_hash: str, at: datetime) -> None:
        """Move a live session's last-seen forward (never backward, never on a revoked one).

        One statement on the hot connection (Database.write_hot): a lost touch only ends a session sooner.
        """
        self.store.write_hot(_TOUCH, token_hash=token_hash, at=at)

    def revoke_session(self, token_hash: str, *, at: datetime, by: str, reason: str) -> SessionRecord | None:
        """End one session; return it if this call ended it (None if unknown or already revoked)."""
        with self.store._tx(write=True) as s:
            ended = s.execute(update(SessionRow).where(
                SessionRow.token_hash == token_hash, SessionRow.revoked_at.is_(None),
            ).values(revoked_at=at, revoked_by=by, revoke_reason=reason)).rowcount == 1
            row = s.get(SessionRow, token_hash) if ended else None
            return row.record() if row else None

    def revoke_sessions_for(self, upn: str, *, at: datetime, by: str, reason: str,
                            kinds: tuple[SessionKind, ...] | None = None) -> int:
        """End every live session of a person (optionally of some kinds); return how many were ended."""
        query = update(SessionRow).where(
            SessionRow.upn == Upn(upn), SessionRow.revoked_at.is_(None), SessionRow.expires_at > at,
        )
        if kinds:
            query = query.where(SessionRow.kind.in_([k.value for k in kinds]))
        with self.store._tx(write=True) as s:
            return s.execute(query.values(revoked_at=at, revoked_by=by, revoke_reason=reason)).rowcount

    def live_sessions_for(self, upn: str, now: datetime) -> list[SessionRecord]:
        """Return a person's unrevoked sessions not yet past their absolute end, newest first."""
        with self.store._tx() as s:
            rows = s.scalars(select(SessionRow).where(
                SessionRow.upn == Upn(upn), SessionRow.revoked_at.is_(None), SessionRow.expires_at > now,
            ).order_by(SessionRow.created_at.desc()))
            return [r.record() for r in rows]

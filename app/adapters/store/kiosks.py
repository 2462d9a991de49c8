"""Enrolled kiosks in the database: one row per device, found by the hash of its browser's credential."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String, Text, delete, select, update
from sqlalchemy.orm import Mapped, mapped_column

from app.adapters.store.audit import AuditLog
from app.adapters.store.base import Base, Database, UTCDateTime
from app.domain.actors import Actor
from app.domain.kiosks import Kiosk


class KioskRow(Base):
    __tablename__ = "kiosks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    enrolled_at: Mapped[datetime] = mapped_column(UTCDateTime())
    enrolled_by: Mapped[str] = mapped_column(String(320))
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_by: Mapped[str] = mapped_column(String(320), default="")
    revoke_reason: Mapped[str] = mapped_column(Text, default="")

    def kiosk(self) -> Kiosk:
        return Kiosk(id=self.id, name=self.name, enrolled_at=self.enrolled_at, enrolled_by=self.enrolled_by,
                     last_seen_at=self.last_seen_at, revoked_at=self.revoked_at, revoked_by=self.revoked_by,
                     revoke_reason=self.revoke_reason)


class KioskStore:
    """Enrol, find, touch and revoke kiosks; each change commits with its audit event."""

    def __init__(self, store: Database):
        self.store = store

    def enrol_kiosk(self, name: str, token_hash: str, *, actor: Actor, at: datetime, client: str) -> Kiosk:
        """Write a new kiosk and its audit event in one transaction."""
        with self.store._tx(write=True) as s:
            row = KioskRow(name=name, token_hash=token_hash, enrolled_at=at, enrolled_by=str(actor),
                           last_seen_at=at, revoked_at=None, revoked_by="", revoke_reason="")
            s.add(row)
            s.flush()
            AuditLog(s, self.store.clock).add(actor, "kiosk.enrol", kiosk_id=row.id, kiosk=name, client=client)
            return row.kiosk()

    def revoke_kiosk(self, kiosk_id: int, *, actor: Actor, at: datetime, client: str) -> Kiosk | None:
        """End a kiosk for good, with its audit event; return it if this call revoked it (None otherwise)."""
        with self.store._tx(write=True) as s:
            ended = s.execute(update(KioskRow).where(KioskRow.id == kiosk_id, KioskRow.revoked_at.is_(None)).values(
                revoked_at=at, revoked_by=str(actor), revoke_reason=actor.reason)).rowcount == 1
            if not ended:
                return None
            row = s.get(KioskRow, kiosk_id)
            AuditLog(s, self.store.clock).add(actor, "kiosk.revoke", kiosk_id=kiosk_id, kiosk=row.name, client=client)
            return row.kiosk()

    def kiosk_by_token_hash(self, token_hash: str) -> Kiosk | None:
        """Return the kiosk whose credential has this hash (revoked or not), or None."""
        with self.store._tx() as s:
            row = s.scalar(select(KioskRow).where(KioskRow.token_hash == token_hash))
            return row.kiosk() if row else None

    def touch_kiosk(self, kiosk_id: int, at: datetime) -> None:
        """Move a live kiosk's last-seen forward."""
        with self.store._tx(write=True) as s:
            s.execute(update(KioskRow).where(KioskRow.id == kiosk_id, KioskRow.revoked_at.is_(None))
                      .values(last_seen_at=at))

    def purge_revoked(self, before: datetime, limit: int) -> int:
        """Delete at most `limit` kiosks revoked before a moment (working ones never); return how many."""
        with self.store._tx(write=True) as s:
            old = select(KioskRow.id).where(KioskRow.revoked_at < before).order_by(KioskRow.id).limit(limit)
            return s.execute(delete(KioskRow).where(KioskRow.id.in_(list(s.scalars(old))))).rowcount or 0

    def kiosks(self) -> list[Kiosk]:
        """Return every kiosk, the working ones first, then by name."""
        with self.store._tx() as s:
            rows = s.scalars(select(KioskRow).order_by(KioskRow.revoked_at.is_not(None), KioskRow.name, KioskRow.id))
            return [r.kiosk() for r in rows]

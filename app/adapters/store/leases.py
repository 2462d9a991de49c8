"""Leases: named, expiring locks in the database (one worker at a time across processes and instances)."""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import String, delete, or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from app.adapters.store.base import Base, Database, UTCDateTime


class LeaseRow(Base):
    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(256))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class LeaseStore(Database):
    """Take, renew, hand over and give back leases (app.adapters.lease.Lease uses these)."""

    def acquire_lease(self, name: str, holder: str, ttl_seconds: float) -> bool:
        """Take or renew a lease if it is free, expired or already ours; True if we hold it now."""
        now = self.clock()
        until = now + timedelta(seconds=ttl_seconds)
        with self._tx(write=True) as s:
            result = s.execute(
                update(LeaseRow).where(LeaseRow.name == name, or_(LeaseRow.holder == holder, LeaseRow.expires_at <= now))
                .values(holder=holder, expires_at=until)
            )
            if result.rowcount == 1:
                return True
            if s.get(LeaseRow, name) is not None:
                return False
        try:
            with self._tx(write=True) as s:
                s.add(LeaseRow(name=name, holder=holder, expires_at=until))
            return True
        except IntegrityError:  # another process created it first
            return False

    def steal_lease(self, name: str, old_holder: str, new_holder: str, ttl_seconds: float) -> bool:
        """Hand a lease from a holder known to be dead to a new one, only if the old one still has it."""
        until = self.clock() + timedelta(seconds=ttl_seconds)
        with self._tx(write=True) as s:
            result = s.execute(
                update(LeaseRow).where(LeaseRow.name == name, LeaseRow.holder == old_holder)
                .values(holder=new_holder, expires_at=until)
            )
            return result.rowcount == 1

    def release_lease(self, name: str, holder: str) -> None:
        """Give a lease back if we hold it."""
        with self._tx(write=True) as s:
            s.execute(delete(LeaseRow).where(LeaseRow.name == name, LeaseRow.holder == holder))

    def lease_holder(self, name: str) -> tuple[str, datetime] | None:
        """Return who holds a lease and until when (even if expired), or None."""
        with self._tx() as s:
            row = s.get(LeaseRow, name)
            return (row.holder, row.expires_at) if row else None

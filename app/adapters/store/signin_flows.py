"""Pending sign-in flows: kept (already encrypted) between the sign-in redirect and the authority's callback."""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import String, Text, delete
from sqlalchemy.orm import Mapped, mapped_column

from app.adapters.store.base import Base, Database, UTCDateTime


class SignInFlowRow(Base):
    __tablename__ = "sign_in_flows"

    state: Mapped[str] = mapped_column(String(128), primary_key=True)
    blob: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class SignInFlowStore(Database):
    """Keep a sign-in flow until its callback takes it, once."""

    def put_sign_in_flow(self, state: str, blob: str, ttl_seconds: int) -> None:
        """Keep an (already encrypted) sign-in flow until its callback arrives, at most ttl_seconds."""
        if not state or ttl_seconds <= 0:
            raise ValueError("a sign-in flow needs a state and a positive lifetime")
        now = self.clock()
        with self._tx(write=True) as s:
            s.execute(delete(SignInFlowRow).where(SignInFlowRow.expires_at < now))
            s.merge(SignInFlowRow(state=state, blob=blob, expires_at=now + timedelta(seconds=ttl_seconds)))

    def take_sign_in_flow(self, state: str) -> str | None:
        """Return and delete a sign-in flow (single use); None if unknown, used or expired."""
        if not state:
            return None
        with self._tx(write=True) as s:
            row = s.get(SignInFlowRow, state)
            if row is None:
                return None
            blob, expires_at = row.blob, row.expires_at
            # Only the caller whose DELETE removed the row may use it: two racing callbacks get one flow.
            taken = s.execute(delete(SignInFlowRow).where(SignInFlowRow.state == state)).rowcount == 1
        return blob if taken and expires_at > self.clock() else None

    def purge_sign_in_flows(self, now: datetime, limit: int) -> int:
        """Delete at most limit sign-in flows that expired unused; return how many went."""
        return self.delete_oldest(SignInFlowRow.state, SignInFlowRow.expires_at < now,
                                  order_by=SignInFlowRow.expires_at, limit=limit)

"""The worker's last look at the bypass group: how many members it had, and how many no open grant backed.

The worker writes it after each reconcile; a scrape of /metrics reads it, so every instance reports what the
lease-holding worker last saw (a gauge in the worker's own process would go stale on a standby). Counts
only: the members themselves are listed fresh from the directory on the desk's "now" page.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.adapters.store.base import Base, Database, UTCDateTime

BYPASS_GROUP = "bypass"  # the one group the portal manages (the row's key, so a second group could follow)


class BypassCheckRow(Base):
    __tablename__ = "bypass_checks"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    checked_at: Mapped[datetime] = mapped_column(UTCDateTime())
    members: Mapped[int] = mapped_column(Integer)
    without_grant: Mapped[int] = mapped_column(Integer)


@dataclass(frozen=True)
class BypassCheck:
    """What the worker last found in the bypass group, after it had removed what it may."""

    checked_at: datetime
    members: int
    without_grant: int  # members no open grant backs: added by hand, or by a grant a restored database forgot


class BypassCheckStore(Database):
    """Keep the worker's last look at the bypass group (one row, overwritten)."""

    def record_bypass_check(self, *, members: int, without_grant: int, at: datetime) -> None:
        """Overwrite the last look at the bypass group."""
        with self._tx(write=True) as s:
            s.merge(BypassCheckRow(name=BYPASS_GROUP, checked_at=at, members=members, without_grant=without_grant))

    def last_bypass_check(self) -> BypassCheck | None:
        """Return the worker's last look at the bypass group, or None before its first reconcile."""
        with self._tx() as s:
            row = s.get(BypassCheckRow, BYPASS_GROUP)
            return BypassCheck(row.checked_at, row.members, row.without_grant) if row else None

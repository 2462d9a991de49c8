"""A unit of work: one transaction in which a grant's change and its audit event commit together or not at all."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from sqlalchemy.orm import Session

from app.adapters.store.audit import AuditLog
from app.adapters.store.base import Database
from app.adapters.store.grants import Grants
from app.adapters.store.invites import Invites


@dataclass(frozen=True)
class UnitOfWork:
    """The tables a use case changes together, inside one transaction."""

    grants: Grants
    audit: AuditLog
    invites: Invites
    session: Session  # for a table outside these to join the transaction: OutboxStore.queue(session=...)


class UnitOfWorkStore(Database):
    """Open units of work on the store's database."""

    @contextmanager
    def unit_of_work(self) -> Iterator[UnitOfWork]:
        """Run a block in one write transaction: committed at its end, rolled back entirely if it raises."""
        with self._tx(write=True) as session:
            yield UnitOfWork(grants=Grants(session), audit=AuditLog(session, self.clock), invites=Invites(session),
                             session=session)

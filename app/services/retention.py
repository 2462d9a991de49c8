"""Retention: the worker deletes what the portal no longer needs, a bounded chunk per cycle."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable, Protocol

from app.domain.grants import utc_now

log = logging.getLogger(__name__)
CHUNK = 500  # rows per table per cycle: a backlog drains over cycles instead of holding the write lock


class RetentionStore(Protocol):
    def purge_audit_events(self, before: datetime, limit: int) -> int: ...
    def purge_closed_grants(self, before: datetime, limit: int) -> int: ...
    def purge_sign_in_flows(self, now: datetime, limit: int) -> int: ...


class ExpiringSessions(Protocol):
    def purge_expired(self, now: datetime, limit: int) -> int: ...


class DoneMail(Protocol):
    def purge_done(self, before: datetime, limit: int) -> int: ...


class EndedInvites(Protocol):
    def purge_ended(self, before: datetime, limit: int) -> int: ...


class OldScans(Protocol):
    def purge_before(self, before: datetime, limit: int) -> int: ...


class ClosedBatches(Protocol):
    def purge_closed(self, before: datetime, limit: int) -> int: ...


class RevokedKiosks(Protocol):
    def purge_revoked(self, before: datetime, limit: int) -> int: ...


@dataclass(frozen=True)
class RetentionPolicy:
    """How long each kind of record is kept (docs/privacy.md says why)."""

    audit_days: int
    grant_days: int
    mail_days: int = 90


class Retention:
    """Purge audit events, ended grants and sent mail past their retention; sessions and sign-ins past their end."""

    def __init__(self, store: RetentionStore, policy: RetentionPolicy, *, sessions: ExpiringSessions | None = None,
                 outbox: DoneMail | None = None, invites: EndedInvites | None = None,
                 scans: OldScans | None = None, batches: ClosedBatches | None = None,
                 kiosks: RevokedKiosks | None = None, chunk: int = CHUNK,
                 clock: Callable[[], datetime] = utc_now):
        self.store = store
        self.policy = policy
        self.sessions = sessions
        self.outbox = outbox
        self.invites = invites
        self.scans = scans
        self.batches = batches
        self.kiosks = kiosks
        self.chunk = chunk
        self.clock = clock

    def purge(self) -> dict[str, int]:
        """Delete at most one chunk of each kind; return how many rows of each went."""
        now = self.clock()
        purged = {
            "audit_events": self.store.purge_audit_events(now - timedelta(days=self.policy.audit_days), self.chunk),
            "grants": self.store.purge_closed_grants(now - timedelta(days=self.policy.grant_days), self.chunk),
            "sign_in_flows": self.store.purge_sign_in_flows(now, self.chunk),
        }
        if self.sessions is not None:
            purged["portal_sessions"] = self.sessions.purge_expired(now, self.chunk)
        if self.outbox is not None:
            purged["outbox"] = self.outbox.purge_done(now - timedelta(days=self.policy.mail_days), self.chunk)
        if self.invites is not None:  # an invite lives as long as its mail: used, revoked or expired that long ago
            purged["invites"] = self.invites.purge_ended(now - timedelta(days=self.policy.mail_days), self.chunk)
        if self.scans is not None:  # a scan's report names students: kept as long as mail about them
            purged["scans"] = self.scans.purge_before(now - timedelta(days=self.policy.mail_days), self.chunk)
        if self.batches is not None:  # a closed batch (names, addresses) as long as its invites
            purged["batches"] = self.batches.purge_closed(now - timedelta(days=self.policy.mail_days), self.chunk)
        if self.kiosks is not None:  # a revoked kiosk (staff names) as long as the audit events that name it
            purged["kiosks"] = self.kiosks.purge_revoked(now - timedelta(days=self.policy.audit_days), self.chunk)
        if any(purged.values()):
            log.info("retention: purged %s", " ".join(f"{k}={v}" for k, v in purged.items()))
        return purged

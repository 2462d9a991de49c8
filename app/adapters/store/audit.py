"""The audit trail: who acted (kind and id), what, about whom, why; append-only, secrets redacted."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

from sqlalchemy import Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from app.adapters.store.base import Base, Database, UTCDateTime
from app.domain.actors import Actor
from app.domain.audit import AuditQuery
from app.domain.upn import Upn

INFO, WARNING = "info", "warning"
SEVERITIES = (INFO, WARNING)  # warning: worth a person's look (a privileged account trying to unlock, a cap passed)
_SECRET_KEY = re.compile(r"password|secret|token|credential|^code$|tap_code|assertion", re.IGNORECASE)
REDACTED = "(redacted)"


class AuditRow(Base):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    actor_kind: Mapped[str] = mapped_column(String(16), default="", server_default="")  # ActorKind; "" before 0005
    actor: Mapped[str] = mapped_column(String(320))  # the actor's id
    action: Mapped[str] = mapped_column(String(64), index=True)
    upn: Mapped[str | None] = mapped_column(String(320), nullable=True, index=True)  # the target student
    grant_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    outcome: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text, default="", server_default="")
    severity: Mapped[str] = mapped_column(String(16), default=INFO, server_default=INFO, index=True)
    detail: Mapped[str] = mapped_column(Text, default="{}")


@dataclass(frozen=True)
class AuditEvent:
    """One line of the audit trail."""

    id: int
    at: datetime
    actor: str  # the actor's id: a UPN, cli:<user>, worker, a client address
    action: str
    upn: str | None  # the student the event is about
    grant_id: int | None
    outcome: str
    detail: dict[str, Any]
    actor_kind: str = ""  # an ActorKind value ("" for events written before actors were recorded)
    reason: str = ""
    severity: str = INFO


def redact(detail: dict[str, Any]) -> dict[str, Any]:
    """Replace values whose key names a secret, so the audit trail never holds one."""
    return {k: (REDACTED if _SECRET_KEY.search(k) else v) for k, v in detail.items()}


class AuditLog:
    """The audit trail inside one transaction: an event added here commits with the change it records."""

    def __init__(self, session: Session, clock: Callable[[], datetime]):
        self.session = session
        self.clock = clock

    def add(self, actor: Actor, action: str, upn: str | None = None, grant_id: int | None = None,
            outcome: str = "ok", *, reason: str = "", severity: str = INFO, **detail: Any) -> None:
        """Append one event: who (kind and id), what, about whom, why (secret-looking keys redacted)."""
        if not isinstance(actor, Actor):
            raise TypeError(f"the audit trail needs an Actor, not {actor!r}")
        if severity not in SEVERITIES:
            raise ValueError(f"an audit event's severity is one of {SEVERITIES}, not {severity!r}")
        target = Upn.parse(upn) if upn else None
        if upn and target is None:
            detail = {**detail, "given_upn": upn[:320]}  # not a UPN (refused input): kept as given, not as a key
        if actor.role:  # a staff member's role at the time: every event of theirs says in which they acted
            detail = {"role": actor.role, **detail}
        self.session.add(AuditRow(
            at=self.clock(), actor_kind=actor.kind.value, actor=actor.id[:320], action=action, upn=target,
            reason=" ".join((reason or actor.reason).split()), severity=severity,
            grant_id=grant_id, outcome=outcome, detail=json.dumps(redact(detail), default=str, sort_keys=True),
        ))

    def search(self, query: AuditQuery, *, before_id: int | None = None, limit: int = 50) -> list[AuditEvent]:
        """Return the events the query selects, newest first, older than before_id (keyset pages)."""
        select_ = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
        conditions = []
        if before_id is not None:
            conditions.append(AuditRow.id < before_id)
        if query.since is not None:
            conditions.append(AuditRow.at >= query.since)
        if query.until is not None:
            conditions.append(AuditRow.at < query.until)
        if query.actor:
            conditions.append(AuditRow.actor == (Upn.parse(query.actor) or query.actor))
        if query.upn:
            conditions.append(AuditRow.upn == (Upn.parse(query.upn) or query.upn))
        if query.action.endswith("."):  # a family: escaped, so a % or _ typed in a filter matches itself
            family = query.action.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            conditions.append(AuditRow.action.like(family + "%", escape="\\"))
        elif query.action:
            conditions.append(AuditRow.action == query.action)
        if query.outcome:
            conditions.append(AuditRow.outcome == query.outcome)
        return [_event(r) for r in self.session.scalars(select_.where(*conditions))]

    def recent_upns(self, since: datetime, limit: int) -> list[str]:
        """Return at most limit distinct students the trail names since a time (for reference codes)."""
        query = select(AuditRow.upn).where(AuditRow.at >= since, AuditRow.upn.is_not(None)).distinct().limit(limit)
        return [u for u in self.session.scalars(query) if u]

    def events(self, upn: str | None = None, limit: int = 100, *, grant_id: int | None = None,
               action: str | None = None, severity: str | None = None) -> list[AuditEvent]:
        """Return audit events, newest first, optionally for one person, grant, action or severity."""
        query = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
        if severity:
            query = query.where(AuditRow.severity == severity)
        if upn:
            query = query.where(AuditRow.upn == (Upn.parse(upn) or upn))
        if grant_id is not None:
            query = query.where(AuditRow.grant_id == grant_id)
        if action:
            query = query.where(AuditRow.action == action)
        return [_event(r) for r in self.session.scalars(query)]


def _event(row: AuditRow) -> AuditEvent:
    return AuditEvent(id=row.id, at=row.at, actor=row.actor, action=row.action, upn=row.upn, grant_id=row.grant_id,
                      outcome=row.outcome, detail=json.loads(row.detail or "{}"), actor_kind=row.actor_kind,
                      reason=row.reason, severity=row.severity)


class AuditStore(Database):
    """The Store's audit verbs, each in a transaction of its own (events with no state change to join)."""

    def audit(self, actor: Actor, action: str, upn: str | None = None, grant_id: int | None = None,
              outcome: str = "ok", *, reason: str = "", severity: str = INFO, **detail: Any) -> None:
        """Append one event to the audit trail: who (kind and id), what, about whom, why (secrets redacted)."""
        with self._tx(write=True) as s:
            AuditLog(s, self.clock).add(actor, action, upn, grant_id, outcome, reason=reason, severity=severity,
                                        **detail)

    def audit_events(self, upn: str | None = None, limit: int = 100, *, grant_id: int | None = None,
                     action: str | None = None, severity: str | None = None) -> list[AuditEvent]:
        """Return audit events, newest first, optionally for one person, grant, action or severity."""
        with self._tx() as s:
            return AuditLog(s, self.clock).events(upn, limit, grant_id=grant_id, action=action, severity=severity)

    def search_audit(self, query: AuditQuery, *, before_id: int | None = None, limit: int = 50) -> list[AuditEvent]:
        """Return the events a filter selects, newest first, one keyset page at a time."""
        with self._tx() as s:
            return AuditLog(s, self.clock).search(query, before_id=before_id, limit=limit)

    def recent_upns(self, since: datetime, limit: int) -> list[str]:
        """Return at most limit distinct students the audit trail names since a time."""
        with self._tx() as s:
            return AuditLog(s, self.clock).recent_upns(since, limit)

    def purge_audit_events(self, before: datetime, limit: int) -> int:
        """Delete at most limit audit events older than before, oldest first; return how many went."""
        return self.delete_oldest(AuditRow.id, AuditRow.at < before, order_by=AuditRow.id, limit=limit)

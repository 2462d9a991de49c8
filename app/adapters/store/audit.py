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
        self.session.add(AuditRow(
            at=self.clock(), actor_kind=actor.kind.value, actor=actor.id[:320], action=action, upn=target,
            reason=" ".join((reason or actor.reason).split()), severity=severity,
            grant_id=grant_id, outcome=outcome, detail=json.dumps(redact(detail), default=str, sort_keys=True),
        ))

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
        return [
            AuditEvent(id=r.id, at=r.at, actor=r.actor, action=r.action, upn=r.upn, grant_id=r.grant_id,
                       outcome=r.outcome, detail=json.loads(r.detail or "{}"), actor_kind=r.actor_kind,
                       reason=r.reason, severity=r.severity)
            for r in self.session.scalars(query)
        ]


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

    def purge_audit_events(self, before: datetime, limit: int) -> int:
        """Delete at most limit audit events older than before, oldest first; return how many went."""
        return self.delete_oldest(AuditRow.id, AuditRow.at < before, order_by=AuditRow.id, limit=limit)

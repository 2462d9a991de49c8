"""Portal sessions as use cases: start one at sign-in, resolve the browser's token on each request, end them."""
from __future__ import annotations

from datetime import datetime
from typing import Callable, Protocol

from app.domain.actors import Actor, ActorKind
from app.domain.grants import utc_now
from app.domain.ports import AuditWriter
from app.domain.sessions import (
    SessionKind,
    SessionPolicy,
    SessionRecord,
    Verdict,
    new_token,
    token_hash,
    well_formed,
)
from app.domain.upn import Upn


class SessionTable(Protocol):
    def create_session(self, record: SessionRecord) -> None: ...
    def get_session(self, token_hash: str) -> SessionRecord | None: ...
    def touch_session(self, token_hash: str, at: datetime) -> None: ...
    def revoke_session(self, token_hash: str, *, at: datetime, by: str, reason: str) -> SessionRecord | None: ...
    def revoke_sessions_for(self, upn: str, *, at: datetime, by: str, reason: str,
                            kinds: tuple[SessionKind, ...] | None = None) -> int: ...


def owner_of(kind: SessionKind, upn: str) -> Actor:
    """Return the person a session belongs to, as the actor of its start and sign-out."""
    return Actor(ActorKind.STAFF, Upn(upn)) if kind is SessionKind.STAFF else Actor.student(upn)


class SessionService:
    """Start, resolve, end and revoke portal sessions; the browser only ever holds the random token."""

    def __init__(self, table: SessionTable, audit: AuditWriter, policy: SessionPolicy,
                 clock: Callable[[], datetime] | None = None):
        self.table = table
        self.audit = audit
        self.policy = policy
        self.clock = clock or utc_now

    def start(self, *, kind: SessionKind, upn: str, display_name: str, client_address: str = "",
              mfa: bool = False, replaces: str | None = None) -> str:
        """Open a new session and return its token; the browser's previous session, if any, ends (rotation)."""
        owner = owner_of(kind, upn)
        if replaces:
            self.end(replaces, actor=owner, reason="replaced by a new sign-in")
        now = self.clock()
        token = new_token()
        record = SessionRecord(
            token_hash=token_hash(token), kind=kind, upn=upn, display_name=display_name or upn, created_at=now,
            last_seen_at=now, expires_at=self.policy.expires_at(kind, now), mfa=mfa, client_address=client_address,
        )
        self.table.create_session(record)
        self.audit.audit(owner, "session.start", upn, kind=kind.value, mfa=mfa, client=client_address,
                         expires_at=record.expires_at.isoformat())
        return token

    def check(self, token: str | None) -> tuple[Verdict, SessionRecord | None]:
        """Say whether a browser's token opens a session now (one read; last-seen written at most once a minute)."""
        if not well_formed(token):
            return Verdict.UNKNOWN, None
        assert token is not None
        record = self.table.get_session(token_hash(token))
        now = self.clock()
        verdict = self.policy.verdict(record, now)
        if verdict is not Verdict.VALID:
            return verdict, record
        assert record is not None
        if self.policy.needs_touch(record, now):
            self.table.touch_session(record.token_hash, now)
        return verdict, record

    def resolve(self, token: str | None) -> SessionRecord | None:
        """Return the live session a token opens, or None."""
        verdict, record = self.check(token)
        return record if verdict is Verdict.VALID else None

    def end(self, token: str | None, *, actor: Actor, reason: str = "signed out") -> SessionRecord | None:
        """Revoke the session behind a token (sign-out); the same token never opens anything again."""
        if not well_formed(token):
            return None
        assert token is not None
        ended = self.table.revoke_session(token_hash(token), at=self.clock(), by=str(actor), reason=reason)
        if ended is not None:
            self.audit.audit(actor, "session.end", ended.upn, reason=reason, kind=ended.kind.value)
        return ended

    def revoke_sessions_for(self, upn: str, actor: Actor, reason: str = "ended by the service desk",
                            kinds: tuple[SessionKind, ...] | None = None) -> int:
        """End every live session of a person (the service desk's "sign them out everywhere"); return how many."""
        count = self.table.revoke_sessions_for(upn, at=self.clock(), by=str(actor), reason=reason, kinds=kinds)
        self.audit.audit(actor, "session.revoke_all", upn, reason=reason, sessions=count,
                         kinds=[k.value for k in kinds] if kinds else "all")
        return count

"""What happened, as events (blinker): the use cases send them; the audit feed, metrics and mail subscribe.

A use case knows only the signal it sends, never who listens. Events go out AFTER the change has
committed, so a subscriber never sees a change that was rolled back. Audit events that must commit
with the change itself (a grant's state) are written in the unit of work, not here: a subscriber
runs after the commit, so an audit written by one could be lost in a crash. What subscribes here
is what may follow the fact: the sign-in audit line, and later metrics and mail (through the outbox).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Mapping

from blinker import Signal

from app.domain.actors import Actor
from app.domain.grants import GrantState, GrantView
from app.domain.upn import Upn

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GrantEvent:
    """A grant changed: its state after the change, who did it and why."""

    grant: GrantView
    actor: Actor
    reason: str = ""


@dataclass(frozen=True)
class SignInEvent:
    """Someone finished (or failed) a sign-in. `code` says why a sign-in failed; no secret is ever in it."""

    actor: Actor  # the student who signed in, or the visitor (client address) whose sign-in failed
    upn: Upn | None = None
    code: str = ""


@dataclass(frozen=True)
class RefusalEvent:
    """Something was refused: who asked, what and why (a fixed code), from where, how serious. Never a secret."""

    actor: Actor  # the signed-in student, an admin at the CLI, staff, or a visitor named by the client address
    action: str  # unlock.refused, cancel.refused, csrf.refused, sign_in.refused, ...
    refusal: str  # a fixed code (a diagnosis reason, "unlock_cap", "csrf", "unknown_or_used_state", ...)
    upn: Upn | str | None = None  # the student it was about, if any
    client: str = ""  # the client address, or "cli"
    severity: str = "info"  # "warning": worth a person's look (a privileged account trying to unlock)
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CycleEvent:
    """The worker finished a full cycle; `counts` are the report's numbers (expired, released, errors, ...)."""

    counts: Mapping[str, int] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass(frozen=True)
class MailPassEvent:
    """The worker's mail pass handled some mail; `counts` says how it went (sent, retried, bounced, failed)."""

    counts: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class InviteEvent:
    """Invites changed: `change` is created, opened, used or revoked; `count` how many (a batch's are many)."""

    actor: Actor
    change: str
    count: int = 1


class Events:
    """The portal's signals. One set per assembled portal (wiring), so two apps never share subscribers."""

    def __init__(self) -> None:
        self.grant_opened = Signal("grant opened (intent written)")
        self.grant_activated = Signal("grant active (membership confirmed)")
        self.grant_released = Signal("grant released (a strong method appeared)")
        self.grant_expired = Signal("grant expired")
        self.grant_cancelled = Signal("grant cancelled")
        self.grant_failed = Signal("grant failed (unlock undone)")
        # Told INSIDE the grant's unit of work, before it commits, with uow=: a subscriber writes only through
        # the unit of work (the outbox's mail), so what it writes commits or rolls back with the change.
        self.grant_committing = Signal("a grant change is about to commit")
        self.sign_in_succeeded = Signal("sign-in succeeded")
        self.sign_in_failed = Signal("sign-in failed")
        self.refused = Signal("a request was refused (an unlock, a cancel, a form, a sign-in answer)")
        self.worker_cycle_done = Signal("worker cycle done")
        self.mail_pass_done = Signal("the worker's mail pass handled mail")
        self.invites_changed = Signal("invites were made, opened, used or revoked")

    def grant_changed(self, state: GrantState) -> Signal:
        """Return the signal for a grant that has just reached `state`."""
        return {
            GrantState.PENDING: self.grant_opened,
            GrantState.ACTIVE: self.grant_activated,
            GrantState.RELEASED: self.grant_released,
            GrantState.EXPIRED: self.grant_expired,
            GrantState.CANCELLED: self.grant_cancelled,
            GrantState.FAILED: self.grant_failed,
        }[state]

    def emit(self, signal: Signal, sender: Any, event: object, **context: Any) -> None:
        """Tell every subscriber; one that fails is logged and the others still hear (the change stands)."""
        for receiver in list(signal.receivers_for(sender)):
            try:
                receiver(sender, event=event, **context)
            except Exception:  # a subscriber's failure must not undo or hide a committed change
                log.exception("a subscriber of the event %r failed", signal.__doc__)


def subscribe_audit_feed(events: Events, store: Any) -> None:
    """Write the audit lines that follow a fact rather than commit with it: a sign-in that worked, a refusal.

    Refusals change nothing, so nothing can commit without its line. The web throttles them per client
    address before it sends them (web.audit_refusal).
    """

    def signed_in(_sender: Any, event: SignInEvent) -> None:
        store.audit(event.actor, "sign_in", upn=event.upn)

    def refused(_sender: Any, event: RefusalEvent) -> None:
        store.audit(event.actor, event.action, event.upn, outcome="refused", severity=event.severity,
                    refusal=event.refusal, client=event.client, **event.detail)

    # Strong references: these closures live as long as the portal's Events, not as long as this call.
    events.sign_in_succeeded.connect(signed_in, weak=False)
    events.refused.connect(refused, weak=False)

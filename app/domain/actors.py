"""Who acts: a student for themself, a staff member, an admin at the CLI, the worker, or an unknown visitor.

Every use case takes an Actor; the one eligibility policy (domain.state.unlock_refusal) decides for all of
them, and the audit trail records the actor's kind, id and reason.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from app.domain.upn import Upn

MAX_REASON = 500  # characters kept of a reason: enough for a ticket and a sentence


class ActorKind(str, Enum):
    """The kinds of actor the audit trail tells apart."""

    STUDENT = "student"  # a signed-in student, acting for themself only
    STAFF = "staff"  # a helpdesk member (role from the sign-in), for a student, with a reason
    CLI = "cli"  # an admin running `proofup` on a server, with a reason
    WORKER = "worker"  # the background worker (expiry, confirmation, reconciliation)
    VISITOR = "visitor"  # someone not (yet) signed in: a failed sign-in, a refused request


class ActorError(ValueError):
    """An actor cannot be made from these values (no reason, no id)."""


@dataclass(frozen=True)
class Actor:
    """One actor: kind, id (a UPN, `cli:<user>`, `worker`, a client address), role and reason."""

    kind: ActorKind
    id: str
    role: str = ""
    reason: str = ""

    @classmethod
    def student(cls, upn: str) -> "Actor":
        """Return the signed-in student acting for themself."""
        return cls(ActorKind.STUDENT, Upn(upn))

    @classmethod
    def staff(cls, upn: str, *, role: str, reason: str) -> "Actor":
        """Return a staff member acting for a student; a role and a reason are required."""
        if not role:
            raise ActorError("a staff member acts in a role")
        return cls(ActorKind.STAFF, Upn(upn), role=role, reason=_required_reason(reason))

    @classmethod
    def cli(cls, user: str, *, reason: str) -> "Actor":
        """Return an admin at the command line (`cli:<os user>`); a reason is required."""
        name = (user or "").strip()
        if not name or any(c.isspace() or not c.isprintable() for c in name):
            raise ActorError("the command line needs the admin's user name")
        return cls(ActorKind.CLI, f"cli:{name}", reason=_required_reason(reason))

    @classmethod
    def visitor(cls, address: str) -> "Actor":
        """Return an unknown visitor, named by the client address."""
        return cls(ActorKind.VISITOR, (address or "unknown")[:64])

    @property
    def acts_for_others(self) -> bool:
        """Tell whether this actor may act for a student other than themself (staff and CLI, with a reason)."""
        return self.kind in (ActorKind.STAFF, ActorKind.CLI)

    def is_self(self, upn: str) -> bool:
        """Tell whether the actor is the student with this UPN."""
        return self.kind is ActorKind.STUDENT and self.id == Upn.parse(upn)

    def __str__(self) -> str:
        return self.id


WORKER = Actor(ActorKind.WORKER, "worker")


def _required_reason(reason: str) -> str:
    text = " ".join((reason or "").split())  # one line: no line breaks reach the audit trail or a log
    if not text:
        raise ActorError("say why (a reason, e.g. a ticket number)")
    return text[:MAX_REASON]

"""The service desk's staff: their roles, the MFA a staff session needs, and the look-up's bounds. No I/O.

Student sessions are password-only by design (a stuck student has no second factor); a staff session is
accepted only when the sign-in authority vouches for multi-factor authentication in the id_token.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Mapping

from app.domain.actors import Actor, ActorKind
from app.domain.directory import DirectoryUser

# AD FS puts this in `amr` (and `authmethod`) after MFA; Entra puts "mfa" in `amr` (DOMAIN.md section 7).
ADFS_MFA = "http://schemas.microsoft.com/claims/multipleauthn"
ENTRA_MFA = "mfa"
MFA_VALUES = frozenset({ADFS_MFA, ENTRA_MFA})
LOOKUP_LIMIT = 20  # people a look-up lists at most: enough to pick one, never the whole directory
MIN_QUERY = 2  # characters a look-up needs: one letter would list half the university
MAX_QUERY = 64  # characters of a look-up kept: a UPN or a name fits


class StaffRole(str, Enum):
    """What a staff member may do in the console."""

    HELPDESK = "helpdesk"  # looks up, grants, releases, extends, ends sessions, removes unrecorded members
    AUDITOR = "auditor"  # reads everything, changes nothing

    @property
    def can_act(self) -> bool:
        """Tell whether this role may change anything."""
        return self is StaffRole.HELPDESK


@dataclass(frozen=True)
class StaffGroups:
    """The two groups that give a role (nested membership counts)."""

    helpdesk_group_dn: str
    auditor_group_dn: str

    def role_of(self, user: DirectoryUser | None) -> StaffRole | None:
        """Return a person's role, read from their effective groups; None for a student or a disabled account."""
        if user is None or not user.enabled:
            return None
        if self.helpdesk_group_dn and user.in_group(self.helpdesk_group_dn):
            return StaffRole.HELPDESK
        if self.auditor_group_dn and user.in_group(self.auditor_group_dn):
            return StaffRole.AUDITOR
        return None


def acts_for_desk(actor: Actor) -> bool:
    """Tell whether an actor is a staff member acting in the helpdesk role (an auditor only reads)."""
    return actor.kind is ActorKind.STAFF and actor.role == StaffRole.HELPDESK.value


def may_change_desk_work(actor: Actor) -> bool:
    """Tell whether an actor may make or change invites and batches: the helpdesk role, an admin at the CLI, or
    the worker (a batch's checks and reminders)."""
    return acts_for_desk(actor) or actor.kind in (ActorKind.CLI, ActorKind.WORKER)


def shows_mfa(claims: Mapping[str, Any]) -> bool:
    """Tell whether verified id_token claims show multi-factor authentication (AD FS or Entra)."""
    amr = claims.get("amr", ())
    values = {amr} if isinstance(amr, str) else set(amr) if isinstance(amr, (list, tuple)) else set()
    values.add(claims.get("authmethod", ""))
    return bool(values & MFA_VALUES)


def look_up_query(text: str) -> str:
    """Return a look-up query as typed, trimmed and bounded ("" when too short to search)."""
    query = " ".join((text or "").split())[:MAX_QUERY]
    return query if len(query) >= MIN_QUERY else ""

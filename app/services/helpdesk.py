"""The service desk's use cases: who is staff, look a student up, act for them with a reason, "now", the trail.

Every action goes through the same policy, grant lifecycle and session service as the student's own pages;
this module adds the staff's role check, the stale-form check and the audit of every refusal.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable

from app.domain.actors import Actor, ActorKind
from app.domain.audit import AuditQuery
from app.domain.directory import DirectoryError, DirectoryUser, dn_key
from app.domain.errors import Refused
from app.domain.grants import GrantError, GrantState, GrantView, minutes_from_text, utc_now
from app.domain.reference import reference_code
from app.domain.sessions import SessionKind
from app.domain.staff import LOOKUP_LIMIT, StaffGroups, StaffRole, acts_for_desk, look_up_query
from app.domain.state import UNLOCK_CAP, Diagnosis
from app.domain.upn import Upn
from app.services.onboarding import NoOpenGrant, NotAllowed, UnlockRefused
from app.services.refusals import audited

REFERENCE_SHAPE = re.compile(r"^[A-Z2-7]{4}-?[A-Z2-7]{4}$")
# A reference code is matched against the students the trail names in this window (bounded work: HMACs).
REFERENCE_WINDOW = timedelta(days=30)
REFERENCE_CANDIDATES = 20_000
NOW_WINDOW = timedelta(days=1)  # "now" lists failures and refusals of the last day
NOW_LIMIT = 200  # rows per "now" section at most
EXPORT_LIMIT = 10_000  # audit events one CSV export holds at most (the filter narrows it)
STUDENT_KINDS = (SessionKind.STUDENT, SessionKind.KIOSK)
MAX_DN = 1024  # the longest member DN a removal looks at (the grants table's limit)


class StaffRefused(Refused):
    """The desk may not do this now; `code` names why (audited before raising)."""


@dataclass(frozen=True)
class StaffMember:
    """A signed-in staff member as the directory describes them right now."""

    upn: Upn
    display_name: str
    role: StaffRole

    def actor(self, reason: str | None = None) -> Actor:
        """Return this member as an actor: to act, with the reason (required, ActorError without); to read, without."""
        if reason is None:
            return Actor(ActorKind.STAFF, self.upn, role=self.role.value)
        return Actor.staff(self.upn, role=self.role.value, reason=reason)


@dataclass(frozen=True)
class StudentFile:
    """What the desk sees of one student: the diagnosis, the grants and the audit events."""

    upn: Upn
    diagnosis: Diagnosis | None
    grants: list[GrantView]
    events: list[Any]
    problem: str = ""  # "graph_unavailable" when the diagnosis could not be made
    reference: str = ""

    @property
    def open_grant(self) -> GrantView | None:
        return next((g for g in self.grants if g.open), None)


@dataclass(frozen=True)
class Unrecorded:
    """A member of the bypass group that no grant record backs (nobody granted it through the portal)."""

    dn: str
    upn: str = ""
    display_name: str = ""


@dataclass(frozen=True)
class NowView:
    """The "now" page: open grants, failed ones, unrecorded members, refusals worth a look."""

    open_grants: list[GrantView]
    failed: list[GrantView]
    unrecorded: list[Unrecorded]
    refusals: list[Any]
    directory_problem: str = ""
    at: datetime = field(default_factory=utc_now)


class HelpdeskService:
    """The console's use cases; every change is made by the student's own services, as a staff Actor."""

    def __init__(self, *, store, directory, onboarding, grants, sessions, groups: StaffGroups, bypass_group_dn: str,
                 grant_minutes: int = 30, reference_key: str = "", clock: Callable[[], datetime] | None = None):
        self.store = store
        self.directory = directory
        self.onboarding = onboarding
        self.grants = grants
        self.sessions = sessions
        self.groups = groups
        self.bypass_group_dn = bypass_group_dn
        self.grant_minutes = grant_minutes
        self.reference_key = reference_key
        self.clock = clock or utc_now

    @property
    def configured(self) -> bool:
        """Tell whether any staff group is set (without one the console lets nobody in)."""
        return bool(self.groups.helpdesk_group_dn or self.groups.auditor_group_dn)

    # -- who -------------------------------------------------------------------------------------

    def staff_member(self, upn: str) -> StaffMember | None:
        """Read a person's role from their groups now (one directory read); None when they have none."""
        user = self.directory.find_user(upn)
        role = self.groups.role_of(user)
        if user is None or role is None:
            return None
        return StaffMember(Upn(user.upn), user.display_name or user.upn, role)

    def refuse(self, actor: Actor, action: str, code: str, *, upn: str | None = None, client: str = "",
               severity: str = "info", **detail: Any) -> StaffRefused:
        """Audit a refused staff request and return the exception to raise."""
        return audited(StaffRefused, self.store, actor, action, code, upn=upn, client=client, severity=severity,
                       **detail)

    # -- look-up ---------------------------------------------------------------------------------

    def look_up(self, text: str) -> list[DirectoryUser]:
        """Find students by UPN, name, or the reference code their page shows; a bounded list."""
        query = look_up_query(text)
        if not query:
            return []
        if REFERENCE_SHAPE.match(query.upper()):
            found = self._by_reference(query.upper())
            if found is not None:
                return [found]
        return self.directory.search_users(query, LOOKUP_LIMIT)

    def _by_reference(self, code: str) -> DirectoryUser | None:
        wanted = code if "-" in code else f"{code[:4]}-{code[4:]}"
        since = self.clock() - REFERENCE_WINDOW
        for upn in self.store.recent_upns(since, REFERENCE_CANDIDATES):
            if reference_code(upn, self.reference_key) == wanted:
                return self.directory.find_user(upn)
        return None

    def student_file(self, upn: str) -> StudentFile:
        """Diagnose a student (one Graph round trip) and gather their grants and audit events."""
        upn = Upn(upn)
        problem, diagnosis = "", None
        try:
            diagnosis = self.onboarding.diagnose(upn)
        except Exception as exc:  # Graph down or throttled: the desk still sees history and can release
            if isinstance(exc, DirectoryError):
                raise
            problem = "graph_unavailable"
        return StudentFile(upn=upn, diagnosis=diagnosis, grants=self.store.grants_for(upn, 20),
                           events=self.store.audit_events(upn, 100), problem=problem,
                           reference=reference_code(upn, self.reference_key))

    # -- act -------------------------------------------------------------------------------------

    def _may_act(self, actor: Actor, action: str, upn: str, seen_grant: int | None, client: str) -> GrantView | None:
        """Check the role and the form's freshness; return the student's open grant."""
        if not acts_for_desk(actor):
            raise self.refuse(actor, action, "read_only", upn=upn, client=client, severity="warning")
        current = self.store.open_grant_for(upn)
        if seen_grant is not None and (current.id if current else 0) != seen_grant:
            raise self.refuse(actor, action, "stale_form", upn=upn, client=client, seen_grant=seen_grant,
                              current_grant=current.id if current else 0)
        return current

    def _minutes(self, actor: Actor, action: str, upn: str, text: str | int, client: str) -> int:
        """Read a typed grant length with the one length rule; refuse (audited) what it does not allow."""
        try:
            return minutes_from_text(str(text))
        except GrantError as exc:
            raise self.refuse(actor, action, "bad_minutes", upn=upn, client=client, minutes=str(text)[:16],
                              message=str(exc)) from None

    def grant(self, actor: Actor, upn: str, *, minutes: int | str, override_cap: bool = False,
              seen_grant: int | None = None, client: str = "") -> GrantView:
        """Open a grant for a student under the self-service policy (a helpdesk member may pass the cap)."""
        upn = Upn(upn)
        self._may_act(actor, "helpdesk.grant", upn, seen_grant, client)
        minutes = self._minutes(actor, "helpdesk.grant", upn, minutes, client)
        try:
            _, record = self.onboarding.unlock(upn, actor=actor, minutes=minutes, override_cap=override_cap,
                                               client=client)
        except UnlockRefused as exc:  # audited by the unlock itself
            raise StaffRefused(exc.code) from None
        self._done(actor, "helpdesk.grant", upn, record.id, client, minutes=minutes, override_cap=override_cap)
        return record

    def issue_tap(self, actor: Actor, upn: str, *, override_cap: bool = False, seen_grant: int | None = None,
                  client: str = "") -> tuple[GrantView, Any]:
        """Make a one-time pass for a student in front of the desk (the identity check is the desk's); shown once."""
        upn = Upn(upn)
        self._may_act(actor, "helpdesk.tap", upn, seen_grant, client)
        try:
            _, record, issued = self.onboarding.issue_tap(upn, actor=actor, override_cap=override_cap, client=client)
        except UnlockRefused as exc:  # audited by issue_tap (TapRefused says whether the bypass is the way)
            raise StaffRefused(exc.code, fallback=getattr(exc, "fallback", None)) from None
        if issued is None:
            raise self.refuse(actor, "helpdesk.tap", "already_unlocked", upn=upn, client=client)
        self._done(actor, "helpdesk.tap", upn, record.id, client, override_cap=override_cap,
                   lifetime_minutes=issued.lifetime_minutes)
        return record, issued

    def _done(self, actor: Actor, action: str, upn: str, grant_id: int | None, client: str, **detail: Any) -> None:
        """Audit a desk action that went through: who, in which role, why, from where."""
        # The grant's own events record each step of the change; this one adds the desk's side of it.
        self.store.audit(actor, action, upn, grant_id, client=client, **detail)

    def release(self, actor: Actor, upn: str, *, seen_grant: int | None = None, client: str = "") -> None:
        """Close a student's open grant (membership out first), as cancelled by the desk."""
        upn = Upn(upn)
        current = self._may_act(actor, "helpdesk.release", upn, seen_grant, client)
        try:
            self.onboarding.cancel(upn, actor=actor, client=client)
        except (NoOpenGrant, NotAllowed):  # audited by cancel
            raise StaffRefused("no_open_grant") from None
        self._done(actor, "helpdesk.release", upn, current.id if current else None, client)

    def extend(self, actor: Actor, upn: str, *, minutes: int | str, seen_grant: int | None = None,
               client: str = "") -> GrantView:
        """Let a student's open grant run `minutes` from now, within the maximum."""
        upn = Upn(upn)
        current = self._may_act(actor, "helpdesk.extend", upn, seen_grant, client)
        if current is None:
            raise self.refuse(actor, "helpdesk.extend", "no_open_grant", upn=upn, client=client)
        minutes = self._minutes(actor, "helpdesk.extend", upn, minutes, client)
        try:
            extended = self.grants.extend_grant(current.id, minutes=minutes, actor=actor, reason=actor.reason)
        except GrantError as exc:
            raise self.refuse(actor, "helpdesk.extend", "not_extended", upn=upn, client=client,
                              minutes=minutes, message=str(exc)) from None
        self._done(actor, "helpdesk.extend", upn, current.id, client, minutes=minutes)
        return extended

    def end_sessions(self, actor: Actor, upn: str, *, client: str = "") -> int:
        """End every portal session of a student (their own and kiosk ones); return how many."""
        upn = Upn(upn)
        self._may_act(actor, "helpdesk.end_sessions", upn, None, client)
        count = self.sessions.revoke_sessions_for(upn, actor, reason=actor.reason, kinds=STUDENT_KINDS)
        self._done(actor, "helpdesk.end_sessions", upn, None, client, sessions=count)
        return count

    def remove_unrecorded(self, actor: Actor, dn: str, *, client: str = "") -> bool:
        """Remove a bypass member no open grant backs (checked again now); True if removed.

        The desk's button and `proofup remove-member` (an admin at the server, actor kind cli) both end here.
        """
        dn = dn[:MAX_DN]
        action = "cli.remove_member" if actor.kind is ActorKind.CLI else "helpdesk.remove_member"
        if actor.kind is not ActorKind.CLI and not acts_for_desk(actor):
            raise self.refuse(actor, action, "read_only", client=client, member_dn=dn, severity="warning")
        if dn_key(dn) not in {dn_key(m) for m in self.directory.list_members(self.bypass_group_dn)}:
            raise self.refuse(actor, action, "not_a_member", client=client, member_dn=dn)
        if self.store.open_grant_for_dn(dn) is not None:
            raise self.refuse(actor, action, "has_open_grant", client=client, member_dn=dn)
        removed = self.directory.remove_member(self.bypass_group_dn, dn)
        self._done(actor, action, None, None, client, member_dn=dn, removed=removed)
        return removed

    # -- now -------------------------------------------------------------------------------------

    def now(self) -> NowView:
        """Gather the "now" page: database reads and one listing of the bypass group; no Graph request."""
        now = self.clock()
        since = now - NOW_WINDOW
        problem, unrecorded = "", []
        try:
            unrecorded = self.unrecorded_members()
        except DirectoryError:
            problem = "directory_unavailable"
        refusals = [e for e in self.store.search_audit(_refusal_query(since), limit=NOW_LIMIT) if _worth_a_look(e)]
        return NowView(open_grants=self.store.open_grants(),
                       failed=self.store.grants_ended_since(GrantState.FAILED, since, NOW_LIMIT),
                       unrecorded=unrecorded, refusals=refusals, directory_problem=problem, at=now)

    def unrecorded_members(self) -> list[Unrecorded]:
        """List bypass members no grant record ever backed (read fresh: one group listing, one query)."""
        members = self.directory.list_members(self.bypass_group_dn)
        ours = self.store.dns_with_grants(members)
        return [Unrecorded(dn) for dn in members if not ours[dn]][:NOW_LIMIT]

    # -- the audit trail ---------------------------------------------------------------------------

    def audit_page(self, query: AuditQuery, *, before_id: int | None = None, limit: int = 50) -> list[Any]:
        """Return one page of the filtered audit trail, newest first."""
        return self.store.search_audit(query, before_id=before_id, limit=limit)

    def export(self, actor: Actor, query: AuditQuery, *, client: str = "") -> list[Any]:
        """Return the filtered trail for a CSV export (bounded), and audit the export itself."""
        events = self.store.search_audit(query, limit=EXPORT_LIMIT)
        self._done(actor, "audit.exported", None, None, client, rows=len(events), filter=query.given())
        return events


def _refusal_query(since: datetime) -> AuditQuery:
    return AuditQuery(since=since, action="unlock.")


def _worth_a_look(event) -> bool:
    """Keep privileged accounts trying to unlock, caps reached and caps overridden."""
    if event.action in ("unlock.cap_reached", "unlock.cap_override"):
        return True
    return event.action == "unlock.refused" and (
        event.severity == "warning" or event.detail.get("refusal") == UNLOCK_CAP)

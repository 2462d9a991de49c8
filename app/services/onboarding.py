"""The student's use cases: diagnose, unlock, follow the status until done, cancel."""
from __future__ import annotations

import threading
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Protocol

from app.domain.actors import Actor
from app.domain.directory import DirectoryUser
from app.domain.errors import Refused
from app.domain.evidence import Evidence, GraphError, TemporaryAccessPass
from app.domain.grants import GrantState, utc_now
from app.domain.ports import Directory, Graph
from app.domain.state import (
    UNLOCK_WINDOW,
    Diagnosis,
    GrantFacts,
    Policy,
    Reason,
    State,
    acting_refusal,
    classify,
    remedies_offered,
    remedy_refusal,
)
from app.domain.tap import Remedy, TapRefusal, refusal_for, tap_refusal
from app.domain.upn import Upn
from app.services.events import Events, RefusalEvent

# The evidence a diagnosis just gathered is reused by an unlock within this time (one Graph call saved);
# a method registered meanwhile is caught by the grant's first check, which then releases it at once.
EVIDENCE_REUSE_SECONDS = 30.0
# Per-student locks are striped: bounded memory however many students pass through one process.
LOCK_STRIPES = 256
SELF_SERVICE_REASON = "self-service unlock"
SELF_CANCEL_REASON = "cancelled by the student"


class NotAllowed(Refused):
    """The policy does not allow this actor to do this; `code` names the reason."""


class UnlockRefused(NotAllowed):
    """The policy does not allow this unlock; `code` names the reason, `diagnosis` the state."""

    def __init__(self, code: str, diagnosis: Diagnosis):
        super().__init__(code)
        self.diagnosis = diagnosis


class TapRefused(UnlockRefused):
    """No pass was created (the tenant or Graph refused); `fallback` is the other remedy the student may take."""

    def __init__(self, code: str, diagnosis: Diagnosis, fallback: Remedy | None = None):
        super().__init__(code, diagnosis)
        self.fallback = fallback


class NoOpenGrant(Refused):
    """The student has no open grant (a stale tab, or it was already closed)."""


class GrantRecord(Protocol):
    """The fields of the store's grant view that this service reads."""

    id: int
    upn: Upn
    user_dn: str
    entra_user_id: str
    state: GrantState
    expires_at: datetime | None
    dc_confirmed: bool
    created_at: datetime | None
    last_checked_at: datetime | None
    end_reason: str
    check_wanted_at: datetime | None
    check_note: str


class GrantStore(Protocol):
    def open_grant_for(self, upn: Upn) -> GrantRecord | None: ...
    def grants_for(self, upn: Upn) -> list[GrantRecord]: ...
    def unlocks_since(self, upn: Upn, since: datetime) -> int: ...
    def audit(self, actor: Actor, action: str, upn: str | None = None, grant_id: int | None = None,
              outcome: str = "ok", *, reason: str = "", severity: str = "info", **detail: Any) -> None: ...
    def want_check(self, grant_id: int, at: datetime) -> bool: ...


class Grants(Protocol):
    def open_grant(self, *, upn: str, user_dn: str, entra_user_id: str, actor: Actor, reason: str,
                   minutes: int, invite_id: int | None = None) -> GrantRecord: ...
    def close_grant(self, grant_id: int, *, outcome: str, actor: Actor, reason: str) -> Any: ...
    def open_tap(self, *, upn: str, user_dn: str, entra_user_id: str, actor: Actor, reason: str,
                 lifetime_minutes: int, one_time: bool = True,
                 invite_id: int | None = None) -> tuple[GrantRecord, TemporaryAccessPass | None]: ...
    def recheck_replication(self, grant_id: int, *, actor: Actor) -> Any: ...


# The guide page's phase for each way a grant can end (one source: GrantState).
END_PHASES = {GrantState.RELEASED: "done", GrantState.EXPIRED: "expired", GrantState.CANCELLED: "cancelled",
              GrantState.FAILED: "failed"}


@dataclass(frozen=True)
class GrantStatus:
    """What the guide page's live status shows; `phase` drives the page and the JSON."""

    phase: str  # none | propagating | waiting | done | expired | cancelled | failed
    expires_at: datetime | None = None
    note: str = ""  # "graph_unavailable" | "budget" when the check could not run
    remedy: str = ""  # the open grant's remedy (bypass | tap), "" when none is open

    def as_json(self) -> dict[str, object]:
        return {
            "phase": self.phase,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "note": self.note,
        }


def _utc(value: datetime | None) -> datetime | None:
    """Treat naive datetimes from the database as UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=timezone.utc)


def grant_facts(record: GrantRecord | None) -> GrantFacts | None:
    """Reduce a store record to what classification needs."""
    if record is None:
        return None
    return GrantFacts(id=record.id, state=record.state, expires_at=_utc(record.expires_at),
                      dc_confirmed=bool(record.dc_confirmed))


def diagnosis_from(upn: Upn, user: DirectoryUser | None, evidence: Evidence | None, policy: Policy,
                   store: GrantStore, *, now: datetime, required_directly: bool) -> Diagnosis:
    """Classify one student from what AD and Graph said and their grant history (every diagnosis goes here)."""
    history = [grant_facts(g) for g in store.grants_for(upn)]
    open_grant = next((g for g in history if g.open), None)
    last_closed = next((g for g in history if not g.open), None)
    # Counted in the database, so every instance applies the same cap.
    used = store.unlocks_since(user.upn, now - UNLOCK_WINDOW) if user else 0
    return classify(upn, user, evidence, policy, open_grant=open_grant, last_grant=last_closed,
                    required_directly=required_directly, unlocks_in_window=used)


class OnboardingService:
    """Diagnose, unlock, confirm and cancel for one student at a time."""

    def __init__(self, *, directory: Directory, graph: Graph, store: GrantStore, grants: Grants,
                 policy: Policy, grant_minutes: int = 30, clock: Callable[[], datetime] | None = None, events: Events | None = None,
                 remedies: tuple[Remedy, ...] = (Remedy.BYPASS,)):
        self.directory = directory
        self.events = events or Events()  # refusals go out as events; the audit feed writes them
        self.graph = graph
        self.store = store
        self.events = events or Events()
        self.grants = grants
        self.policy = policy
        self.grant_minutes = grant_minutes
        self.remedies = remedies  # what PROOFUP_REMEDY allows, the preferred first
        self.clock = clock or utc_now
        self._recent: dict[str, tuple[datetime, Evidence]] = {}  # upn -> (when, evidence), for unlock
        self._recent_guard = threading.Lock()
        self._locks = tuple(threading.Lock() for _ in range(LOCK_STRIPES))

    # -- diagnose -----------------------------------------------------------------------------

    def diagnose(self, upn: Upn, *, reuse_recent: bool = False) -> Diagnosis:
        """Classify a student from AD, ONE Graph evidence round trip (or a recent one) and their grants."""
        upn = Upn(upn)
        user = self.directory.find_user(upn)
        evidence = self._evidence(user, reuse_recent)
        return self._classify(upn, user, evidence)

    def _evidence(self, user: DirectoryUser | None, reuse_recent: bool) -> Evidence | None:
        if user is None:
            return None  # nothing to unlock: spare the Graph budget
        key = user.upn
        recent = self._recent.get(key)
        if reuse_recent and recent and self._fresh(recent[0]):
            return recent[1]
        evidence = self.graph.gather_evidence(user.upn)
        for part in ("user", "methods"):
            error = evidence.errors.get(part)
            if error is not None and error.status != 404:
                # Without these the policy cannot tell "stuck" from "registered": refuse to guess.
                raise error
        with self._recent_guard:
            self._recent = {k: v for k, v in self._recent.items() if self._fresh(v[0])}
            self._recent[key] = (self.clock(), evidence)
        return evidence

    def _fresh(self, gathered_at: datetime) -> bool:
        return self.clock() - gathered_at < timedelta(seconds=EVIDENCE_REUSE_SECONDS)

    def _classify(self, upn: Upn, user: DirectoryUser | None, evidence: Evidence | None) -> Diagnosis:
        directly = bool(user) and self.directory.is_member(self.policy.required_group_dn, user.dn)
        return diagnosis_from(upn, user, evidence, self.policy, self.store, now=self.clock(),
                              required_directly=directly)

    # -- unlock -------------------------------------------------------------------------------

    def unlock(self, upn: Upn, *, actor: Actor, minutes: int | None = None, override_cap: bool = False,
               client: str = "", invite_id: int | None = None) -> tuple[Diagnosis, GrantRecord]:
        """Open a grant when the policy allows this actor to; a second click returns the grant already open.

        A refusal is audited (a privileged account's try as a warning) before UnlockRefused is raised.
        `invite_id`: the invite the student signed in with, so that closing its batch releases this grant.
        """
        with self._lock_for(upn):
            diagnosis = self.diagnose(upn, reuse_recent=True)
            if diagnosis.state == State.UNLOCKED and not acting_refusal(actor, diagnosis.upn):
                existing = self.store.open_grant_for(diagnosis.upn)
                if existing is not None:
                    return diagnosis, existing
            refusal = remedy_refusal(diagnosis, actor, Remedy.BYPASS, self.remedies, override_cap=override_cap)
            if refusal:
                self._audit_refusal(diagnosis, refusal, actor=actor, client=client)
                raise UnlockRefused(refusal, diagnosis)
            assert diagnosis.user is not None
            record = self.grants.open_grant(
                upn=diagnosis.user.upn, user_dn=diagnosis.user.dn, entra_user_id=diagnosis.entra_user_id,
                actor=actor, reason=actor.reason or SELF_SERVICE_REASON,
                minutes=self.grant_minutes if minutes is None else minutes, invite_id=invite_id,
            )
            self._audit_cap(diagnosis, record, actor=actor, client=client)
            return diagnosis, record

    # -- the Temporary Access Pass ------------------------------------------------------------

    def tap_refusal(self, diagnosis: Diagnosis) -> TapRefusal | None:
        """Return why the tenant would refuse this student a pass (None: it would issue one); reads are cached."""
        if Remedy.TAP not in self.remedies:
            return TapRefusal.NOT_CONFIGURED
        try:
            policy = self.graph.tap_policy()
            member_of = None
            if policy.enabled and policy.names_groups and diagnosis.entra_user_id:
                member_of = self.graph.member_groups(diagnosis.entra_user_id, policy.names_groups)
        except GraphError:
            return TapRefusal.UNAVAILABLE
        return tap_refusal(policy, member_of)

    def remedies_for(self, diagnosis: Diagnosis, actor: Actor) -> tuple[Remedy, ...]:
        """Return the remedies this actor may start for the student now, the preferred first (none: explain why)."""
        tap = self.tap_refusal(diagnosis) if Remedy.TAP in self.remedies and diagnosis.eligible else None
        return remedies_offered(diagnosis, actor, self.remedies, tap)

    def issue_tap(self, upn: Upn, *, actor: Actor, override_cap: bool = False, client: str = "",
                  invite_id: int | None = None) -> tuple[Diagnosis, GrantRecord, TemporaryAccessPass | None]:
        """Create a one-time pass for the student when the policy, the setting and the tenant allow it.

        The pass comes back once, with its grant; an open grant comes back with None (a pass is never shown
        twice). A refusal is audited and raised as TapRefused, naming the bypass as fallback where configured.
        """
        with self._lock_for(upn):
            diagnosis = self.diagnose(upn, reuse_recent=True)
            if diagnosis.state == State.UNLOCKED and not acting_refusal(actor, diagnosis.upn):
                existing = self.store.open_grant_for(diagnosis.upn)
                if existing is not None:
                    return diagnosis, existing, None
            tap = self.tap_refusal(diagnosis) if diagnosis.eligible else None
            refusal = remedy_refusal(diagnosis, actor, Remedy.TAP, self.remedies, tap, override_cap=override_cap)
            if refusal:
                self._audit_refusal(diagnosis, refusal, actor=actor, client=client, action="tap.refused")
                raise TapRefused(refusal, diagnosis, self._fallback(diagnosis, actor, override_cap))
            assert diagnosis.user is not None
            try:
                lifetime = self.graph.tap_policy().lifetime_for(self.grant_minutes)  # kept: no request
                record, issued = self.grants.open_tap(
                    upn=diagnosis.user.upn, user_dn=diagnosis.user.dn, entra_user_id=diagnosis.entra_user_id,
                    actor=actor, reason=actor.reason or SELF_SERVICE_REASON, lifetime_minutes=lifetime, one_time=True,
                    invite_id=invite_id)
            except GraphError as error:
                code = refusal_for(error).value
                self._audit_refusal(diagnosis, code, actor=actor, client=client, action="tap.refused")
                raise TapRefused(code, diagnosis, self._fallback(diagnosis, actor, override_cap)) from None
            self._audit_cap(diagnosis, record, actor=actor, client=client)
            return diagnosis, record, issued

    def _fallback(self, diagnosis: Diagnosis, actor: Actor, override_cap: bool) -> Remedy | None:
        """Return the bypass when it is configured and allowed for this student, else None."""
        allowed = remedy_refusal(diagnosis, actor, Remedy.BYPASS, self.remedies, override_cap=override_cap) is None
        return Remedy.BYPASS if allowed else None

    def _audit_refusal(self, diagnosis: Diagnosis, refusal: str, *, actor: Actor, client: str,
                       action: str = "unlock.refused") -> None:
        # A privileged account trying to unlock is worth a look: a stolen admin password, or a confused admin.
        severity = "warning" if diagnosis.reason == Reason.PRIVILEGED else "info"
        self._refuse(RefusalEvent(actor, action, refusal, diagnosis.upn, client, severity, detail={
            "state": diagnosis.state.value, "unlocks_in_window": diagnosis.unlocks_in_window,
            "max_unlocks": self.policy.max_unlocks}))

    def _refuse(self, event: RefusalEvent) -> None:
        self.events.emit(self.events.refused, self, event)

    def _audit_cap(self, diagnosis: Diagnosis, record: GrantRecord, *, actor: Actor, client: str) -> None:
        if diagnosis.capped:  # only staff asking to may get here: say so in the trail
            self.store.audit(actor, "unlock.cap_override", diagnosis.upn, record.id, severity="warning",
                             client=client, unlocks_in_window=diagnosis.unlocks_in_window,
                             max_unlocks=self.policy.max_unlocks)
        elif self.policy.cap_reached(diagnosis.unlocks_in_window + 1):
            self.store.audit(actor, "unlock.cap_reached", diagnosis.upn, record.id, client=client,
                             unlocks_in_window=diagnosis.unlocks_in_window + 1, max_unlocks=self.policy.max_unlocks)

    # -- status / confirm ---------------------------------------------------------------------

    def status(self, upn: str, *, check_now: bool = False) -> GrantStatus:
        """Report the grant's phase from the database alone; `check_now` asks the worker to check it first.

        Graph is never asked here: the worker's confirmation pass checks every due grant in bulk and releases
        it, so however many tabs poll, a poll costs one read (and `check_now` at most one small write).
        """
        record = self.store.open_grant_for(upn)
        if record is None:
            return self._closed_status(upn)
        remedy = getattr(record, "remedy", Remedy.BYPASS).value
        expires_at = _utc(record.expires_at)
        if not record.dc_confirmed:
            record = self.grants.recheck_replication(record.id, actor=Actor.student(record.upn)) or record
            if not record.dc_confirmed:
                return GrantStatus("propagating", expires_at=expires_at, remedy=remedy)
        if check_now and record.entra_user_id and record.check_wanted_at is None:
            self.store.want_check(record.id, self.clock())
        return GrantStatus("waiting", expires_at=expires_at, note=record.check_note, remedy=remedy)

    def _closed_status(self, upn: str) -> GrantStatus:
        history = self.store.grants_for(upn)
        if not history:
            return GrantStatus("none")
        return GrantStatus(END_PHASES.get(history[0].state, "failed"))

    # -- cancel -------------------------------------------------------------------------------

    def cancel(self, upn: Upn, *, actor: Actor, reason: str = "", client: str = "",
               grant_id: int | None = None) -> None:
        """Close the student's open grant as cancelled (removes the bypass membership), if this actor may.

        The reason is the actor's (staff and admins give one), else `reason` says how it came about. With
        `grant_id`, only that grant: a newer one the student opened since stays open (NoOpenGrant).
        """
        upn = Upn(upn)
        refusal = acting_refusal(actor, upn)
        if refusal:
            self._refuse(RefusalEvent(actor, "cancel.refused", refusal, upn, client))
            raise NotAllowed(refusal)
        with self._lock_for(upn):
            record = self.store.open_grant_for(upn)
            if record is None or grant_id not in (None, record.id):
                self._refuse(RefusalEvent(actor, "cancel.refused", "no_open_grant", upn, client))
                raise NoOpenGrant("no_open_grant", upn)
            self.grants.close_grant(record.id, outcome="cancelled", actor=actor,
                                    reason=actor.reason or reason or SELF_CANCEL_REASON)

    def _lock_for(self, upn: str) -> threading.Lock:
        return self._locks[zlib.crc32(Upn(upn).encode()) % LOCK_STRIPES]


"""Open and close bypass grants so that the directory and the grant records always find their way back together.

Order matters for crash safety: a grant is written as intent (pending) before LDAP is touched, and the
membership is removed before a grant is marked ended. Every step is idempotent, so the worker can repeat
whatever a crashed process left half-done. Each change of a grant commits in one unit of work with the
audit event that records it: a crash between them leaves neither.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Callable

from app.domain.actors import Actor
from app.domain.directory import DirectoryError, MembershipCheck
from app.domain.evidence import GraphError, TemporaryAccessPass
from app.domain.grants import (
    CloseOutcome,
    GrantError,
    GrantNotFound,
    GrantState,
    GrantView,
    check_minutes,
    end_state_for,
    released_by_registration,
    utc_now,
)
from app.domain.invites import led_to_unlock
from app.domain.ports import Directory, Graph, Store
from app.domain.tap import Remedy, refusal_for
from app.domain.upn import Upn
from app.services.events import Events, GrantEvent

log = logging.getLogger(__name__)


class GrantService:
    """The one place that changes bypass memberships, Temporary Access Passes and the grants that back them."""

    def __init__(self, store: Store, directory: Directory, *, bypass_group_dn: str, grant_minutes: int = 30,
                 use_ttl: bool = False, replication_wait_seconds: float = 20.0,
                 clock: Callable[[], datetime] = utc_now, events: Events | None = None, graph: Graph | None = None):
        if not bypass_group_dn:
            raise ValueError("GrantService needs the bypass group's DN")
        self.store = store
        self.directory = directory
        self.bypass_group_dn = bypass_group_dn
        self.grant_minutes = check_minutes(grant_minutes)
        self.use_ttl = use_ttl
        self.replication_wait_seconds = replication_wait_seconds
        self.clock = clock
        self.events = events or Events()
        self.graph = graph  # for Temporary Access Passes (PROOFUP_REMEDY=tap or both)

    def open_grant(self, *, upn: str, user_dn: str, entra_user_id: str, actor: Actor, reason: str,
                   minutes: int | None = None, invite_id: int | None = None) -> GrantView:
        """Give a person a bypass membership for a while; return their open grant if they have one.

        `invite_id` names the invite the student signed in with (from their browser: checked here, see _invite_of).
        """
        upn = Upn(upn)
        if not user_dn:
            raise ValueError("a grant needs the user's DN")
        minutes = check_minutes(self.grant_minutes if minutes is None else minutes)
        existing = self.store.open_grant_for(upn)
        if existing is not None:
            return existing
        now = self.clock()
        expires_at = now + timedelta(minutes=minutes)
        ttl = minutes * 60 if self.use_ttl else None
        with self.store.unit_of_work() as uow:
            invite_id = _invite_of(uow, upn, invite_id)
            grant, created = uow.grants.create(
                upn=upn, user_dn=user_dn, entra_user_id=entra_user_id, actor=str(actor), reason=reason,
                created_at=now, expires_at=expires_at, ttl_seconds=ttl, invite_id=invite_id,
            )
            if created:
                uow.audit.add(actor, "grant.intent", upn, grant.id, reason=reason, minutes=minutes,
                              expires_at=expires_at.isoformat(), **_invite_detail(invite_id))
        if not created:
            return grant
        self.events.emit(self.events.grant_opened, self, GrantEvent(grant, actor, reason))
        added = False
        try:
            # With AD's time-to-live, AD drops the link itself at the grant's end even if the portal is gone.
            ttl_left = max(1, grant.remaining_seconds(self.clock())) if self.use_ttl else None
            added = self.directory.add_member(self.bypass_group_dn, user_dn, ttl_seconds=ttl_left)
            self.store.audit(actor, "grant.membership_added", upn, grant.id, already_member=not added,
                             ttl_seconds=ttl_left)
            check = self.directory.confirm_membership(
                self.bypass_group_dn, user_dn, present=True, timeout_seconds=self.replication_wait_seconds)
        except DirectoryError as exc:
            self._abandon(grant, actor=actor, reason=f"directory failure while granting: {exc}")
            raise
        active = self._move(grant, GrantState.ACTIVE, actor=actor, action="grant.active", detail=_check_detail(check),
                            activated_at=self.clock(), dc_confirmed=check.confirmed)
        if active is None:  # ended meanwhile (cancelled, or the worker judged it abandoned): report as it is
            return self._require(grant.id)
        return active

    def open_tap(self, *, upn: str, user_dn: str, entra_user_id: str, actor: Actor, reason: str,
                 lifetime_minutes: int, one_time: bool = True,
                 invite_id: int | None = None) -> tuple[GrantView, TemporaryAccessPass | None]:
        """Give a person a Temporary Access Pass, recorded as a grant; return it with the pass (shown once, never kept).

        The person's open grant, if any, is returned with no pass. A refusal by Graph ends the grant as failed
        (it does not count against the cap) and is raised for the caller to explain.
        """
        upn = Upn(upn)
        if self.graph is None or not entra_user_id:
            raise GrantError("a Temporary Access Pass needs Graph and the person's Entra id")
        existing = self.store.open_grant_for(upn)
        if existing is not None:
            return existing, None
        now = self.clock()
        with self.store.unit_of_work() as uow:
            invite_id = _invite_of(uow, upn, invite_id)
            grant, created = uow.grants.create(
                upn=upn, user_dn=user_dn, entra_user_id=entra_user_id, actor=str(actor), reason=reason,
                created_at=now, expires_at=now + timedelta(minutes=lifetime_minutes), remedy=Remedy.TAP,
                invite_id=invite_id)
            if created:
                uow.audit.add(actor, "grant.intent", upn, grant.id, reason=reason, remedy=Remedy.TAP.value,
                              minutes=lifetime_minutes, one_time=one_time, **_invite_detail(invite_id))
        if not created:
            return grant, None
        self.events.emit(self.events.grant_opened, self, GrantEvent(grant, actor, reason))
        try:
            tap = self.graph.create_temporary_access_pass(entra_user_id, lifetime_minutes, one_time)
        except GraphError as exc:
            self._abandon(grant, actor=actor, reason=f"no pass: {refusal_for(exc).value}")
            raise
        start = tap.start or now
        # The audit records that a pass was issued, how long it lives and whether once: never its code.
        active = self._move(grant, GrantState.ACTIVE, actor=actor, action="grant.active",
                            detail={"remedy": Remedy.TAP.value, "lifetime_minutes": tap.lifetime_minutes,
                                    "one_time": tap.one_time},
                            activated_at=self.clock(), dc_confirmed=True, tap_method_id=tap.id,
                            expires_at=start + timedelta(minutes=tap.lifetime_minutes))
        if active is None:  # cancelled meanwhile: the pass must not outlive its grant
            self._delete_tap(grant.upn, grant.entra_user_id, tap.id, actor=actor, grant_id=grant.id)
            return self._require(grant.id), None
        return active, tap

    def _delete_tap(self, upn: str, user_id: str, method_id: str, *, actor: Actor, grant_id: int) -> bool:
        """Delete a pass if it is still there; audit what happened (an error is raised for the caller to retry)."""
        try:
            deleted = self.graph.delete_temporary_access_pass(user_id, method_id) if self.graph else False
        except GraphError as exc:
            self.store.audit(actor, "grant.tap_deleted", upn, grant_id, outcome="error", error=str(exc))
            raise
        self.store.audit(actor, "grant.tap_deleted", upn, grant_id, still_there=deleted)
        return deleted

    def close_grant(self, grant_id: int, *, outcome: CloseOutcome, actor: Actor, reason: str,
                    method_seen_at: datetime | None = None) -> GrantView:
        """Remove the membership (or the pass), then mark the grant ended; an ended grant is returned unchanged.

        A bypass released because a strong method appeared keeps when that was first seen (method_seen_at, else
        now), across failed attempts, for the metric of how long a membership outlives the method.
        """
        end_state = end_state_for(outcome)
        grant = self._require(grant_id)
        if not grant.open:
            return grant
        if grant.remedy is Remedy.TAP:
            return self._close_tap(grant, end_state, outcome=outcome, actor=actor, reason=reason)
        seen = (grant.method_seen_at or method_seen_at or self.clock()) if released_by_registration(reason) else None
        try:
            removed = self.directory.remove_member(self.bypass_group_dn, grant.user_dn)
        except DirectoryError as exc:
            # Leave the grant open: the worker sees it and retries until the membership is really gone.
            self.store.audit(actor, f"grant.{outcome}", grant.upn, grant.id, outcome="error", reason=reason,
                             error=str(exc))
            if seen is not None and grant.method_seen_at is None:
                self.store.note_method_seen(grant.id, seen)  # the retry's release counts from this first sighting
            raise
        seen_value = {"method_seen_at": seen} if seen is not None else {}
        ended = self._move(grant, end_state, actor=actor, action=f"grant.{outcome}", reason=reason,
                           detail={"membership_removed": removed}, ended_at=self.clock(),
                           end_reason=outcome, **seen_value)  # the free-text reason goes to the audit trail
        if ended is None:  # someone else ended it a moment ago
            return self._require(grant_id)
        return ended

    def _close_tap(self, grant: GrantView, end_state: GrantState, *, outcome: str, actor: Actor,
                   reason: str) -> GrantView:
        """Delete the pass if it is still there, then mark the grant ended.

        An expired pass ends in Entra by itself, so Graph failing then does not keep the grant open; for a
        release or a cancel the grant stays open and the worker retries until the pass is really gone.
        """
        deleted: bool | None = None
        if grant.tap_method_id:
            try:
                deleted = self._delete_tap(grant.upn, grant.entra_user_id, grant.tap_method_id, actor=actor,
                                           grant_id=grant.id)
            except GraphError:
                if outcome != "expired":
                    raise
        ended = self._move(grant, end_state, actor=actor, action=f"grant.{outcome}", reason=reason,
                           detail={"remedy": Remedy.TAP.value, "pass_deleted": deleted}, ended_at=self.clock(),
                           end_reason=outcome)
        return ended or self._require(grant.id)

    def release_open_grant(self, upn: str, *, actor: Actor, reason: str,
                           outcome: CloseOutcome = "released") -> GrantView | None:
        """Close the person's open grant, if any."""
        grant = self.store.open_grant_for(upn)
        if grant is None:
            return None
        return self.close_grant(grant.id, outcome=outcome, actor=actor, reason=reason)

    def extend_grant(self, grant_id: int, *, minutes: int, actor: Actor, reason: str) -> GrantView:
        """Let an open grant run `minutes` from now (the one length rule), never shorter than it already runs.

        Raises GrantError when the length is out of bounds, the grant would end sooner, or AD's time-to-live
        (which the portal cannot lengthen on a link already there) would drop the membership first.
        """
        minutes = check_minutes(minutes)
        grant = self._require(grant_id)
        if not grant.open:
            return grant
        if grant.remedy is Remedy.TAP:
            raise GrantError("a Temporary Access Pass cannot be extended; issue a new one instead")
        if self.use_ttl:
            raise GrantError("with AD's time-to-live on (PROOFUP_LDAP_USE_TTL) a grant cannot be extended; "
                             "release it and grant again")
        expires_at = self.clock() + timedelta(minutes=minutes)
        if expires_at <= grant.expires_at:
            raise GrantError(f"the grant already runs until {grant.expires_at:%H:%M} UTC")
        with self.store.unit_of_work() as uow:
            extended = uow.grants.extend(grant.id, expires_at=expires_at)
            if extended is not None:
                uow.audit.add(actor, "grant.extended", grant.upn, grant.id, reason=reason, minutes=minutes,
                              previous_end=grant.expires_at.isoformat(), expires_at=expires_at.isoformat())
        return extended or self._require(grant.id)

    def recheck_replication(self, grant_id: int, *, actor: Actor) -> GrantView:
        """Ask the DCs again whether they all show an active grant's membership."""
        grant = self._require(grant_id)
        if grant.state is not GrantState.ACTIVE or grant.dc_confirmed:
            return grant
        check = self.directory.confirm_membership(self.bypass_group_dn, grant.user_dn, present=True,
                                                  timeout_seconds=0)
        with self.store.unit_of_work() as uow:
            updated = uow.grants.record_check(grant.id, at=self.clock(), dc_confirmed=check.confirmed) or grant
            if check.confirmed:
                uow.audit.add(actor, "grant.replicated", grant.upn, grant.id, **_check_detail(check))
        return updated

    def abandon_stale(self, grant_id: int, *, actor: Actor, reason: str) -> GrantView:
        """End a pending grant that no unlock is still working on (a crash left it): membership out, marked failed."""
        grant = self._require(grant_id)
        if grant.state is not GrantState.PENDING:
            return grant
        return self._abandon(grant, actor=actor, reason=reason, raise_errors=True)

    def _abandon(self, grant: GrantView, *, actor: Actor, reason: str, raise_errors: bool = False) -> GrantView:
        """Undo a pending grant: remove the membership (whether or not it got added), then mark it failed."""
        try:
            if grant.backs_membership:  # a pending pass grant has no pass yet (its id comes with activation)
                self.directory.remove_member(self.bypass_group_dn, grant.user_dn)
        except DirectoryError as exc:
            # The grant is still marked failed; reconcile removes the member later (a grant record exists).
            log.warning("could not undo membership of grant %s: %s", grant.id, exc)
            self.store.audit(actor, "grant.undo", grant.upn, grant.id, outcome="error", error=str(exc))
            if raise_errors:
                raise
        failed = self._move(grant, GrantState.FAILED, actor=actor, action="grant.failed", outcome="error",
                            reason=reason, ended_at=self.clock(), end_reason=reason)
        return failed or self._require(grant.id)

    def _move(self, grant: GrantView, to: GrantState, *, actor: Actor, action: str, reason: str = "",
              outcome: str = "ok", detail: dict[str, object] | None = None, **values: object) -> GrantView | None:
        """Change the grant's state and audit it in ONE transaction; None (and no event) if it had moved on."""
        with self.store.unit_of_work() as uow:
            moved = uow.grants.move(grant.id, to, **values)
            if moved is not None:
                uow.audit.add(actor, action, grant.upn, grant.id, outcome, reason=reason, **(detail or {}))
                self.events.emit(self.events.grant_committing, self, GrantEvent(moved, actor, reason), uow=uow)
        if moved is not None:  # committed: now the subscribers may hear of it
            self.events.emit(self.events.grant_changed(to), self, GrantEvent(moved, actor, reason))
        return moved

    def _require(self, grant_id: int) -> GrantView:
        grant = self.store.get_grant(grant_id)
        if grant is None:
            raise GrantNotFound(f"no grant with id {grant_id}")
        return grant


def _check_detail(check: MembershipCheck) -> dict[str, object]:
    return {"dc_confirmed": check.confirmed, "agreeing": list(check.agreeing), "lagging": list(check.lagging),
            "dc_errors": dict(check.errors)}


def _invite_of(uow, upn: Upn, invite_id: int | None) -> int | None:
    """Return the invite to credit a new grant to: only one this student signed in with, else None (not refused).

    The id comes from the student's browser, so it is checked against the invite row in the same transaction.
    """
    if not isinstance(invite_id, int) or isinstance(invite_id, bool):
        return None
    return invite_id if led_to_unlock(uow.invites.get(invite_id), upn) else None


def _invite_detail(invite_id: int | None) -> dict[str, int]:
    """Return the audit detail naming the invite a grant came from (none when it came from no invite)."""
    return {"invite_id": invite_id} if invite_id is not None else {}

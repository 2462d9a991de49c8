"""Classify a student's MFA registration and decide whether they may unlock: pure logic, no I/O."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum

from app.domain.actors import Actor, ActorKind
from app.domain.directory import DirectoryUser, dn_key
from app.domain.evidence import Evidence
from app.domain.grants import GrantState
from app.domain.tap import Remedy, TapRefusal
from app.domain.upn import Upn


class State(str, Enum):
    """Where a student stands, as the diagnosis page explains it."""

    NOT_REQUIRED = "not_required"
    REGISTERED = "registered"
    STUCK = "stuck"
    INELIGIBLE = "ineligible"
    UNLOCKED = "unlocked"
    COMPLETED = "completed"
    EXPIRED = "expired"


class Reason(str, Enum):
    """Why a student is in their state (the sub-state the page and the audit name)."""

    HALF_REGISTERED = "half_registered"  # signed in to Authenticator, no method in Entra
    UNREGISTERED = "unregistered"  # no trace of any method
    PRIVILEGED = "privileged"
    DISABLED = "disabled"
    OUT_OF_SCOPE = "out_of_scope"
    MISSING_IN_AD = "missing_in_ad"
    MISSING_IN_ENTRA = "missing_in_entra"
    NOT_IN_REQUIRED_GROUP = "not_in_required_group"
    HAS_STRONG_METHOD = "has_strong_method"
    GRANT_OPEN = "grant_open"
    GRANT_RELEASED = "grant_released"
    GRANT_EXPIRED = "grant_expired"


# Unlocks are counted over a rolling window; every remedy counts (the bypass group and a Temporary
# Access Pass alike: both are grants), whoever opened it, except one that failed (the unlock never completed).
UNLOCK_WINDOW = timedelta(days=7)
UNLOCK_CAP = "unlock_cap"  # the refusal code when the cap is reached


@dataclass(frozen=True)
class GrantFacts:
    """The parts of a grant record that classification needs (from the store, any backend)."""

    id: int
    state: GrantState
    expires_at: datetime | None = None
    dc_confirmed: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", GrantState(self.state))

    @property
    def open(self) -> bool:
        return self.state.open


@dataclass(frozen=True)
class Policy:
    """The directory layout that decides who is MFA-required, privileged, in scope."""

    required_group_dn: str
    bypass_group_dn: str
    privileged_group_dns: tuple[str, ...] = ()
    scope_base_dn: str = ""
    max_unlocks: int = 3  # per student in UNLOCK_WINDOW (PROOFUP_MAX_UNLOCKS)

    def cap_reached(self, unlocks_in_window: int) -> bool:
        """Tell whether a student has used every unlock the window allows (the one rule for the cap)."""
        return unlocks_in_window >= self.max_unlocks

    def in_scope(self, user: DirectoryUser) -> bool:
        """Tell whether the user's DN lies under the configured scope (everyone when none is set)."""
        if not self.scope_base_dn:
            return True
        scope = dn_key(self.scope_base_dn)
        user_key = dn_key(user.dn)
        return user_key == scope or user_key.endswith("," + scope)

    def privileged(self, user: DirectoryUser) -> bool:
        """Tell whether the account is protected (adminCount) or in a privileged group."""
        return user.admin_count > 0 or any(user.in_group(g) for g in self.privileged_group_dns)

    def mfa_required(self, user: DirectoryUser) -> bool:
        return user.in_group(self.required_group_dn)

    def in_bypass(self, user: DirectoryUser) -> bool:
        return user.in_group(self.bypass_group_dn)


@dataclass(frozen=True)
class Diagnosis:
    """One student's state, the reason, and the evidence behind it."""

    upn: Upn
    state: State
    reason: Reason
    user: DirectoryUser | None = None
    evidence: Evidence | None = None
    grant: GrantFacts | None = None
    mfa_required: bool = False
    mfa_required_directly: bool = False
    in_bypass: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)  # evidence parts that could not be read
    unlocks_in_window: int = 0  # remedies opened for this student in the last UNLOCK_WINDOW
    capped: bool = False  # the policy's cap is reached: only the service desk may unlock now

    @property
    def eligible(self) -> bool:
        """Tell whether the student's state is one an unlock is for (stuck, or an unlock that ran out)."""
        return self.state in (State.STUCK, State.EXPIRED)

    @property
    def can_unlock(self) -> bool:
        """Tell whether the student may unlock themself now (eligible and under the cap)."""
        return self.eligible and not self.capped

    @property
    def entra_user_id(self) -> str:
        return self.evidence.user.id if self.evidence and self.evidence.user else ""


def classify(
    upn: str,
    user: DirectoryUser | None,
    evidence: Evidence | None,
    policy: Policy,
    open_grant: GrantFacts | None = None,
    last_grant: GrantFacts | None = None,
    required_directly: bool = False,
    unlocks_in_window: int = 0,
) -> Diagnosis:
    """Put a student in exactly one state; the order encodes the policy (safety checks first)."""
    upn = Upn(upn)
    if user is None:
        return Diagnosis(upn, State.INELIGIBLE, Reason.MISSING_IN_AD, evidence=evidence, grant=open_grant)
    facts = dict(
        user=user,
        evidence=evidence,
        grant=open_grant or last_grant,
        mfa_required=policy.mfa_required(user),
        mfa_required_directly=required_directly,
        in_bypass=policy.in_bypass(user),
        notes=tuple(sorted(evidence.errors)) if evidence else (),
        unlocks_in_window=unlocks_in_window,
        capped=policy.cap_reached(unlocks_in_window),
    )
    entra = evidence.user if evidence else None

    def result(state: State, reason: Reason) -> Diagnosis:
        return Diagnosis(upn=user.upn, state=state, reason=reason, **facts)

    if not user.enabled or (entra is not None and not entra.account_enabled):
        return result(State.INELIGIBLE, Reason.DISABLED)
    if policy.privileged(user):
        return result(State.INELIGIBLE, Reason.PRIVILEGED)
    if not policy.in_scope(user):
        return result(State.INELIGIBLE, Reason.OUT_OF_SCOPE)
    if open_grant is not None and open_grant.open:
        # An open grant is shown whatever Graph says: the guide page confirms and closes it.
        return result(State.UNLOCKED, Reason.GRANT_OPEN)
    if not facts["mfa_required"]:
        return result(State.NOT_REQUIRED, Reason.NOT_IN_REQUIRED_GROUP)
    if entra is None:
        return result(State.INELIGIBLE, Reason.MISSING_IN_ENTRA)
    if evidence.strong_methods:
        if last_grant is not None and last_grant.state is GrantState.RELEASED:
            return result(State.COMPLETED, Reason.GRANT_RELEASED)
        return result(State.REGISTERED, Reason.HAS_STRONG_METHOD)
    if last_grant is not None and last_grant.state is GrantState.EXPIRED:
        return result(State.EXPIRED, Reason.GRANT_EXPIRED)
    if evidence.loop_traces:
        return result(State.STUCK, Reason.HALF_REGISTERED)
    return result(State.STUCK, Reason.UNREGISTERED)


def acting_refusal(actor: Actor, target: Upn) -> str | None:
    """Return why this actor may not act for this student (a short code), or None when it may.

    A student acts for themself only; staff and admins at the CLI act for anyone, always with a reason
    (Actor makes them give one); the worker and visitors never open or cancel a grant.
    """
    if actor.kind is ActorKind.STUDENT:
        return None if actor.is_self(target) else "not_yourself"
    if actor.acts_for_others:
        return None
    return "not_allowed"


def unlock_refusal(diagnosis: Diagnosis, actor: Actor, *, override_cap: bool = False) -> str | None:
    """Return why an unlock must be refused (a short code), or None when the policy allows it.

    Only staff (or an admin at the CLI) may pass the cap, and only by asking to (`override_cap`, with a reason).
    """
    refusal = acting_refusal(actor, diagnosis.upn)
    if refusal:
        return refusal
    if diagnosis.state == State.UNLOCKED:
        return "already_unlocked"
    if not diagnosis.eligible:
        return diagnosis.reason.value
    if diagnosis.capped and not (override_cap and actor.acts_for_others):
        return UNLOCK_CAP
    return None


def remedy_refusal(diagnosis: Diagnosis, actor: Actor, remedy: Remedy, configured: tuple[Remedy, ...],
                   tap: TapRefusal | None = None, *, override_cap: bool = False) -> str | None:
    """Return why this remedy must be refused (a short code), or None: unlock_refusal's rules, then the remedy's.

    `configured` is what PROOFUP_REMEDY allows; `tap` is why the tenant would refuse a pass (None: it would not).
    """
    refusal = unlock_refusal(diagnosis, actor, override_cap=override_cap)
    if refusal:
        return refusal
    if remedy not in configured:
        return f"{remedy.value}_not_configured"
    if remedy is Remedy.TAP and tap is not None:
        return tap.value
    return None


def remedies_offered(diagnosis: Diagnosis, actor: Actor, configured: tuple[Remedy, ...],
                     tap: TapRefusal | None = None) -> tuple[Remedy, ...]:
    """Return the remedies this actor may start for this student now, the preferred first."""
    return tuple(r for r in configured if remedy_refusal(diagnosis, actor, r, configured, tap) is None)

"""The grant lifecycle, pure: states, allowed transitions, deadlines. No I/O."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Iterable, Literal

from app.domain.evidence import AuthMethod
from app.domain.tap import Remedy
from app.domain.upn import Upn

MIN_GRANT_MINUTES = 5
MAX_GRANT_MINUTES = 240


class GrantState(str, Enum):
    """Where a grant is: pending (intent written) -> active -> released | expired | cancelled | failed.

    The one source of the states: the store keeps `.value`, the pages get phases from it (services.onboarding).
    """

    PENDING = "pending"
    ACTIVE = "active"
    RELEASED = "released"  # a strong method appeared (or the membership went): the unlock did its job
    EXPIRED = "expired"  # its time ran out
    CANCELLED = "cancelled"  # ended on purpose before a method appeared (the student, an admin)
    FAILED = "failed"  # the unlock never completed (a directory failure, or a crash the worker undid)

    @property
    def open(self) -> bool:
        """Tell whether the grant may still back a bypass membership."""
        return self in OPEN_STATES


OPEN_STATES = frozenset({GrantState.PENDING, GrantState.ACTIVE})
END_STATES = frozenset(GrantState) - OPEN_STATES

# A pending grant may end in any way: cancelled while unlocking, interrupted by a crash, or past its end.
TRANSITIONS: dict[GrantState, frozenset[GrantState]] = {
    GrantState.PENDING: END_STATES | {GrantState.ACTIVE},
    GrantState.ACTIVE: frozenset({GrantState.RELEASED, GrantState.EXPIRED, GrantState.CANCELLED}),
    **{state: frozenset() for state in END_STATES},
}

CloseOutcome = Literal["released", "expired", "cancelled"]
CLOSE_OUTCOMES: dict[str, GrantState] = {
    "released": GrantState.RELEASED,
    "cancelled": GrantState.CANCELLED,
    "expired": GrantState.EXPIRED,
}


class GrantError(Exception):
    """A grant operation cannot be done; the message says why."""


class InvalidTransition(GrantError):
    """The grant is not in a state that allows this change."""


class GrantNotFound(GrantError):
    """No grant has this id."""


def check_transition(current: GrantState, wanted: GrantState) -> None:
    """Raise InvalidTransition unless the lifecycle allows current -> wanted."""
    if wanted not in TRANSITIONS[current]:
        raise InvalidTransition(f"a {current.value} grant cannot become {wanted.value}")


def sources(wanted: GrantState) -> frozenset[GrantState]:
    """Return the states a grant may be in to become `wanted` (for compare-and-set updates)."""
    return frozenset(state for state, targets in TRANSITIONS.items() if wanted in targets)


def end_state_for(outcome: str) -> GrantState:
    """Map a close outcome (released, expired, cancelled) to the grant's end state."""
    try:
        return CLOSE_OUTCOMES[outcome]
    except KeyError:
        raise GrantError(f"unknown close outcome {outcome!r}; use one of {sorted(CLOSE_OUTCOMES)}") from None


def check_minutes(minutes: int) -> int:
    """Return the grant length if it is a whole number of minutes within policy bounds (the one rule)."""
    if isinstance(minutes, bool) or not isinstance(minutes, int):
        raise GrantError(f"a grant lasts a whole number of minutes, not {minutes!r}")
    if not MIN_GRANT_MINUTES <= minutes <= MAX_GRANT_MINUTES:
        raise GrantError(f"a grant lasts {MIN_GRANT_MINUTES} to {MAX_GRANT_MINUTES} minutes, not {minutes}")
    return minutes


def minutes_from_text(text: str) -> int:
    """Read a grant length typed by a person (CLI, settings, forms) and check it with check_minutes."""
    try:
        minutes = int(str(text).strip())
    except ValueError:
        raise GrantError(f"a grant lasts a whole number of minutes, not {text!r}") from None
    return check_minutes(minutes)


@dataclass(frozen=True)
class Release:
    """Why an open grant may end as released: the strong methods that now exist."""

    method: str  # the first strong method Graph listed, for the page ("done: Microsoft Authenticator")
    reason: str  # every strong kind, for the audit trail


REGISTERED = "strong method registered: "  # how a release by the rule below begins its reason


def release_for(methods: Iterable[AuthMethod]) -> Release | None:
    """Apply the release rule: a strong method appeared, so the bypass is no longer needed; None keeps it open."""
    strong = [m.kind for m in methods if m.strong]
    if not strong:
        return None
    return Release(method=strong[0], reason=REGISTERED + ", ".join(sorted(set(strong))))


def released_by_registration(reason: str) -> bool:
    """Tell whether a release's reason is the release rule's (a new method), not e.g. a membership gone by hand."""
    return reason.startswith(REGISTERED)


def utc_now() -> datetime:
    """Return the current time, timezone-aware in UTC."""
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class GrantView:
    """A snapshot of one grant, safe to pass anywhere (no database objects inside)."""

    id: int
    upn: Upn
    user_dn: str
    entra_user_id: str
    state: GrantState
    actor: str
    reason: str
    created_at: datetime
    expires_at: datetime
    activated_at: datetime | None = None
    ended_at: datetime | None = None
    end_reason: str = ""
    ttl_seconds: int | None = None
    dc_confirmed: bool = False
    last_checked_at: datetime | None = None
    check_count: int = 0
    remedy: Remedy = Remedy.BYPASS
    tap_method_id: str = ""  # the pass's Graph method id (a TAP grant); never its code
    method_seen_at: datetime | None = None  # when the portal first saw the strong method that releases it
    check_wanted_at: datetime | None = None  # the student said "I have finished": the worker checks it first
    check_note: str = ""  # why the last methods check could not run ("budget", "graph_unavailable"), for the page

    @property
    def open(self) -> bool:
        """Tell whether the grant may still back a bypass membership."""
        return self.state.open

    @property
    def backs_membership(self) -> bool:
        """Tell whether this grant is a bypass membership (a pass grant never puts anyone in the group)."""
        return self.remedy is Remedy.BYPASS

    def past_end(self, now: datetime) -> bool:
        """Tell whether the grant's time is up."""
        return now >= self.expires_at

    def remaining_seconds(self, now: datetime) -> int:
        """Return whole seconds left (0 when past its end)."""
        return max(0, int((self.expires_at - now).total_seconds()))

    def stale_pending(self, now: datetime, grace_seconds: float) -> bool:
        """Tell whether a pending grant is older than any unlock in flight could be (a crash left it)."""
        return self.state is GrantState.PENDING and now - self.created_at > timedelta(seconds=grace_seconds)

    def due_for_check(self, now: datetime, every_seconds: float) -> bool:
        """Tell whether an active grant's methods should be checked again (the one rule; the worker applies it)."""
        if self.state is not GrantState.ACTIVE or not self.entra_user_id:
            return False
        if self.check_wanted_at is not None or self.last_checked_at is None:
            return True
        return now - self.last_checked_at >= timedelta(seconds=every_seconds)

    def check_order(self) -> tuple[bool, bool, datetime]:
        """Return the sort key of due checks: those the student asked for, then never checked, then the oldest."""
        return (self.check_wanted_at is None, self.last_checked_at is not None,
                self.last_checked_at or self.created_at)

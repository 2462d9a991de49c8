"""Weekly batches, pure: a batch's states, why a row is skipped, each student's progress, when to remind. No I/O.

A batch is a CSV the desk uploaded: checked (the CSV, then the directory and Graph, in the worker), previewed,
sent (an invite to each selected student), followed on a dashboard with reminders, and closed.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from app.domain.state import Reason, State

MAX_LABEL = 120  # characters of a batch's name
DEFAULT_REMINDER_DAYS = (2, 5)  # PROOFUP_BATCH_REMINDER_DAYS


class BatchState(str, Enum):
    """A batch's way: checking -> ready -> sent -> closed (closed from any of them)."""

    CHECKING = "checking"  # the worker diagnoses its rows; the page shows a progress bar
    READY = "ready"  # every row checked: the preview waits for the desk to send
    SENT = "sent"  # invites went out; the dashboard follows the students, reminders go out
    CLOSED = "closed"  # unused invites revoked, open grants released; nothing more happens

    @property
    def open(self) -> bool:
        return self is not BatchState.CLOSED


class Skip(str, Enum):
    """Why a row gets no invite (the CSV's own problems are domain.batch_csv's codes, kept as they are)."""

    UNKNOWN = "unknown"  # not in the directory, or not in Entra ID
    PRIVILEGED = "privileged"
    DISABLED = "disabled"
    OUT_OF_SCOPE = "out_of_scope"
    REGISTERED = "registered"  # has a strong method already
    NOT_REQUIRED = "not_required"  # not in the MFA-required group: the loop cannot happen
    IN_PROGRESS = "in_progress"  # unlocked right now (an open grant)
    NO_ADDRESS = "no_address"  # neither the CSV nor the directory gives a mail address
    CHECK_FAILED = "check_failed"  # Graph could not say what methods exist: never invite on a guess


# Each diagnosis reason that means "no invite", and the skip the preview shows for it.
SKIP_FOR_REASON = {
    Reason.MISSING_IN_AD: Skip.UNKNOWN, Reason.MISSING_IN_ENTRA: Skip.UNKNOWN, Reason.PRIVILEGED: Skip.PRIVILEGED,
    Reason.DISABLED: Skip.DISABLED, Reason.OUT_OF_SCOPE: Skip.OUT_OF_SCOPE, Reason.HAS_STRONG_METHOD: Skip.REGISTERED,
    Reason.GRANT_RELEASED: Skip.REGISTERED, Reason.NOT_IN_REQUIRED_GROUP: Skip.NOT_REQUIRED,
    Reason.GRANT_OPEN: Skip.IN_PROGRESS,
}


def skip_for(state: State, reason: Reason, *, mail: str) -> Skip | None:
    """Return why a diagnosed student gets no invite, or None: stuck (or expired) and reachable by mail."""
    if state in (State.STUCK, State.EXPIRED):
        return None if mail else Skip.NO_ADDRESS
    return SKIP_FOR_REASON.get(reason, Skip.UNKNOWN)


@dataclass(frozen=True)
class RowCheck:
    """What the checks found for one row: the skip ("" none), the diagnosis ("state/reason"), the address to use."""

    problem: str
    diagnosis: str = ""
    mail: str = ""


class Progress(str, Enum):
    """Where an invited student stands on the dashboard (derived at read time, never stored)."""

    CHECKING = "checking"  # the worker has not checked this line yet
    SKIPPED = "skipped"  # no invite: the preview said why
    NOT_SENT = "not_sent"  # selected, the batch is not sent yet
    INVITED = "invited"
    OPENED = "opened"  # pressed "Continue" on the invite page
    SIGNED_IN = "signed_in"  # signed in through the invite
    UNLOCKED = "unlocked"  # an open grant
    ELSEWHERE = "elsewhere"  # unlocked through another invite (a later batch's, the desk's): that one's progress
    DONE = "done"  # registered and released
    EXPIRED = "expired"  # the invite or the grant ran out
    BOUNCED = "bounced"  # the invite's mail never arrived
    REVOKED = "revoked"  # the invite was taken back (the batch was closed, or the desk did it)

    @property
    def waiting(self) -> bool:
        """Tell whether a reminder may still help: the student has not got as far as an unlock."""
        return self in (Progress.INVITED, Progress.OPENED, Progress.SIGNED_IN)


# The invite's state (domain.invites.InviteState values) as the dashboard shows it, before any grant.
PROGRESS_FOR_INVITE = {"sent": Progress.INVITED, "opened": Progress.OPENED, "used": Progress.SIGNED_IN,
                       "expired": Progress.EXPIRED, "revoked": Progress.REVOKED, "bounced": Progress.BOUNCED}
# A grant opened after the invite went out tells more than the invite: (grant state value) -> progress.
PROGRESS_FOR_GRANT = {"pending": Progress.UNLOCKED, "active": Progress.UNLOCKED, "released": Progress.DONE,
                      "expired": Progress.EXPIRED}


def best_invite_state(states: list[str]) -> str:
    """Return the state that tells most of a student's invites (oldest first): used, else opened, else the latest.

    A reminder is a newer invite: it must not hide that the student already used (or opened) an earlier one.
    """
    latest = states[-1]
    if "used" in states:
        return "used"
    return "opened" if latest == "sent" and "opened" in states else latest


@dataclass(frozen=True)
class BatchGrants:
    """The grants opened since a batch went out, as its dashboard counts them (one query's answer).

    `states`: each student's newest grant that is the batch's: its own invites led to it, or the student opened it
    without any invite. `elsewhere`: the students whose only such grants came through another invite.
    """

    states: dict[str, str]
    elsewhere: frozenset[str] = frozenset()


def progress_of(*, selected: bool, invite_state: str | None, grant_state: str | None,
                checked: bool = True, unlocked_elsewhere: bool = False) -> Progress:
    """Return one student's progress from their invite's state and the batch's newest grant since it was sent."""
    if not checked:
        return Progress.CHECKING
    if not selected:
        return Progress.SKIPPED
    if invite_state is None:
        return Progress.NOT_SENT
    if invite_state == "bounced":
        return Progress.BOUNCED
    by_grant = PROGRESS_FOR_GRANT.get(grant_state or "")
    if by_grant is not None:
        return by_grant
    if unlocked_elsewhere:  # not this batch's unlock, and no reminder of this batch helps any more
        return Progress.ELSEWHERE
    return PROGRESS_FOR_INVITE.get(invite_state, Progress.INVITED)


@dataclass(frozen=True)
class ReminderSchedule:
    """Reminders after these many days since the invite went out (PROOFUP_BATCH_REMINDER_DAYS)."""

    days: tuple[int, ...] = DEFAULT_REMINDER_DAYS

    def __post_init__(self) -> None:
        if any(d < 1 for d in self.days) or list(self.days) != sorted(set(self.days)):
            raise ValueError("reminder days are whole days from 1 up, each later than the one before")

    def due_step(self, invited_at: datetime, reminders_sent: int, now: datetime) -> int | None:
        """Return the number (1, 2, ...) of the reminder due now, or None; a missed step is not sent twice over.

        After a long pause (the worker was down) only the latest due step goes out: one mail, not a burst.
        """
        due = [i + 1 for i, d in enumerate(self.days) if now >= invited_at + timedelta(days=d)]
        if not due or due[-1] <= reminders_sent:
            return None
        return due[-1]


def _one_line(text: str) -> str:
    return " ".join("".join(c if c.isprintable() else " " for c in text or "").split())[:MAX_LABEL]


def batch_label(text: str, fallback: str) -> str:
    """Return a batch's name: the desk's text on one line, bounded; the fallback (e.g. the file's name) if empty."""
    return _one_line(text) or _one_line(fallback) or "batch"

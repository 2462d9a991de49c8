"""The batch rules: why a diagnosed student is skipped, a student's progress, when a reminder is due."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from app.domain.batches import (Progress, ReminderSchedule, Skip, batch_label, best_invite_state, progress_of,
                                 skip_for)
from app.domain.state import Reason, State

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(("state", "reason", "mail", "skip"), [
    (State.STUCK, Reason.HALF_REGISTERED, "a@mail.test", None),
    (State.EXPIRED, Reason.GRANT_EXPIRED, "a@mail.test", None),
    (State.STUCK, Reason.UNREGISTERED, "", Skip.NO_ADDRESS),
    (State.REGISTERED, Reason.HAS_STRONG_METHOD, "a@mail.test", Skip.REGISTERED),
    (State.COMPLETED, Reason.GRANT_RELEASED, "a@mail.test", Skip.REGISTERED),
    (State.NOT_REQUIRED, Reason.NOT_IN_REQUIRED_GROUP, "a@mail.test", Skip.NOT_REQUIRED),
    (State.INELIGIBLE, Reason.PRIVILEGED, "a@mail.test", Skip.PRIVILEGED),
    (State.INELIGIBLE, Reason.DISABLED, "a@mail.test", Skip.DISABLED),
    (State.INELIGIBLE, Reason.MISSING_IN_AD, "", Skip.UNKNOWN),
    (State.INELIGIBLE, Reason.MISSING_IN_ENTRA, "a@mail.test", Skip.UNKNOWN),
    (State.UNLOCKED, Reason.GRANT_OPEN, "a@mail.test", Skip.IN_PROGRESS),
])
def test_only_stuck_students_with_an_address_are_invited(state, reason, mail, skip):
    assert skip_for(state, reason, mail=mail) is skip


@pytest.mark.parametrize(("selected", "invite", "grant", "progress"), [
    (False, None, None, Progress.SKIPPED), (True, None, None, Progress.NOT_SENT),
    (True, "sent", None, Progress.INVITED), (True, "opened", None, Progress.OPENED),
    (True, "used", None, Progress.SIGNED_IN), (True, "used", "active", Progress.UNLOCKED),
    (True, "used", "pending", Progress.UNLOCKED), (True, "used", "released", Progress.DONE),
    (True, "used", "expired", Progress.EXPIRED), (True, "used", "cancelled", Progress.SIGNED_IN),
    (True, "expired", None, Progress.EXPIRED), (True, "revoked", None, Progress.REVOKED),
    (True, "bounced", "active", Progress.BOUNCED), (True, "sent", "released", Progress.DONE),
])
def test_progress_comes_from_the_invite_and_the_grant(selected, invite, grant, progress):
    assert progress_of(selected=selected, invite_state=invite, grant_state=grant) is progress


@pytest.mark.parametrize(("invite", "grant", "progress"), [
    ("revoked", None, Progress.ELSEWHERE), ("sent", None, Progress.ELSEWHERE),  # no reminder for them
    ("used", "active", Progress.UNLOCKED),  # the batch's own grant tells more than another invite's
    ("bounced", None, Progress.BOUNCED),  # this batch's mail never reached them, whatever else did
])
def test_an_unlock_through_another_invite_is_not_this_batchs_progress(invite, grant, progress):
    assert progress_of(selected=True, invite_state=invite, grant_state=grant, unlocked_elsewhere=True) is progress
    assert not progress_of(selected=True, invite_state=invite, grant_state=None, unlocked_elsewhere=True).waiting


def test_a_line_not_checked_yet_says_so_rather_than_skipped():
    assert progress_of(selected=False, invite_state=None, grant_state=None, checked=False) is Progress.CHECKING


def test_reminders_follow_the_schedule_once_each():
    schedule = ReminderSchedule((2, 5))
    assert schedule.due_step(T0, 0, T0 + timedelta(days=1, hours=23)) is None
    assert schedule.due_step(T0, 0, T0 + timedelta(days=2)) == 1
    assert schedule.due_step(T0, 1, T0 + timedelta(days=4)) is None
    assert schedule.due_step(T0, 1, T0 + timedelta(days=5)) == 2
    assert schedule.due_step(T0, 2, T0 + timedelta(days=30)) is None
    # The worker was down for a week: one reminder (the latest step), not two at once.
    assert schedule.due_step(T0, 0, T0 + timedelta(days=7)) == 2


@pytest.mark.parametrize("days", [(0,), (5, 2), (2, 2), (-1, 3)])
def test_a_bad_schedule_is_refused(days):
    with pytest.raises(ValueError):
        ReminderSchedule(days)


def test_labels_are_one_bounded_printable_line():
    assert batch_label("  Week\n48\x00 ", "x.csv") == "Week 48"
    assert batch_label("", "intake.csv") == "intake.csv"
    assert batch_label("", "") == "batch" and len(batch_label("w" * 500, "")) == 120


@pytest.mark.parametrize(("states", "best"), [
    (["sent"], "sent"), (["revoked", "sent"], "sent"), (["used", "sent"], "used"), (["opened", "sent"], "opened"),
    (["opened", "revoked"], "revoked"), (["sent", "bounced"], "bounced"), (["revoked", "expired"], "expired"),
])
def test_a_reminder_never_hides_that_an_earlier_invite_was_used_or_opened(states, best):
    assert best_invite_state(states) == best

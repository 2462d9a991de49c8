"""The grant lifecycle rules, without any I/O."""
from __future__ import annotations

from datetime import timedelta

import pytest

from app.domain.grants import (
    END_STATES,
    GrantError,
    GrantState,
    GrantView,
    InvalidTransition,
    check_minutes,
    minutes_from_text,
    check_transition,
    end_state_for,
    release_for,
    sources,
)
from app.domain.evidence import AuthMethod
from app.domain.upn import InvalidUpn, Upn
from tests.services.helpers import FakeClock


def grant(state=GrantState.ACTIVE, minutes=30, **kw) -> GrantView:
    now = FakeClock()()
    values = dict(id=1, upn="ada@uni.test", user_dn="CN=Ada,DC=uni,DC=test", entra_user_id="e1", state=state,
                  actor="ada", reason="stuck", created_at=now, expires_at=now + timedelta(minutes=minutes))
    values.update(kw)
    return GrantView(**values)


@pytest.mark.parametrize("current,wanted", [
    (GrantState.PENDING, GrantState.ACTIVE), (GrantState.PENDING, GrantState.FAILED),
    (GrantState.PENDING, GrantState.RELEASED), (GrantState.ACTIVE, GrantState.RELEASED),
    (GrantState.ACTIVE, GrantState.EXPIRED), (GrantState.PENDING, GrantState.CANCELLED),
    (GrantState.ACTIVE, GrantState.CANCELLED),
])
def test_allowed_transitions(current, wanted):
    check_transition(current, wanted)


@pytest.mark.parametrize("current", sorted(END_STATES))
@pytest.mark.parametrize("wanted", list(GrantState))
def test_ended_grants_never_change(current, wanted):
    with pytest.raises(InvalidTransition):
        check_transition(current, wanted)


def test_active_grant_cannot_go_back_to_pending_or_fail():
    for wanted in (GrantState.PENDING, GrantState.FAILED, GrantState.ACTIVE):
        with pytest.raises(InvalidTransition):
            check_transition(GrantState.ACTIVE, wanted)


def test_close_outcomes_map_to_end_states():
    assert end_state_for("released") is GrantState.RELEASED
    assert end_state_for("cancelled") is GrantState.CANCELLED
    assert end_state_for("expired") is GrantState.EXPIRED
    with pytest.raises(GrantError, match="unknown close outcome"):
        end_state_for("deleted")


@pytest.mark.parametrize("bad", [0, 4, 241, -30, 30.5, "30", True, None])
def test_grant_length_outside_policy_is_refused(bad):
    with pytest.raises(GrantError):
        check_minutes(bad)


def test_grant_length_bounds_are_inclusive():
    assert check_minutes(5) == 5 and check_minutes(240) == 240


@pytest.mark.parametrize("text", ["0", "-5", "4", "241", "1.5", "thirty", "", "0x10"])
def test_a_typed_grant_length_is_read_with_the_same_rule(text):
    with pytest.raises(GrantError, match="a grant lasts"):
        minutes_from_text(text)
    assert minutes_from_text(" 45 ") == 45


@pytest.mark.parametrize("bad", ["", "ada", "@uni.test", "ada@", "ada lovelace@uni.test", "ada@uni.test\nx",
                                 "ada\x00@uni.test", None, 42])
def test_malformed_upn_is_refused(bad):
    with pytest.raises(InvalidUpn):
        Upn(bad)
    assert Upn.parse(bad) is None


def test_upn_is_trimmed_and_lowercased_once():
    upn = Upn("  Ada.Lovelace@UNI.test ")
    assert upn == "ada.lovelace@uni.test" and isinstance(upn, str)
    assert Upn(upn) is upn
    assert Upn("ADA.LOVELACE@uni.test") == upn and hash(Upn("ADA.LOVELACE@uni.test")) == hash(upn)


def test_the_open_and_end_states_cover_every_state_once():
    from app.domain.grants import OPEN_STATES

    assert OPEN_STATES | END_STATES == set(GrantState) and not OPEN_STATES & END_STATES
    assert GrantState.CANCELLED in END_STATES


def test_the_release_rule_needs_a_strong_method():
    assert release_for([]) is None
    assert release_for([AuthMethod("p", "password"), AuthMethod("t", "temporaryAccessPass"),
                        AuthMethod("e", "email")]) is None
    release = release_for([AuthMethod("p", "password"), AuthMethod("m", "phone"), AuthMethod("a", "fido2"),
                           AuthMethod("b", "phone")])
    assert release.method == "phone" and release.reason == "strong method registered: fido2, phone"


def test_every_end_state_has_a_phase_on_the_guide_page():
    from app.services.onboarding import END_PHASES

    assert set(END_PHASES) == END_STATES


def test_deadlines():
    g = grant(minutes=30)
    start = g.created_at
    assert g.open and not g.past_end(start + timedelta(minutes=29, seconds=59))
    assert g.past_end(start + timedelta(minutes=30))
    assert g.remaining_seconds(start + timedelta(minutes=10)) == 1200
    assert g.remaining_seconds(start + timedelta(hours=1)) == 0


def test_stale_pending_only_after_grace():
    g = grant(state=GrantState.PENDING)
    assert not g.stale_pending(g.created_at + timedelta(seconds=60), grace_seconds=60)
    assert g.stale_pending(g.created_at + timedelta(seconds=61), grace_seconds=60)
    assert not grant(state=GrantState.ACTIVE).stale_pending(g.created_at + timedelta(hours=1), 60)


def test_due_for_check_spaces_graph_calls():
    g = grant()
    assert g.due_for_check(g.created_at, every_seconds=10)  # never checked
    checked = grant(last_checked_at=g.created_at)
    assert not checked.due_for_check(g.created_at + timedelta(seconds=9), every_seconds=10)
    assert checked.due_for_check(g.created_at + timedelta(seconds=10), every_seconds=10)
    assert not grant(entra_user_id="").due_for_check(g.created_at, 10)  # nothing to ask Graph about
    assert not grant(state=GrantState.PENDING).due_for_check(g.created_at, 10)


def test_a_check_the_student_asked_for_is_due_at_once_and_goes_first():
    g = grant()
    asked = grant(id=2, last_checked_at=g.created_at, check_wanted_at=g.created_at)
    assert asked.due_for_check(g.created_at + timedelta(seconds=1), every_seconds=10)
    never = grant(id=3)
    old = grant(id=4, last_checked_at=g.created_at - timedelta(seconds=30))
    assert [x.id for x in sorted((old, never, asked), key=GrantView.check_order)] == [2, 3, 4]
    assert not grant(entra_user_id="", check_wanted_at=g.created_at).due_for_check(g.created_at, 10)


def test_sources_are_the_inverse_of_transitions():
    assert sources(GrantState.ACTIVE) == {GrantState.PENDING}
    assert sources(GrantState.FAILED) == {GrantState.PENDING}
    assert sources(GrantState.EXPIRED) == sources(GrantState.RELEASED) == {GrantState.PENDING, GrantState.ACTIVE}
    assert sources(GrantState.PENDING) == set()

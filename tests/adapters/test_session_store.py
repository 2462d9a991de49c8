"""The session table on SQLite and PostgreSQL: one row per session under the token's hash, revoked for good."""
from __future__ import annotations

from datetime import timedelta

import pytest

from app.adapters.store import SessionStore
from app.domain.sessions import SessionKind, SessionRecord, token_hash


@pytest.fixture
def table(store):
    """The session table over the migrated store of tests/adapters/conftest.py (its clock is `clock`)."""
    return SessionStore(store)


def record(clock, token="token-one", upn="Ada.Lovelace@uni.test", kind=SessionKind.STUDENT, minutes=60):
    now = clock()
    return SessionRecord(token_hash=token_hash(token), kind=kind, upn=upn, display_name="Ada", created_at=now,
                         last_seen_at=now, expires_at=now + timedelta(minutes=minutes), client_address="192.0.2.7")


def test_a_session_is_read_back_under_its_hash(table, clock):
    table.create_session(record(clock))
    found = table.get_session(token_hash("token-one"))
    assert found.upn == "ada.lovelace@uni.test" and found.kind is SessionKind.STUDENT
    assert found.client_address == "192.0.2.7" and found.revoked_at is None
    assert table.get_session(token_hash("token-two")) is None


def test_last_seen_only_moves_forward_and_never_on_a_revoked_session(table, clock):
    table.create_session(record(clock))
    key = token_hash("token-one")
    later = clock() + timedelta(minutes=5)
    table.touch_session(key, later)
    table.touch_session(key, clock() + timedelta(minutes=1))
    assert table.get_session(key).last_seen_at == later
    table.revoke_session(key, at=later, by="ada", reason="signed out")
    table.touch_session(key, later + timedelta(minutes=1))
    assert table.get_session(key).last_seen_at == later


def test_a_session_is_revoked_once(table, clock):
    table.create_session(record(clock))
    key = token_hash("token-one")
    assert table.revoke_session(key, at=clock(), by="ada", reason="signed out").revoked_at is not None
    assert table.revoke_session(key, at=clock(), by="ada", reason="again") is None


def test_revoking_a_person_ends_only_their_live_sessions_of_the_kinds_asked(table, clock):
    table.create_session(record(clock, "a-student"))
    table.create_session(record(clock, "a-kiosk", kind=SessionKind.KIOSK))
    table.create_session(record(clock, "someone-else", upn="grace@uni.test"))
    assert table.revoke_sessions_for("ADA.LOVELACE@uni.test", at=clock(), by="desk", reason="x",
                                     kinds=(SessionKind.KIOSK,)) == 1
    assert table.revoke_sessions_for("ada.lovelace@uni.test", at=clock(), by="desk", reason="x") == 1
    assert [s.upn for s in table.live_sessions_for("grace@uni.test", clock())] == ["grace@uni.test"]
    assert table.live_sessions_for("ada.lovelace@uni.test", clock()) == []


def test_sessions_past_their_absolute_end_are_purged_in_bounded_chunks(table, clock):
    for token in ("old-one", "old-two", "old-three"):
        table.create_session(record(clock, token, minutes=60))
    clock.advance(3601)
    table.create_session(record(clock, "new-one"))
    assert table.get_session(token_hash("old-one")) is not None  # a sign-in does not pay for the clean-up
    assert table.purge_expired(clock(), limit=2) == 2
    assert table.purge_expired(clock(), limit=2) == 1
    assert table.purge_expired(clock(), limit=2) == 0
    assert table.get_session(token_hash("new-one")) is not None


def test_the_hot_session_read_gives_what_the_orm_gives(table, clock):
    """get_session skips the ORM (every request of a signed-in browser runs it): same record, same types."""
    from app.adapters.store.sessions import SessionRow

    table.create_session(record(clock))
    key = token_hash("token-one")
    hot = table.get_session(key)
    with table.store._tx() as session:
        assert hot == session.get(SessionRow, key).record()
    assert hot.created_at.tzinfo is not None and hot.mfa is False and hot.kind is SessionKind.STUDENT


def open_grant(store, clock, upn="ada.lovelace@uni.test"):
    grant, _ = store.create_grant(upn=upn, user_dn=f"CN={upn},OU=Students,DC=uni,DC=test", entra_user_id="",
                                  actor=upn, reason="stuck", created_at=clock(),
                                  expires_at=clock() + timedelta(minutes=30))
    return grant


def released_elsewhere(store, grant_id, clock):
    """End a grant through a second Store on the same database, as another process would."""
    from app.adapters.store import Store
    from app.domain.grants import GrantState

    other = Store(store.url, clock=clock)
    try:
        assert other.move_grant(grant_id, GrantState.FAILED, ended_at=clock()) is not None
    finally:
        other.dispose()


def test_the_session_read_brings_the_open_grant_for_the_next_read_of_it_once(table, store, clock):
    """A poll reads its session and its open grant in one SELECT: the grant read that follows costs nothing."""
    table.create_session(record(clock))
    grant = open_grant(store, clock)
    assert table.get_session(token_hash("token-one")) is not None
    released_elsewhere(store, grant.id, clock)
    # As read with the session (a moment earlier, in the same request), then afresh from the database.
    ahead = store.open_grant_for("ada.lovelace@uni.test")
    assert ahead == grant  # every field as the grant was created: read along with the session
    assert store.open_grant_for("ada.lovelace@uni.test") is None


def test_nothing_read_ahead_is_used_for_another_person_after_a_write_or_after_the_request(table, store, clock):
    table.create_session(record(clock))
    grant = open_grant(store, clock)
    table.get_session(token_hash("token-one"))
    assert store.open_grant_for("grace.hopper@uni.test") is None  # another person: read from the database
    released_elsewhere(store, grant.id, clock)
    assert store.open_grant_for("ada.lovelace@uni.test") is None  # the wrong key used it up

    second = open_grant(store, clock)
    table.get_session(token_hash("token-one"))
    store.record_check(second.id, at=clock())  # a write on this thread: its grant is read afresh
    released_elsewhere(store, second.id, clock)
    assert store.open_grant_for("ada.lovelace@uni.test") is None

    third = open_grant(store, clock)
    table.get_session(token_hash("token-one"))
    store.forget_read_ahead()  # the end of the request
    released_elsewhere(store, third.id, clock)
    assert store.open_grant_for("ada.lovelace@uni.test") is None


def test_a_read_ahead_older_than_its_limit_is_not_used(table, store, clock, monkeypatch):
    from app.adapters.store import base

    table.create_session(record(clock))
    grant = open_grant(store, clock)
    table.get_session(token_hash("token-one"))
    monkeypatch.setattr(base.time, "monotonic", lambda: 10**9)
    released_elsewhere(store, grant.id, clock)
    assert store.open_grant_for("ada.lovelace@uni.test") is None


def test_a_session_without_an_open_grant_reads_ahead_none(table, store, clock):
    table.create_session(record(clock))
    table.get_session(token_hash("token-one"))
    assert store.take_read_ahead(("open grant", "ada.lovelace@uni.test")) == (True, None)

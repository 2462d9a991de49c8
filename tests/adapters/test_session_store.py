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

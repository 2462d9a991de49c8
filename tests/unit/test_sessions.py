"""Session lifetimes, pure: revoked, idle and absolute ends, the touch interval, tokens and their hashes."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from app.domain.sessions import (
    Lifetime,
    SessionKind,
    SessionPolicy,
    SessionRecord,
    Verdict,
    new_token,
    token_hash,
    well_formed,
)

T0 = datetime(2026, 11, 29, 9, 0, tzinfo=timezone.utc)
POLICY = SessionPolicy({
    SessionKind.STUDENT: Lifetime(idle=timedelta(minutes=20), absolute=timedelta(minutes=60)),
    SessionKind.KIOSK: Lifetime(idle=timedelta(minutes=2), absolute=timedelta(minutes=30)),
})


def record(kind=SessionKind.STUDENT, **changes) -> SessionRecord:
    base = SessionRecord(token_hash=token_hash("t"), kind=kind, upn="ada@uni.test", display_name="Ada",
                         created_at=T0, last_seen_at=T0, expires_at=POLICY.expires_at(kind, T0))
    return replace(base, **changes)


def test_a_fresh_session_is_valid_and_an_unknown_one_is_not():
    assert POLICY.verdict(record(), T0 + timedelta(minutes=1)) is Verdict.VALID
    assert POLICY.verdict(None, T0) is Verdict.UNKNOWN


def test_a_revoked_session_stays_revoked():
    assert POLICY.verdict(record(revoked_at=T0), T0 + timedelta(seconds=1)) is Verdict.REVOKED


def test_idle_limit_counts_from_last_seen():
    assert POLICY.verdict(record(), T0 + timedelta(minutes=19, seconds=59)) is Verdict.VALID
    assert POLICY.verdict(record(), T0 + timedelta(minutes=20)) is Verdict.IDLE
    seen_later = record(last_seen_at=T0 + timedelta(minutes=15))
    assert POLICY.verdict(seen_later, T0 + timedelta(minutes=30)) is Verdict.VALID


def test_absolute_limit_holds_however_active_the_session_is():
    busy = record(last_seen_at=T0 + timedelta(minutes=59, seconds=59))
    assert POLICY.verdict(busy, T0 + timedelta(minutes=59, seconds=59)) is Verdict.VALID
    assert POLICY.verdict(busy, T0 + timedelta(minutes=60)) is Verdict.EXPIRED


def test_each_kind_has_its_own_lifetimes_and_an_unconfigured_kind_cannot_start():
    kiosk = record(SessionKind.KIOSK)
    assert kiosk.expires_at == T0 + timedelta(minutes=30)
    assert POLICY.verdict(kiosk, T0 + timedelta(minutes=2)) is Verdict.IDLE
    with pytest.raises(ValueError, match="staff"):
        POLICY.expires_at(SessionKind.STAFF, T0)


def test_last_seen_is_written_at_most_once_a_minute_and_finer_for_short_idle_limits():
    assert not POLICY.needs_touch(record(), T0 + timedelta(seconds=58))
    assert POLICY.needs_touch(record(), T0 + timedelta(seconds=60))
    assert POLICY.needs_touch(record(SessionKind.KIOSK), T0 + timedelta(seconds=30))  # a quarter of 2 minutes


def test_tokens_are_random_and_only_their_hash_is_stored():
    first, second = new_token(), new_token()
    assert first != second and well_formed(first)
    assert token_hash(first) != first and len(token_hash(first)) == 64
    assert token_hash(first) == token_hash(first)


@pytest.mark.parametrize("junk", [None, "", "short", "x" * 65, "has space in it and is long enough", "ä" * 30])
def test_junk_cookies_are_not_tokens(junk):
    assert not well_formed(junk)


def test_lifetimes_must_be_positive():
    with pytest.raises(ValueError):
        Lifetime(idle=timedelta(0), absolute=timedelta(minutes=5))

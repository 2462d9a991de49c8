"""Invite rules, pure: the token's shape and hash, the one state, and why a token or a sign-in is refused."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from app.domain.invites import (
    HASH_PREFIX_CHARS,
    InviteError,
    InviteRefusal,
    InviteState,
    InviteView,
    expiry,
    hash_prefix,
    new_token,
    redeem_refusal,
    token_hash,
    token_refusal,
    well_formed,
)
from app.domain.mail import MailState
from app.domain.upn import Upn

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc)
ADA = Upn("ada@uni.test")
LIVE = InviteView(id=1, upn=ADA, created_at=NOW, created_by="desk@uni.test", reason="ticket 1",
                  expires_at=NOW + timedelta(days=7), mail_state=MailState.SENT)


def test_a_token_carries_at_least_128_random_bits_and_never_repeats():
    tokens = {new_token() for _ in range(200)}
    assert len(tokens) == 200
    assert all(well_formed(t) and len(t) * 6 >= 256 for t in tokens)


@pytest.mark.parametrize("text", ["", "short", "x" * 42, "x" * 44, "a" * 42 + "!", "a" * 42 + "\n", None, 42,
                                  "../" + "a" * 40, "a" * 42 + "=", "ä" * 43])
def test_anything_but_a_tokens_shape_is_refused_before_a_lookup(text):
    assert not well_formed(text)


def test_the_store_key_is_the_sha256_and_the_audit_keeps_a_short_prefix_of_it():
    token = new_token()
    assert len(token_hash(token)) == 64 and token not in token_hash(token)
    assert hash_prefix(token) == token_hash(token)[:HASH_PREFIX_CHARS] and len(hash_prefix(token)) == 8
    assert hash_prefix("junk\u2028") != hash_prefix("junk")  # any text, safely


@pytest.mark.parametrize("change, state", [
    ({}, InviteState.SENT),
    ({"opened_at": NOW}, InviteState.OPENED),
    ({"opened_at": NOW, "used_at": NOW}, InviteState.USED),
    ({"revoked_at": NOW}, InviteState.REVOKED),
    ({"mail_state": MailState.BOUNCED}, InviteState.BOUNCED),
    ({"mail_state": MailState.FAILED}, InviteState.BOUNCED),
    ({"mail_state": MailState.QUEUED}, InviteState.SENT),
    ({"mail_state": None}, InviteState.SENT),
    ({"expires_at": NOW}, InviteState.EXPIRED),
    ({"expires_at": NOW, "opened_at": NOW}, InviteState.EXPIRED),
    ({"expires_at": NOW, "mail_state": MailState.BOUNCED}, InviteState.BOUNCED),
    ({"used_at": NOW, "revoked_at": NOW}, InviteState.USED),
    ({"revoked_at": NOW, "mail_state": MailState.BOUNCED}, InviteState.REVOKED),
])
def test_one_state_from_the_record(change, state):
    assert replace(LIVE, **change).state(NOW) is state


def test_only_sent_and_opened_invites_lead_to_a_sign_in():
    assert {s for s in InviteState if s.usable} == {InviteState.SENT, InviteState.OPENED}


def test_a_token_is_refused_for_every_dead_state_and_an_unknown_one():
    assert token_refusal(LIVE, NOW) is None
    assert token_refusal(replace(LIVE, opened_at=NOW), NOW) is None
    assert token_refusal(None, NOW) is InviteRefusal.UNKNOWN
    assert token_refusal(replace(LIVE, used_at=NOW), NOW) is InviteRefusal.USED
    assert token_refusal(replace(LIVE, revoked_at=NOW), NOW) is InviteRefusal.REVOKED
    assert token_refusal(LIVE, LIVE.expires_at) is InviteRefusal.EXPIRED
    assert token_refusal(replace(LIVE, mail_state=MailState.BOUNCED), NOW) is InviteRefusal.BOUNCED


def test_only_the_invites_own_student_spends_it():
    assert redeem_refusal(LIVE, Upn("ADA@uni.test "), NOW) is None
    assert redeem_refusal(LIVE, Upn("grace@uni.test"), NOW) is InviteRefusal.OTHER_ACCOUNT
    assert redeem_refusal(replace(LIVE, used_at=NOW), ADA, NOW) is InviteRefusal.USED
    assert redeem_refusal(None, ADA, NOW) is InviteRefusal.UNKNOWN


def test_an_invite_lasts_whole_days_and_at_least_one():
    assert expiry(NOW, 7) == NOW + timedelta(days=7)
    with pytest.raises(InviteError):
        expiry(NOW, 0)

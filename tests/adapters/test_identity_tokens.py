"""id_token verification and claim mapping with keys made here (no authority needed)."""
from __future__ import annotations

import base64
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from app.adapters.identity import (
    BUSY_DEFAULT_SECONDS,
    BUSY_MAX_SECONDS,
    JWKS_REFRESH_SECONDS,
    IdTokenValidator,
    _authority_error,
    retry_after_seconds,
    user_from_claims,
)
from app.domain.identity import SignInError, read_authority_response

ISSUER = "https://adfs.uni.test/adfs"
CLIENT_ID = "6f1c3a52-2d8e-4b7a-9c1e-5a0d4e7b8c21"


class KeySet:
    """Signing keys an authority would publish, and a JWKS endpoint that counts its fetches."""

    def __init__(self):
        self.keys = {"k1": rsa.generate_private_key(public_exponent=65537, key_size=2048)}
        self.fetches = 0

    def rotate(self, kid: str) -> None:
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwks(self) -> dict:
        self.fetches += 1
        return {"keys": [dict(json.loads(RSAAlgorithm.to_jwk(k.public_key())), kid=kid, use="sig", alg="RS256")
                         for kid, k in self.keys.items()]}

    def sign(self, claims: dict, kid: str = "k1", **header) -> str:
        return jwt.encode(claims, self.keys[kid], algorithm="RS256", headers={"kid": kid, **header})


def claims(**changes) -> dict:
    now = int(time.time())
    base = {"iss": ISSUER, "aud": CLIENT_ID, "sub": "s-1", "iat": now, "nbf": now, "exp": now + 3600,
            "upn": "ada.lovelace@uni.test", "unique_name": "UNI\\ada.lovelace", "nonce": "n"}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


@pytest.fixture
def keys():
    return KeySet()


@pytest.fixture
def validator(keys):
    return IdTokenValidator(ISSUER, CLIENT_ID, keys.jwks)


def test_a_good_token_passes(keys, validator):
    assert validator.validate(keys.sign(claims()))["upn"] == "ada.lovelace@uni.test"


@pytest.mark.parametrize("change, code", [
    ({"aud": "someone-else"}, "invalid_token"),
    ({"iss": "https://evil.test/adfs"}, "invalid_token"),
    ({"exp": int(time.time()) - 600, "iat": int(time.time()) - 4000}, "token_expired"),
    ({"nbf": int(time.time()) + 600}, "invalid_token"),
    ({"exp": None}, "invalid_token"),
    ({"sub": None}, "invalid_token"),
])
def test_wrong_claims_are_refused(keys, validator, change, code):
    with pytest.raises(SignInError) as caught:
        validator.validate(keys.sign(claims(**change)))
    assert caught.value.code == code
    assert "sign" in str(caught.value).lower()


def test_small_clock_skew_is_tolerated(keys, validator):
    assert validator.validate(keys.sign(claims(exp=int(time.time()) - 30)))


def test_a_tampered_payload_fails_the_signature(keys, validator):
    header, payload, signature = keys.sign(claims()).split(".")
    forged = dict(claims(), upn="ken.thompson@uni.test")
    forged_payload = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    with pytest.raises(SignInError) as caught:
        validator.validate(f"{header}.{forged_payload}.{signature}")
    assert caught.value.code == "invalid_token"


def test_unsigned_and_hmac_tokens_are_refused(keys, validator):
    unsigned = jwt.encode(claims(), None, algorithm="none", headers={"kid": "k1"})
    hmac = jwt.encode(claims(), "a-shared-secret-of-at-least-32-bytes!", algorithm="HS256", headers={"kid": "k1"})
    for token in (unsigned, hmac, "not.a.token", ""):
        with pytest.raises(SignInError):
            validator.validate(token)


def test_a_key_from_another_authority_is_refused(validator):
    with pytest.raises(SignInError):
        validator.validate(KeySet().sign(claims()))


def test_keys_are_cached_and_refreshed_for_a_new_kid(keys):
    now = [1000.0]
    validator = IdTokenValidator(ISSUER, CLIENT_ID, keys.jwks, clock=lambda: now[0])
    validator.validate(keys.sign(claims()))
    validator.validate(keys.sign(claims()))
    assert keys.fetches == 1
    keys.rotate("k2")
    now[0] += JWKS_REFRESH_SECONDS
    assert validator.validate(keys.sign(claims(), kid="k2"))  # unknown kid: one refetch finds it
    assert keys.fetches == 2
    stranger = KeySet()
    stranger.rotate("k9")
    for _ in range(3):  # an unknown kid cannot make the portal hammer the authority
        with pytest.raises(SignInError):
            validator.validate(stranger.sign(claims(), kid="k9"))
    assert keys.fetches == 2


TID = "8d3f2b4e-6c1a-4f5e-9b7d-2a1c0e9f8b7a"
OTHER_TID = "00000000-0000-0000-0000-000000000000"
ENTRA_ISSUER = f"https://login.microsoftonline.com/{TID}/v2.0"


def test_entra_multi_tenant_issuer_is_filled_from_the_pinned_tenant(keys):
    validator = IdTokenValidator("https://login.microsoftonline.com/{tenantid}/v2.0", CLIENT_ID, keys.jwks,
                                 tenant_id=TID)
    assert validator.validate(keys.sign(claims(iss=ENTRA_ISSUER, tid=TID)))["tid"] == TID
    for other in (claims(iss=ENTRA_ISSUER, tid=OTHER_TID),
                  claims(iss=f"https://login.microsoftonline.com/{OTHER_TID}/v2.0", tid=OTHER_TID)):
        with pytest.raises(SignInError):
            validator.validate(keys.sign(other))
    with pytest.raises(ValueError):  # a template issuer without a pinned tenant would accept any tenant
        IdTokenValidator("https://login.microsoftonline.com/{tenantid}/v2.0", CLIENT_ID, keys.jwks)


@pytest.mark.parametrize("tid", [OTHER_TID, None, ""])
def test_an_entra_token_from_another_tenant_is_refused(keys, tid):
    validator = IdTokenValidator(ENTRA_ISSUER, CLIENT_ID, keys.jwks, tenant_id=TID)
    assert validator.validate(keys.sign(claims(iss=ENTRA_ISSUER, tid=TID.upper())))
    with pytest.raises(SignInError) as caught:
        validator.validate(keys.sign(claims(iss=ENTRA_ISSUER, tid=tid)))
    assert caught.value.code == "invalid_token"


@pytest.mark.parametrize("aud, azp, accepted", [
    ([CLIENT_ID], None, True),
    ([CLIENT_ID, "https://api.other.test"], CLIENT_ID, True),
    ([CLIENT_ID, "https://api.other.test"], None, False),
    ([CLIENT_ID, "https://api.other.test"], "another-client", False),
    (CLIENT_ID, "another-client", False),
    (CLIENT_ID, CLIENT_ID, True),
])
def test_other_audiences_need_this_client_as_authorized_party(keys, validator, aud, azp, accepted):
    token = keys.sign(claims(aud=aud, azp=azp))
    if accepted:
        assert validator.validate(token)
    else:
        with pytest.raises(SignInError) as caught:
            validator.validate(token)
        assert caught.value.code == "invalid_token"


def test_adfs_claims_map_to_a_user():
    user = user_from_claims(claims(name="Ada Lovelace", iat=1767225600))
    assert (user.upn, user.display_name, user.subject, user.object_id) == (
        "ada.lovelace@uni.test", "Ada Lovelace", "s-1", "")
    assert user.issued_at.isoformat() == "2026-01-01T00:00:00+00:00"
    assert "nonce" not in user.claims and user.claims["unique_name"] == "UNI\\ada.lovelace"


def test_entra_claims_map_to_a_user():
    user = user_from_claims({"sub": "p", "preferred_username": "Grace.Hopper@uni.test", "oid": "o-1",
                             "tid": "t-1", "given_name": "Grace", "family_name": "Hopper", "roles": ["Helpdesk"]})
    assert (user.upn, user.display_name, user.object_id, user.tenant_id) == (
        "grace.hopper@uni.test", "Grace Hopper", "o-1", "t-1")
    assert user.claims["roles"] == ["Helpdesk"]


def test_a_token_without_a_upn_is_refused():
    for claims_without_upn in ({"sub": "x", "unique_name": "UNI\\ada"}, {"sub": "x", "email": "ada@uni.test"}):
        with pytest.raises(SignInError) as caught:
            user_from_claims(claims_without_upn)
        assert caught.value.code == "no_upn"


def test_a_validator_needs_an_issuer_to_check(keys):
    with pytest.raises(ValueError):
        IdTokenValidator("", CLIENT_ID, keys.jwks)


def test_authority_errors_become_plain_messages():
    cancelled = _authority_error("access_denied", "AADSTS65004: User declined to consent")
    assert cancelled.code == "cancelled" and "cancelled" in str(cancelled)
    refused = _authority_error("invalid_request", "AADSTS50105: Your administrator has configured ... Trace ID: 1")
    assert refused.code == "authority_error" and "AADSTS50105" in str(refused) and "Trace" not in str(refused)


ENTRA_CODE = "1.AXEA" + "Zx-_9." * 200  # Entra's codes are about 1 KB of URL-safe text with dots


@pytest.mark.parametrize("fields, expected", [
    ({"state": ["s1"], "code": [ENTRA_CODE]}, ("s1", ENTRA_CODE, "")),
    ({"state": ["s1"], "code": ["abc"], "session_state": ["x\ny"], "client_info": ["\u20ac"]}, ("s1", "abc", "")),
    ({"state": ["s1"], "error": ["access_denied"], "error_description": ["AADSTS65004: no\r\nTrace ID: 1"]},
     ("s1", "", "access_denied")),
])
def test_a_well_formed_answer_is_read(fields, expected):
    answer = read_authority_response(fields)
    assert (answer.state, answer.code, answer.error) == expected


@pytest.mark.parametrize("fields", [
    {},
    {"code": ["abc"]},  # no state
    {"state": ["s1"]},  # neither code nor error
    {"state": ["s1"], "code": ["abc"], "error": ["access_denied"]},  # both
    {"state": ["s1", "s1"], "code": ["abc"]},
    {"state": ["s1"], "code": ["abc", "def"]},
    {"state": ["s1"], "error": ["access_denied", "x"]},
    {"state": ["s1"], "error": ["x\ny"]},
    {"state": ["s1"], "error": ["\u20ac"]},
    {"state": ["s1"], "error": ["a" * 65]},
    {"state": ["s 1"], "code": ["abc"]},
    {"state": ["s" * 129], "code": ["abc"]},
    {"state": ["s1"], "code": ["ab\x00c"]},
    {"state": ["s1"], "code": ["a" * 8193]},
    {"state": ["s1"], "error": ["access_denied"], "error_description": ["d" * 4097]},
])
def test_a_malformed_answer_is_refused(fields):
    with pytest.raises(SignInError) as caught:
        read_authority_response(fields)
    assert caught.value.code == "bad_response"


@pytest.mark.parametrize("header, seconds", [
    (None, BUSY_DEFAULT_SECONDS), ("", BUSY_DEFAULT_SECONDS), ("7", 7), ("2.128", 3), ("0", 1), ("-5", 1),
    ("nonsense", BUSY_DEFAULT_SECONDS), ("nan", BUSY_DEFAULT_SECONDS), ("99999999", BUSY_MAX_SECONDS),
    ("Wed, 21 Oct 2015 07:28:00 GMT", 1),  # a date in the past: try again at once
])
def test_retry_after_is_read_in_whole_seconds(header, seconds):
    assert retry_after_seconds(header) == seconds

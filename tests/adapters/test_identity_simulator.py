"""Sign-in end to end with the real msal against the simulated AD FS and Entra (keep-alive TLS server)."""
from __future__ import annotations

import html
import json
import logging
import re
import time
from urllib.parse import parse_qs, urljoin, urlsplit

import jwt
import pytest
import trustme
from requests.adapters import HTTPAdapter

from app.adapters.identity import Identity
from app.domain.identity import SignInError, read_authority_response
from app.simulator.keys import SigningKey
from tests.support import run_in_forked_child

REDIRECT_URI = "https://localhost/auth/callback"
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')


def drive_authorize(simulator, auth_uri: str, upn: str, password: str | None = None) -> dict[str, str]:
    """Play the browser: open auth_uri, fill the sign-in forms, return the fields form_post would send."""
    browser = simulator.session()
    page = browser.get(auth_uri, timeout=10)
    for _ in range(6):
        fields = {k: html.unescape(v) for k, v in HIDDEN.findall(page.text)}
        action = re.search(r'<form[^>]*action="([^"]*)"', page.text)
        if action and html.unescape(action.group(1)) == REDIRECT_URI:
            return fields
        assert action, f"no form on {page.url}: {page.text[:500]}"
        if 'name="UserName"' in page.text:
            fields.update(UserName=upn, Password=password or simulator.user(upn).password)
        elif 'name="login"' in page.text:
            fields["login"] = upn
        page = browser.post(urljoin(page.url, html.unescape(action.group(1))), data=fields, timeout=10)
    raise AssertionError(f"sign-in did not come back to the portal: {page.url}")


def answer(fields: dict[str, str]):
    """Read the fields form_post would send as the portal's callback does."""
    return read_authority_response({k: [v] for k, v in fields.items()})


@pytest.fixture(params=["adfs", "entra"])
def identity(request, simulator):
    authority = simulator.adfs_authority if request.param == "adfs" else simulator.entra_authority
    return Identity(authority, simulator.portal_client_id, simulator.secret(simulator.portal_client_id),
                    ca_file=simulator.ca_file)


# margaret.hamilton is not MFA-required: she can finish an Entra sign-in (a stuck student would loop there).
UPN = "margaret.hamilton@uni.test"


def test_sign_in_end_to_end(simulator, identity):
    auth_uri, flow = identity.begin_sign_in(REDIRECT_URI)
    query = parse_qs(urlsplit(auth_uri).query)
    assert query["code_challenge_method"] == ["S256"] and query["response_mode"] == ["form_post"]
    assert "offline_access" not in query["scope"][0] and "openid" in query["scope"][0]
    assert "prompt" not in query
    params = drive_authorize(simulator, auth_uri, UPN)
    assert set(params) >= {"code", "state"}
    user = identity.complete_sign_in(flow, answer(params))
    assert user.upn == UPN
    assert user.subject
    if identity.is_adfs:
        assert user.object_id == "" and user.claims.get("unique_name", "").endswith("margaret.hamilton")
    else:
        assert user.tenant_id == simulator.tenant_id and user.object_id
        assert user.display_name == "Margaret Hamilton"


def test_a_stuck_student_signs_in_through_adfs(simulator):
    """The recommended authority: AD FS asks the portal's relying party for the password only."""
    identity = Identity(simulator.adfs_authority, simulator.portal_client_id,
                        simulator.secret(simulator.portal_client_id), ca_file=simulator.ca_file)
    auth_uri, flow = identity.begin_sign_in(REDIRECT_URI, login_hint="ada.lovelace@uni.test")
    user = identity.complete_sign_in(flow, answer(drive_authorize(simulator, auth_uri, "ada.lovelace@uni.test")))
    assert user.upn == "ada.lovelace@uni.test"


def test_kiosk_sign_in_forces_the_password_prompt(simulator, identity):
    auth_uri, _ = identity.begin_sign_in(REDIRECT_URI, force_login=True, login_hint=UPN)
    query = parse_qs(urlsplit(auth_uri).query)
    assert query["prompt"] == ["login"] and query["login_hint"] == [UPN]


def test_sign_in_works_in_a_forked_child(simulator, identity):
    """gunicorn --preload forks workers from a master that may have used the adapter already."""
    auth_uri, flow = identity.begin_sign_in(REDIRECT_URI)
    identity.complete_sign_in(flow, answer(drive_authorize(simulator, auth_uri, UPN)))

    def in_child():
        uri, child_flow = identity.begin_sign_in(REDIRECT_URI)
        return identity.complete_sign_in(child_flow, answer(drive_authorize(simulator, uri, UPN))).upn

    assert run_in_forked_child(in_child) == UPN
    auth_uri, flow = identity.begin_sign_in(REDIRECT_URI)  # the parent's connections were not disturbed
    assert identity.complete_sign_in(flow, answer(drive_authorize(simulator, auth_uri, UPN))).upn == UPN


def test_a_code_works_once(simulator, identity):
    auth_uri, flow = identity.begin_sign_in(REDIRECT_URI)
    params = drive_authorize(simulator, auth_uri, UPN)
    identity.complete_sign_in(dict(flow), answer(params))
    with pytest.raises(SignInError) as caught:
        identity.complete_sign_in(dict(flow), answer(params))
    assert caught.value.code == "authority_error"


def test_state_mismatch_is_refused(simulator, identity):
    auth_uri, flow = identity.begin_sign_in(REDIRECT_URI)
    params = drive_authorize(simulator, auth_uri, UPN)
    with pytest.raises(SignInError) as caught:
        identity.complete_sign_in(flow, answer(dict(params, state="someone-elses-state")))
    assert caught.value.code == "state_mismatch"


def test_missing_flow_and_cancel_are_explained(identity):
    with pytest.raises(SignInError) as caught:
        identity.complete_sign_in(None, answer({"code": "x", "state": "y"}))
    assert caught.value.code == "expired_flow"
    _, flow = identity.begin_sign_in(REDIRECT_URI)
    with pytest.raises(SignInError) as caught:
        identity.complete_sign_in(flow, answer({"error": "access_denied", "state": flow["state"],
                                                "error_description": "AADSTS65004: User declined to consent"}))
    assert caught.value.code == "cancelled"


def test_logout_url_comes_from_discovery(identity, simulator):
    url = identity.logout_url("https://localhost/")
    expected = "/adfs/oauth2/logout" if identity.is_adfs else f"/{simulator.tenant_id}/oauth2/v2.0/logout"
    assert urlsplit(url).path.rstrip("/") == expected
    assert parse_qs(urlsplit(url).query)["post_logout_redirect_uri"] == ["https://localhost/"]


class TokenRewriter(HTTPAdapter):
    """Change the id_token in the authority's token answer, as an attacker or a broken proxy would."""

    def __init__(self, rewrite):
        super().__init__()
        self.rewrite = rewrite

    def send(self, request, **kwargs):
        response = super().send(request, **kwargs)
        if request.method == "POST" and request.url.rstrip("/").endswith("/token") and response.ok:
            body = response.json()
            body["id_token"] = self.rewrite(body["id_token"])
            response._content = json.dumps(body).encode()
        return response


def resign(simulator, **changes):
    """Re-sign the id_token with the authority's own key after changing claims (so only the claims are wrong)."""
    key = SigningKey(simulator.state_dir)

    def rewrite(token: str) -> str:
        claims = jwt.decode(token, options={"verify_signature": False})
        claims.update(changes)
        return key.sign(claims)
    return rewrite


def tamper(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = jwt.decode(token, options={"verify_signature": False})
    claims["upn"] = claims["preferred_username"] = "ken.thompson@uni.test"
    forged = jwt.utils.base64url_encode(json.dumps(claims).encode()).decode()
    return f"{header}.{forged}.{signature}"


@pytest.mark.parametrize("rewrite, code", [
    (lambda sim: tamper, "invalid_token"),
    (lambda sim: resign(sim, aud="another-app"), "invalid_token"),
    (lambda sim: resign(sim, iss="https://evil.example/adfs"), "invalid_token"),
    (lambda sim: resign(sim, exp=int(time.time()) - 3600, iat=int(time.time()) - 7200), "token_expired"),
    (lambda sim: resign(sim, aud=[sim.portal_client_id, "https://api.other.test"]), "invalid_token"),
    (lambda sim: resign(sim, azp="another-client"), "invalid_token"),
], ids=["tampered", "wrong-audience", "wrong-issuer", "expired", "other-audiences-no-azp", "other-azp"])
def test_bad_id_tokens_are_refused(simulator, identity, rewrite, code):
    identity.http_session.mount(simulator.base_url, TokenRewriter(rewrite(simulator)))
    auth_uri, flow = identity.begin_sign_in(REDIRECT_URI)
    with pytest.raises(SignInError) as caught:
        identity.complete_sign_in(flow, answer(drive_authorize(simulator, auth_uri, UPN)))
    assert caught.value.code == code
    assert "token" not in str(caught.value).lower()  # the message is for a person, not a developer


def test_an_entra_token_of_another_tenant_is_refused(simulator):
    """The tenant is pinned: a token signed by the authority's own key but naming another tenant is refused."""
    identity = Identity(simulator.entra_authority, simulator.portal_client_id,
                        simulator.secret(simulator.portal_client_id), ca_file=simulator.ca_file)
    assert identity.tenant_id == simulator.tenant_id
    other = "00000000-0000-0000-0000-000000000000"
    identity.http_session.mount(simulator.base_url, TokenRewriter(resign(simulator, tid=other)))
    auth_uri, flow = identity.begin_sign_in(REDIRECT_URI)
    with pytest.raises(SignInError) as caught:
        identity.complete_sign_in(flow, answer(drive_authorize(simulator, auth_uri, UPN)))
    assert caught.value.code == "invalid_token"


def test_an_unreachable_authority_is_a_clear_error(simulator):
    dead = Identity("https://127.0.0.1:9/adfs", "x", ca_file=simulator.ca_file, timeout=2)
    with pytest.raises(SignInError) as caught:
        dead.begin_sign_in(REDIRECT_URI)
    assert caught.value.code == "unreachable"
    assert dead.logout_url("https://localhost/").startswith("https://127.0.0.1:9/adfs/oauth2/logout?")


def test_environment_ca_bundle_is_ignored(simulator, monkeypatch):
    """REQUESTS_CA_BUNDLE pointing elsewhere must not override the CA the portal was given."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent/ca.pem")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    identity = Identity(simulator.adfs_authority, simulator.portal_client_id,
                        simulator.secret(simulator.portal_client_id), ca_file=simulator.ca_file)
    auth_uri, _ = identity.begin_sign_in(REDIRECT_URI)
    assert auth_uri.startswith(simulator.adfs_authority)


def test_an_untrusted_certificate_is_refused(simulator, tmp_path):
    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_bytes(trustme.CA().cert_pem.bytes())
    identity = Identity(simulator.adfs_authority, simulator.portal_client_id, ca_file=str(other_ca))
    with pytest.raises(SignInError) as caught:
        identity.begin_sign_in(REDIRECT_URI)
    assert caught.value.code == "unreachable"


def test_no_secret_code_or_token_reaches_the_logs(simulator, identity, caplog):
    caplog.set_level(logging.DEBUG)
    secret = simulator.secret(simulator.portal_client_id)
    seen: list[str] = []
    identity.http_session.mount(simulator.base_url, TokenRewriter(lambda token: seen.append(token) or token))
    auth_uri, flow = identity.begin_sign_in(REDIRECT_URI)
    params = drive_authorize(simulator, auth_uri, UPN)
    identity.complete_sign_in(flow, answer(params))
    assert seen, "the token answer was not observed"
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for value in (secret, params["code"], seen[0], seen[0].split(".")[1], flow["code_verifier"]):
        assert value not in logged
    with pytest.raises(SignInError):
        identity.complete_sign_in(flow, answer(params))  # the failure path logs too
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert params["code"] not in logged and secret not in logged


class HeaderRecorder(HTTPAdapter):
    """Keep the headers of every token request the adapter sends."""

    def __init__(self):
        super().__init__()
        self.token_headers: list[dict] = []

    def send(self, request, **kwargs):
        if request.method == "POST" and request.url.rstrip("/").endswith("/token"):
            self.token_headers.append(dict(request.headers))
        return super().send(request, **kwargs)


def test_no_answer_reaches_a_later_token_request(simulator, identity):
    """MSAL's shared telemetry would send a failed call's error with the next student's token request."""
    recorder = HeaderRecorder()
    identity.http_session.mount(simulator.base_url, recorder)
    auth_uri, flow = identity.begin_sign_in(REDIRECT_URI)
    params = drive_authorize(simulator, auth_uri, UPN)
    identity.complete_sign_in(dict(flow), answer(params))
    with pytest.raises(SignInError):
        identity.complete_sign_in(dict(flow), answer(params))  # the code is used: the authority says invalid_grant
    auth_uri, flow = identity.begin_sign_in(REDIRECT_URI)
    assert identity.complete_sign_in(flow, answer(drive_authorize(simulator, auth_uri, UPN))).upn == UPN
    assert len(recorder.token_headers) == 3
    for headers in recorder.token_headers:
        last = headers.get("x-client-last-telemetry", "")
        assert "invalid_grant" not in last and "|1,|" not in last, last

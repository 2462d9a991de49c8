"""The real msal against the simulated AD FS and Entra: auth code (PKCE, form_post), refresh, client credentials,
and the errors Microsoft returns for bad requests."""
from __future__ import annotations

import base64
import hashlib
from urllib.parse import urlencode

import jwt
import msal
import pytest

from tests.fixtures.simulator import GRAPH_SCOPE, dump
from tests.simulator.browserless import Browserless

REDIRECT = "http://localhost:5000/auth/callback"  # loopback: any port matches the registration


def msal_app(sim, authority: str, client_id: str | None = None, secret: str | None = None):
    client_id = client_id or sim.portal_client_id
    return msal.ConfidentialClientApplication(
        client_id, client_credential=secret if secret is not None else sim.secret(client_id),
        authority=authority, http_client=sim.session(), instance_discovery=False)


def verified_claims(sim, token: str, audience: str, issuer: str) -> dict:
    """Check signature, audience, issuer and expiry against the published JWKS, as a careful client must."""
    jwks = sim.session().get(sim.base_url + "/adfs/discovery/keys", timeout=10).json()
    key = jwt.PyJWK(jwks["keys"][0]).key
    return jwt.decode(token, key, algorithms=["RS256"], audience=audience, issuer=issuer)


def sign_in(sim, flow: dict, upn: str, password: str | None = None) -> dict:
    """Go from auth_uri to the redirect URI through the sign-in pages; return what the client receives."""
    browser = Browserless(sim.session(), REDIRECT)
    page = browser.go(flow["auth_uri"])
    if "i0116" in page.text:  # Entra's username page (home realm discovery)
        page = browser.submit(page, {"login": upn})
    assert 'name="Password"' in page.text, dump_page(page)
    landing = browser.submit(page, {"UserName": upn, "Password": password or sim.user(upn).password})
    assert landing.params, dump_page(landing)
    return landing.params


def hashed(nonce: str) -> str:
    """msal sends the SHA-256 of the flow's nonce and checks it comes back."""
    return hashlib.sha256(nonce.encode()).hexdigest()


def dump_page(page) -> str:
    return f"{page.status} {page.url}: {page.text[:400]}"


def test_adfs_authority_auth_code_with_pkce_and_form_post(simulator):
    app = msal_app(simulator, simulator.adfs_authority)
    flow = app.initiate_auth_code_flow([], redirect_uri=REDIRECT, response_mode="form_post")
    assert "code_challenge_method=S256" in flow["auth_uri"]
    response = sign_in(simulator, flow, "ada.lovelace@uni.test")
    result = app.acquire_token_by_auth_code_flow(flow, response)
    assert "error" not in result, result
    claims = verified_claims(simulator, result["id_token"], simulator.portal_client_id, simulator.adfs_authority)
    assert claims["upn"] == "ada.lovelace@uni.test"
    assert claims["unique_name"] == "UNI\\ada.lovelace"
    assert claims["nonce"] == hashed(flow["nonce"])
    assert claims["sid"].startswith("S-1-5-21-")
    assert claims["exp"] > claims["iat"]
    # The access token comes from the federation service identifier, as AD FS issues it.
    access = jwt.decode(result["access_token"], options={"verify_signature": False})
    assert access["iss"].startswith("http://") and access["iss"].endswith("/adfs/services/trust")
    assert access["aud"] == f"microsoft:identityserver:{simulator.portal_client_id}"
    # Refresh works through msal, with no browser.
    refreshed = app.acquire_token_by_refresh_token(result["refresh_token"], scopes=[])
    assert "id_token" in refreshed, refreshed


def test_adfs_sso_cookie_is_reused_but_prompt_login_forces_the_form(simulator):
    app = msal_app(simulator, simulator.adfs_authority)
    browser = Browserless(simulator.session(), REDIRECT)
    flow = app.initiate_auth_code_flow([], redirect_uri=REDIRECT, response_mode="form_post")
    page = browser.go(flow["auth_uri"])
    first = browser.submit(page, {"UserName": "grace.hopper@uni.test", "Password": simulator.user(
        "grace.hopper@uni.test").password})
    assert "code" in first.params and first.params["state"] == flow["state"]
    silent = browser.go(app.initiate_auth_code_flow([], redirect_uri=REDIRECT, response_mode="form_post")["auth_uri"])
    assert "code" in silent.params, "a live MSISAuth session signs in without the form"
    forced = browser.go(app.initiate_auth_code_flow([], redirect_uri=REDIRECT, prompt="login", response_mode="form_post")["auth_uri"])
    assert forced.status == 200 and 'name="Password"' in forced.text


@pytest.mark.parametrize("upn, password, expected", [
    ("ada.lovelace@uni.test", "wrong-password", "Incorrect user ID or password"),
    ("nobody@uni.test", "whatever", "Incorrect user ID or password"),
    ("dennis.ritchie@uni.test", None, "Your account has been disabled"),
])
def test_adfs_refuses_bad_credentials_with_its_own_pages(simulator, upn, password, expected):
    app = msal_app(simulator, simulator.adfs_authority)
    browser = Browserless(simulator.session(), REDIRECT)
    page = browser.go(app.initiate_auth_code_flow([], redirect_uri=REDIRECT, prompt="login", response_mode="form_post")["auth_uri"])
    landing = browser.submit(page, {"UserName": upn, "Password": password or simulator.user(upn).password})
    assert not landing.params and expected in landing.text


def test_entra_authority_federates_to_adfs_and_issues_v2_tokens(simulator):
    app = msal_app(simulator, simulator.entra_authority)
    flow = app.initiate_auth_code_flow(["User.Read"], redirect_uri=REDIRECT, response_mode="form_post")
    response = sign_in(simulator, flow, "margaret.hamilton@uni.test")  # not MFA-required: no loop
    result = app.acquire_token_by_auth_code_flow(flow, response)
    assert "error" not in result, result
    claims = verified_claims(simulator, result["id_token"], simulator.portal_client_id,
                             f"{simulator.entra_authority}/v2.0")
    seeded = simulator.user("margaret.hamilton@uni.test")
    assert (claims["oid"], claims["tid"], claims["preferred_username"]) == (
        seeded.object_id, simulator.tenant_id, seeded.upn)
    assert claims["ver"] == "2.0" and claims["nonce"] == hashed(flow["nonce"])
    assert app.get_accounts()[0]["username"] == seeded.upn  # msal built its cache from client_info


def test_entra_sign_in_of_a_stuck_student_ends_on_the_adfs_notice(simulator):
    """The loop, seen by the portal: an Entra sign-in for a half-registered student never returns a code."""
    app = msal_app(simulator, simulator.entra_authority)
    flow = app.initiate_auth_code_flow([], redirect_uri=REDIRECT, login_hint="alan.turing@uni.test",
                                      response_mode="form_post")
    browser = Browserless(simulator.session(), REDIRECT)
    page = browser.go(flow["auth_uri"])
    landing = browser.submit(page, {"UserName": "alan.turing@uni.test",
                                    "Password": simulator.user("alan.turing@uni.test").password})
    assert not landing.params
    assert "The selected authentication method is not available for" in landing.text
    assert "/security-info" in landing.text


def test_client_credentials_carry_the_granted_roles(simulator):
    result = msal_app(simulator, simulator.entra_authority, simulator.graph_client_id).acquire_token_for_client(
        [GRAPH_SCOPE])
    assert "access_token" in result, result
    claims = jwt.decode(result["access_token"], options={"verify_signature": False})
    assert claims["aud"] == "https://graph.microsoft.com"
    assert claims["iss"] == f"https://sts.windows.net/{simulator.tenant_id}/"
    assert claims["idtyp"] == "app" and claims["appid"] == simulator.graph_client_id
    assert set(claims["roles"]) >= {"UserAuthenticationMethod.ReadWrite.All", "AuditLog.Read.All", "User.Read.All"}
    limited = msal_app(simulator, simulator.entra_authority, simulator.limited_client_id).acquire_token_for_client(
        [GRAPH_SCOPE])
    assert jwt.decode(limited["access_token"], options={"verify_signature": False})["roles"] == ["User.Read.All"]


@pytest.mark.parametrize("client, secret, scope, error, code", [
    ("graph", "not-the-secret", GRAPH_SCOPE, "invalid_client", 7000215),
    ("unknown", "x", GRAPH_SCOPE, "unauthorized_client", 700016),
    ("graph", None, "https://graph.microsoft.com/User.Read.All", "invalid_scope", 1002012),
    ("graph", None, "https://example.org/.default", "invalid_resource", 500011),
])
def test_client_credentials_errors_are_entras(simulator, client, secret, scope, error, code):
    client_id = {"graph": simulator.graph_client_id, "unknown": "11111111-2222-3333-4444-555555555555"}[client]
    response = simulator.session().post(f"{simulator.entra_authority}/oauth2/v2.0/token", data={
        "grant_type": "client_credentials", "client_id": client_id, "scope": scope,
        "client_secret": secret or simulator.secret(simulator.graph_client_id)}, timeout=10)
    body = response.json()
    assert response.status_code in (400, 401), dump(response)
    assert body["error"] == error and body["error_codes"] == [code]
    assert body["error_description"].startswith(f"AADSTS{code}:")
    via_msal = msal_app(simulator, simulator.entra_authority, client_id,
                        secret or simulator.secret(simulator.graph_client_id)).acquire_token_for_client([scope])
    assert via_msal.get("error") == error


def code_for(simulator, upn: str, **params) -> tuple[str, str]:
    """Get an authorization code straight from the Entra authorize endpoint (PKCE S256); return (code, verifier)."""
    verifier = "v" * 50
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    query = {"client_id": simulator.portal_client_id, "redirect_uri": REDIRECT, "response_type": "code",
             "scope": "openid offline_access", "state": "s1", "nonce": "n1", "code_challenge": challenge,
             "code_challenge_method": "S256", "login_hint": upn, **params}
    browser = Browserless(simulator.session(), REDIRECT)
    page = browser.go(f"{simulator.entra_authority}/oauth2/v2.0/authorize?{urlencode(query)}")
    landing = browser.submit(page, {"UserName": upn, "Password": simulator.user(upn).password})
    return landing.params["code"], verifier


def redeem(simulator, code: str, verifier: str, **overrides):
    data = {"grant_type": "authorization_code", "client_id": simulator.portal_client_id,
            "client_secret": simulator.secret(simulator.portal_client_id), "code": code,
            "redirect_uri": REDIRECT, "code_verifier": verifier, **overrides}
    return simulator.session().post(f"{simulator.entra_authority}/oauth2/v2.0/token", data=data, timeout=10)


def test_codes_are_single_use_bound_to_redirect_uri_and_pkce(simulator):
    code, verifier = code_for(simulator, "margaret.hamilton@uni.test")
    wrong_pkce = redeem(simulator, code, "w" * 50)
    assert wrong_pkce.status_code == 400 and wrong_pkce.json()["error_codes"] == [501481]
    wrong_redirect = redeem(simulator, code, verifier, redirect_uri="http://localhost:5000/elsewhere")
    assert wrong_redirect.json()["error"] == "invalid_grant"
    assert redeem(simulator, code, verifier).status_code == 200
    reused = redeem(simulator, code, verifier)
    assert reused.status_code == 400 and reused.json()["error_codes"] == [54005]
    nonsense = redeem(simulator, "not-a-code", verifier)
    assert nonsense.status_code == 400 and nonsense.json()["error"] == "invalid_grant"


def test_expired_code_is_refused(simulator_factory):
    simulator = simulator_factory()
    code, verifier = code_for(simulator, "margaret.hamilton@uni.test")
    simulator.advance_clock(11 * 60)  # codes live about 10 minutes
    expired = redeem(simulator, code, verifier)
    assert expired.status_code == 400 and expired.json()["error_codes"] == [70008]


def test_authorize_errors_are_shown_not_redirected(simulator):
    session = simulator.session()
    base = {"response_type": "code", "scope": "openid", "redirect_uri": REDIRECT}
    unknown = session.get(f"{simulator.entra_authority}/oauth2/v2.0/authorize?" + urlencode(
        {**base, "client_id": "11111111-2222-3333-4444-555555555555"}), allow_redirects=False, timeout=10)
    assert unknown.status_code == 400 and "AADSTS700016" in unknown.text
    bad_redirect = session.get(f"{simulator.entra_authority}/oauth2/v2.0/authorize?" + urlencode(
        {**base, "client_id": simulator.portal_client_id, "redirect_uri": "https://evil.example/cb"}),
        allow_redirects=False, timeout=10)
    assert bad_redirect.status_code == 400 and "AADSTS50011" in bad_redirect.text
    adfs_bad = session.get(f"{simulator.adfs_authority}/oauth2/authorize/?" + urlencode(
        {**base, "client_id": simulator.portal_client_id, "redirect_uri": "https://evil.example/cb"}),
        allow_redirects=False, timeout=10)
    assert adfs_bad.status_code == 400 and "MSIS9224" in adfs_bad.text
    unsupported = session.get(f"{simulator.entra_authority}/oauth2/v2.0/authorize?" + urlencode(
        {**base, "client_id": simulator.portal_client_id, "response_type": "token", "state": "xyz"}),
        allow_redirects=False, timeout=10)
    assert unsupported.status_code == 302
    assert "error=unsupported_response_type" in unsupported.headers["Location"]
    assert "state=xyz" in unsupported.headers["Location"]
    tenant = session.get(f"{simulator.base_url}/no-such-tenant/v2.0/.well-known/openid-configuration", timeout=10)
    assert tenant.status_code == 400 and tenant.json()["error_codes"] == [90002]


def test_adfs_token_errors(simulator):
    session = simulator.session()
    wrong_secret = session.post(f"{simulator.adfs_authority}/oauth2/token/", data={
        "grant_type": "authorization_code", "client_id": simulator.portal_client_id, "client_secret": "nope",
        "code": "x", "redirect_uri": REDIRECT}, timeout=10)
    assert wrong_secret.status_code == 401 and wrong_secret.json()["error"] == "invalid_client"
    assert wrong_secret.json()["error_description"].startswith("MSIS")
    bad_code = session.post(f"{simulator.adfs_authority}/oauth2/token/", data={
        "grant_type": "authorization_code", "client_id": simulator.portal_client_id,
        "client_secret": simulator.secret(simulator.portal_client_id), "code": "x", "redirect_uri": REDIRECT},
        timeout=10)
    assert bad_code.status_code == 400 and bad_code.json()["error"] == "invalid_grant"


@pytest.mark.parametrize("authority", ["adfs", "entra"])
def test_end_session_returns_only_to_registered_uris_and_ends_sso(simulator, authority):
    app = msal_app(simulator, simulator.adfs_authority)
    browser = Browserless(simulator.session(), REDIRECT)
    page = browser.go(app.initiate_auth_code_flow([], redirect_uri=REDIRECT, response_mode="form_post")["auth_uri"])
    browser.submit(page, {"UserName": "grace.hopper@uni.test",
                          "Password": simulator.user("grace.hopper@uni.test").password})
    logout = (f"{simulator.adfs_authority}/oauth2/logout" if authority == "adfs"
              else f"{simulator.entra_authority}/oauth2/v2.0/logout")
    foreign = browser.session.get(logout, params={"post_logout_redirect_uri": "https://evil.example/"},
                                  allow_redirects=False, timeout=10)
    assert foreign.status_code == 200 and "signed out" in foreign.text
    home = browser.session.get(logout, params={"post_logout_redirect_uri": "http://localhost:5000/",
                                               "client_id": simulator.portal_client_id},
                               allow_redirects=False, timeout=10)
    assert home.status_code == 302 and home.headers["Location"] == "http://localhost:5000/"
    again = browser.go(app.initiate_auth_code_flow([], redirect_uri=REDIRECT, response_mode="form_post")["auth_uri"])
    assert 'name="Password"' in again.text, "the AD FS session ended"

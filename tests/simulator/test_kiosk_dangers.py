"""What makes a shared browser dangerous, as the simulator models it: the sessions one student leaves behind."""
from __future__ import annotations

import time

import msal

from tests.simulator.browserless import Browserless
from tests.simulator.test_mysignins import open_security_info

REDIRECT = "http://localhost:5000/auth/callback"
ADA, GRACE, MARGARET = "ada.lovelace@uni.test", "grace.hopper@uni.test", "margaret.hamilton@uni.test"


def portal_app(sim) -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(sim.portal_client_id, client_credential=sim.secret(sim.portal_client_id),
                                              authority=sim.adfs_authority, http_client=sim.session(),
                                              instance_discovery=False)


def auth_uri(sim, **options) -> str:
    return portal_app(sim).initiate_auth_code_flow([], redirect_uri=REDIRECT, response_mode="form_post",
                                                   **options)["auth_uri"]


def signed_in_as(page) -> str:
    """Return whose Security info a My Sign-Ins page shows ("" for a sign-in page)."""
    marker = 'id="signedInAs">'
    return page.text.split(marker, 1)[1].split("<", 1)[0] if marker in page.text else ""


def test_the_next_student_lands_in_the_previous_ones_security_info_until_microsoft_signs_out(simulator):
    browser = Browserless(simulator.session(), REDIRECT)
    assert signed_in_as(open_security_info(simulator, browser, MARGARET)) == MARGARET
    # Student B opens My Sign-Ins with their own address as the hint: A's page, with "Add sign-in method".
    page = browser.go(simulator.mysignins_url + "?login_hint=grace.hopper%40uni.test")
    assert signed_in_as(page) == MARGARET and 'id="addAuthenticator"' in page.text
    # Even when My Sign-Ins' own cookie is gone, Microsoft's session signs A in again without a password.
    _drop(browser, "MySignInsSession")
    assert signed_in_as(browser.go(simulator.mysignins_url + "?login_hint=grace.hopper%40uni.test")) == MARGARET
    # Signing out of AD FS alone is not enough: AD FS's session ends, Microsoft's stays.
    adfs_out = browser.go(simulator.adfs_authority + "/oauth2/logout")
    assert "signed out" in adfs_out.text
    assert signed_in_as(browser.go(simulator.mysignins_url)) == MARGARET
    # Microsoft's sign-out ends it: the next visit asks who is there.
    browser.go(f"{simulator.entra_authority}/oauth2/v2.0/logout")
    page = browser.go(simulator.mysignins_url + "?login_hint=grace.hopper%40uni.test")
    assert signed_in_as(page) == "" and 'name="Password"' in page.text


def _drop(browser: Browserless, name: str) -> None:
    for cookie in [c for c in browser.session.cookies if c.name == name]:
        browser.session.cookies.clear(cookie.domain, cookie.path, cookie.name)


def test_the_adfs_session_signs_the_next_student_in_as_the_previous_one_unless_prompt_login(simulator):
    browser = Browserless(simulator.session(), REDIRECT)
    page = browser.go(auth_uri(simulator))
    first = browser.submit(page, {"UserName": GRACE, "Password": simulator.user(GRACE).password})
    assert "code" in first.params
    silent = browser.go(auth_uri(simulator, login_hint=ADA))
    assert "code" in silent.params, "B is signed in as A without a password"
    forced = browser.go(auth_uri(simulator, prompt="login", login_hint=ADA))
    assert 'name="Password"' in forced.text and "code" not in forced.params


def test_keep_me_signed_in_outlives_the_browser_and_the_8_hour_session(simulator_factory):
    sim = simulator_factory()
    plain, kept = Browserless(sim.session(), REDIRECT), Browserless(sim.session(), REDIRECT)
    for browser, kmsi in ((plain, {}), (kept, {"Kmsi": "true"})):
        page = browser.go(auth_uri(sim))
        assert 'name="Kmsi"' in page.text
        landed = browser.submit(page, {"UserName": GRACE, "Password": sim.user(GRACE).password, **kmsi})
        assert "code" in landed.params
    plain_cookie = next(c for c in plain.session.cookies if c.name == "MSISAuth")
    kept_cookie = next(c for c in kept.session.cookies if c.name == "MSISAuth")
    assert plain_cookie.expires is None, "without KMSI the cookie ends with the browser (a kiosk's never closes)"
    assert kept_cookie.expires is not None and kept_cookie.expires - time.time() > 23 * 3600
    sim.advance_clock(8 * 3600 + 60)
    assert 'name="Password"' in plain.go(auth_uri(sim)).text, "the SSO session lasts 8 hours"
    assert "code" in kept.go(auth_uri(sim)).params, "keep me signed in: 24 hours"

"""My Sign-Ins and the AD FS access control policy, driven over HTTP: the loop, the bypass, registration, lag."""
from __future__ import annotations

import time

from tests.fixtures.simulator import dump
from tests.simulator.browserless import Browserless, forms_of

NOTICE = "The selected authentication method is not available for"


def open_security_info(sim, browser: Browserless, upn: str):
    """Visit security-info as a student: username, then the AD FS password form; return where it stops."""
    page = browser.go(sim.mysignins_url)
    assert 'name="login"' in page.text, page.text[:300]
    page = browser.submit(page, {"login": upn})
    assert 'name="Password"' in page.text, page.text[:300]
    return browser.submit(page, {"UserName": upn, "Password": sim.user(upn).password})


def test_stuck_student_loops_and_gets_through_once_in_the_bypass_group(simulator_factory):
    sim = simulator_factory("--method-delay", "1")
    browser = Browserless(sim.session(), "http://never")
    ada = sim.user("ada.lovelace@uni.test")
    notice = open_security_info(sim, browser, ada.upn)
    assert NOTICE in notice.text and 'data-seconds="1"' in notice.text
    setup_url = notice.text.split('data-setup-url="')[1].split('"')[0].replace("&amp;", "&")
    again = browser.go(setup_url)  # what the countdown does: no password asked, the same notice again
    assert NOTICE in again.text and "/adfs/ls/" in again.url
    assert sim.set_membership(ada.upn, "bypass", True) is True
    page = browser.go(setup_url)
    assert 'id="signedInAs"' in page.text and ada.upn in page.text, page.text[:300]
    csrf = forms_of(browser.go(sim.mysignins_url + "/add/authenticator").text)[0].fields["csrf"]
    refused = sim.session().post(sim.mysignins_url + "/add/authenticator", data={"csrf": "forged"},
                                 allow_redirects=False, timeout=10)
    assert refused.status_code == 302  # no session cookie, nothing added
    added = browser.go(sim.mysignins_url + "/add/authenticator", "post", {"csrf": csrf})
    assert 'id="addedNotice"' in added.text and 'data-kind="microsoftAuthenticator"' in added.text
    kinds = lambda: [m["@odata.type"] for m in sim.graph_get(f"/users/{ada.object_id}/authentication/methods").json()["value"]]  # noqa: E731
    assert kinds() == ["#microsoft.graph.passwordAuthenticationMethod"], "Graph lags behind registration"
    time.sleep(1.2)
    assert "#microsoft.graph.microsoftAuthenticatorAuthenticationMethod" in kinds()
    report = sim.graph_get(f"/reports/authenticationMethods/userRegistrationDetails/{ada.object_id}").json()
    assert report["isMfaRegistered"] is False, "the registration report lags by hours"
    sim.advance_clock(4 * 3600 + 1)
    report = sim.graph_get(f"/reports/authenticationMethods/userRegistrationDetails/{ada.object_id}").json()
    assert report["isMfaRegistered"] is True and report["methodsRegistered"] == ["microsoftAuthenticatorPush"]


def test_policy_reads_groups_from_the_directory(simulator_factory):
    sim = simulator_factory()
    # Nested MFA-required member, unregistered: loops too.
    assert NOTICE in open_security_info(sim, Browserless(sim.session(), "http://never"),
                                        "edsger.dijkstra@uni.test").text
    assert NOTICE in open_security_info(sim, Browserless(sim.session(), "http://never"), "grace.hopper@uni.test").text
    # Not MFA-required: straight in.
    page = open_security_info(sim, Browserless(sim.session(), "http://never"), "margaret.hamilton@uni.test")
    assert 'id="signedInAs"' in page.text
    # Registered: the Azure MFA adapter challenges; approving opens the page.
    mfa = open_security_info(sim, Browserless(sim.session(), "http://never"), "barbara.liskov@uni.test")
    assert 'id="approveButton"' in mfa.text
    browser = Browserless(sim.session(), "http://never")
    mfa = open_security_info(sim, browser, "barbara.liskov@uni.test")
    assert 'id="signedInAs"' in browser.submit(mfa, {}).text
    # Removing margaret from nothing changes nothing; making her MFA-required through the directory starts the loop.
    assert sim.set_membership("margaret.hamilton@uni.test", "required", True) is True
    assert NOTICE in open_security_info(sim, Browserless(sim.session(), "http://never"),
                                        "margaret.hamilton@uni.test").text
    # In AD but not in Entra: once AD FS lets the student through, Entra does not know the account.
    sim.set_membership("radia.perlman@uni.test", "bypass", True)
    unknown = open_security_info(sim, Browserless(sim.session(), "http://never"), "radia.perlman@uni.test")
    assert "AADSTS50034" in unknown.text


def test_default_notice_countdown_is_five_seconds(simulator_factory):
    sim = simulator_factory("--notice-seconds", "5")
    notice = open_security_info(sim, Browserless(sim.session(), "http://never"), "alan.turing@uni.test")
    assert 'data-seconds="5"' in notice.text
    script = sim.session().get(sim.base_url + "/adfs/portal/script/onload.js", timeout=10)
    assert script.ok and "window.setTimeout" in script.text, dump(script)


def test_phone_registration_validates_the_number(simulator_factory):
    sim = simulator_factory()
    sim.set_membership("grace.hopper@uni.test", "bypass", True)
    browser = Browserless(sim.session(), "http://never")
    assert 'id="signedInAs"' in open_security_info(sim, browser, "grace.hopper@uni.test").text
    form = browser.go(sim.mysignins_url + "/add/phone")
    bad = browser.submit(form, {"phone": "12345"})
    assert bad.status == 400 and 'id="phoneError"' in bad.text
    good = browser.submit(form, {"phone": "+44 7700 900123"})
    assert 'data-kind="phone"' in good.text


def test_the_register_notice_links_to_the_portal_and_my_sign_ins_takes_the_account(simulator_factory):
    sim = simulator_factory("--portal-url", "https://proofup.uni.test/")
    script = sim.session().get(sim.base_url + "/adfs/portal/script/onload.js", timeout=10).text
    assert '"https://proofup.uni.test/"' in script and 'id=\\"proofupLink\\"' in script
    # login_hint (the portal passes the signed-in account) skips the username page: straight to the password.
    browser = Browserless(sim.session(), "http://never")
    page = browser.go(sim.mysignins_url + "?login_hint=margaret.hamilton%40uni.test")
    assert 'name="Password"' in page.text and 'name="login"' not in page.text, page.text[:300]


def test_on_a_phone_my_sign_ins_offers_the_pairing_link_instead_of_the_qr_code(simulator_factory):
    sim = simulator_factory()
    http = sim.session()
    http.headers["User-Agent"] = "Mozilla/5.0 (Linux; Android 14; Pixel 7) Mobile Safari/537.36"
    browser = Browserless(http, "http://never")
    open_security_info(sim, browser, "margaret.hamilton@uni.test")
    phone = browser.go(sim.mysignins_url + "/add/authenticator").text
    assert 'id="pairLink"' in phone and 'id="scannedButton"' not in phone
    http.headers["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0"
    computer = browser.go(sim.mysignins_url + "/add/authenticator").text
    assert 'id="scannedButton"' in computer and 'id="pairLink"' not in computer

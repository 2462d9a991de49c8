"""A half-registered student makes the whole journey in a real browser (Debian's Chromium).

sign in -> diagnosis -> unlock -> My Sign-Ins registers the Authenticator -> the status says done ->
the bypass membership is gone. Once on the embedded directory (the demo), once on a Samba AD DC.
A screenshot of every step goes to test-artifacts/<test name>/; axe-core checks every portal page.
"""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.slow]

STUDENT = "ada.lovelace@uni.test"


def adfs_sign_in(page, upn: str, password: str) -> None:
    """Fill the (simulated) AD FS forms sign-in page."""
    page.fill("#userNameInput", upn)
    page.fill("#passwordInput", password)
    page.click("#submitButton")


def open_my_sign_ins(page, upn: str, password: str, on_step=lambda page, name: None):
    """Open My Sign-Ins from the guide and sign in until "Add sign-in method"; return its tab.

    Entra asks for the username (unless the portal's login_hint spares it) and federates to AD FS, which
    may still know the browser from the portal's sign-in (single sign-on) or ask for the password again.
    """
    with page.context.expect_page() as opened:
        page.locator("#mysignins").click()
    mysignins = opened.value
    for _step in range(4):
        mysignins.locator("#addAuthenticator, #userNameInput, input[type=email]").first.wait_for()
        if mysignins.locator("#addAuthenticator").count():
            break
        if mysignins.locator("#userNameInput").count():
            on_step(mysignins, "mysignins-adfs-sign-in")
            adfs_sign_in(mysignins, upn, password)
        else:
            on_step(mysignins, "mysignins-entra-username")
            mysignins.fill("input[type=email]", upn)
            mysignins.locator("button[type=submit], input[type=submit]").first.click()
        mysignins.wait_for_load_state()
    return mysignins


def journey(stack, page, screenshot, accessible) -> None:
    password = stack.seed.user(STUDENT).password
    bypass = stack.seed.bypass_group_dn
    user = stack.directory.find_user(STUDENT)

    page.goto(stack.portal_url)
    expect(page.get_by_role("heading", level=1)).to_contain_text("round in circles")
    accessible(page, "start page")
    screenshot("start")

    page.get_by_role("link", name="Sign in to start").click()
    expect(page.locator("#userNameInput")).to_be_visible()
    screenshot("adfs-sign-in")
    adfs_sign_in(page, STUDENT, password)

    expect(page).to_have_url(re.compile(r"/diagnosis$"))
    expect(page.locator("[data-state]")).to_have_attribute("data-state", "stuck")
    expect(page.locator("[data-reason]")).to_have_attribute("data-reason", "half_registered")
    accessible(page, "diagnosis")
    screenshot("diagnosis-stuck")

    page.locator("#unlock").click()
    expect(page).to_have_url(re.compile(r"/guide$"))
    assert stack.directory.is_member(bypass, user.dn)
    expect(page.locator("#status")).to_have_attribute("data-phase", re.compile("waiting|propagating"))
    accessible(page, "guide")
    screenshot("guide-unlocked")

    mysignins = open_my_sign_ins(page, STUDENT, password,
                                 on_step=lambda other, name: screenshot_of(other, screenshot, name))
    screenshot_of(mysignins, screenshot, "mysignins-security-info")
    mysignins.locator("#addAuthenticator").click()
    screenshot_of(mysignins, screenshot, "mysignins-authenticator")
    mysignins.locator("#scannedButton").click()
    expect(mysignins.locator("#addedNotice")).to_be_visible()
    screenshot_of(mysignins, screenshot, "mysignins-registered")
    mysignins.close()

    # The guide polls the portal; the portal notices the method through Graph and releases the grant.
    expect(page.locator("#status")).to_have_attribute("data-phase", "done", timeout=30_000)
    expect(page.locator("#status-text")).to_contain_text("Done")
    expect(page.locator("#cancel")).to_be_hidden()  # no cancel button left for a finished unlock
    expect(page.locator("#next-steps")).to_contain_text("Outlook")  # what to do now
    accessible(page, "guide done")
    screenshot("guide-done")
    assert not stack.directory.is_member(bypass, user.dn)
    grant = stack.services.store.grants_for(STUDENT)[0]
    assert grant.state == "released" and grant.end_reason == "released"

    page.get_by_role("link", name="See your status").click()
    expect(page.locator("[data-state]")).to_have_attribute("data-state", "completed")
    accessible(page, "diagnosis completed")
    screenshot("diagnosis-completed")

    # Sign-out ends the portal session and the AD FS session (the CSP lets the form redirect there).
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("status")).to_contain_text("You are signed out")
    screenshot("signed-out")
    page.goto(stack.portal_url + "/diagnosis")
    expect(page.get_by_role("link", name="Sign in to start")).to_be_visible()
    page.get_by_role("link", name="Sign in to start").click()
    expect(page.locator("#userNameInput")).to_be_visible()  # AD FS asks again: its session ended too


def screenshot_of(other_page, screenshot, name: str) -> None:
    """Save a screenshot of another tab under the same test's folder."""
    path = screenshot(name)  # the journey tab, numbered in order
    other_page.screenshot(path=str(path), full_page=True)


def test_journey_on_the_demo_directory(demo_stack, page, screenshot, accessible):
    journey(demo_stack, page, screenshot, accessible)


@pytest.mark.samba
def test_journey_on_samba(samba_stack, page, screenshot, accessible):
    journey(samba_stack, page, screenshot, accessible)

"""Kiosk mode in a real browser (Debian's Chromium): two students back to back on ONE browser context.

The desk enrols the browser (and is signed out everywhere); student A signs in (a password, prompt=login),
unlocks, registers in My Sign-Ins in the same window, comes back and is signed out everywhere when the app
is set up; student B must type a password, never sees A's name, state, evidence or security info on any
page, including after Back; B walks away and is signed out everywhere after the (short) idle time; the
desk revokes the kiosk and it stops at once. Screenshots go to test-artifacts/<test name>/.
"""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from app.demo import DemoStack
from app.domain.actors import Actor
from tests.flows.conftest import FAST
from tests.flows.test_helpdesk_journey import sign_in_staff
from tests.flows.test_student_journey import adfs_sign_in

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DESK = "hedy.lamarr@uni.test"
A, B = "ada.lovelace@uni.test", "grace.hopper@uni.test"
IDLE_SECONDS = 15  # long enough for the axe checks and screenshots on a page, short enough to wait for


@pytest.fixture
def stack(tmp_path):
    stack = DemoStack(tmp_path / "kiosk", kiosk_idle_seconds=IDLE_SECONDS, **FAST).start()
    yield stack
    stack.stop()


def traces_of(stack, upn: str) -> list[str]:
    """Return what would give a student away on a page: the address, the name, the account's local part."""
    user = stack.seed.user(upn)
    return [upn, user.display_name, upn.split("@")[0]]


def assert_nothing_of(page, stack, upn: str, where: str) -> None:
    text = page.evaluate("document.documentElement.outerHTML")
    found = [t for t in traces_of(stack, upn) if t.lower() in text.lower()]
    assert not found, f"{where} ({page.url}) shows {found} of the previous student"


def start_and_sign_in(page, stack, upn: str) -> None:
    """Press Start; the sign-in service must ask for the password, with no account filled in."""
    page.click("#kiosk-start")
    expect(page.locator("#passwordInput")).to_be_visible()
    expect(page.locator("#userNameInput")).to_have_value("")
    adfs_sign_in(page, upn, stack.seed.user(upn).password)
    expect(page).to_have_url(re.compile(r"/diagnosis$"))


def open_my_sign_ins_here(page, upn: str) -> None:
    """Open My Sign-Ins in the same window; it must ask who is there, never show someone else's page."""
    page.click("#mysignins")
    page.locator("#addAuthenticator, input[type=email], #userNameInput").first.wait_for()
    assert page.locator("#signedInAs").count() == 0, f"My Sign-Ins opened as {page.locator('#signedInAs').inner_text()}"
    if page.locator("input[type=email]").count():
        page.fill("input[type=email]", upn)
        page.locator("button[type=submit], input[type=submit]").first.click()
    page.locator("#addAuthenticator").wait_for()
    expect(page.locator("#signedInAs")).to_have_text(upn)


def back_to_the_portal(page, stack) -> None:
    """The guide's "Back to the portal" step: the browser's Back button until the guide shows again."""
    for _ in range(8):
        if page.url.startswith(stack.portal_url + "/guide"):
            break
        page.go_back()
        page.wait_for_load_state()
    expect(page).to_have_url(re.compile(r"/guide$"))


def fits_320_px(page, where: str) -> None:
    """The page works on a narrow screen: nothing scrolls sideways at 320 px."""
    page.set_viewport_size({"width": 320, "height": 700})
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    page.set_viewport_size({"width": 1280, "height": 800})
    assert overflow <= 0, f"{where} scrolls sideways by {overflow} px at 320 px"


def touch(page) -> None:
    """Do what a student at the screen does now and then (a key): the checks above take time on a busy machine."""
    page.keyboard.press("Shift")


def test_two_students_back_to_back_on_one_kiosk(stack, page, accessible, screenshot):
    shot = screenshot  # one page, one browser context for everyone: the desk, A and B

    # The desk makes this browser a kiosk and is signed out everywhere on the way to the attract screen.
    sign_in_staff(page, stack, DESK)
    page.goto(stack.portal_url + "/helpdesk/kiosks")
    page.fill("#kiosk-name", "Library 3")
    page.fill("#reason-enrol", "orientation week")
    page.click("#enrol")
    expect(page.locator("#kiosk-attract")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/kiosk/signed-out$"))
    page.goto(stack.portal_url + "/helpdesk/now")
    expect(page.locator("#passwordInput")).to_be_visible()  # the desk's session ended here and at AD FS
    page.goto(stack.portal_url)
    expect(page).to_have_url(re.compile(r"/kiosk/$"))
    accessible(page, "kiosk attract screen")
    fits_320_px(page, "the attract screen")
    shot("attract")

    # Student A: a password, the diagnosis, the guide with the kiosk's steps, My Sign-Ins in this window.
    start_and_sign_in(page, stack, A)
    expect(page.locator("[data-state]")).to_have_attribute("data-state", "stuck")
    expect(page.locator("#kiosk-done")).to_be_visible()
    shot("a-diagnosis")
    page.click("#unlock")
    expect(page).to_have_url(re.compile(r"/guide$"), timeout=30000)
    expect(page.locator("#back-to-portal")).to_be_visible()
    assert page.locator("#mysignins").get_attribute("target") is None
    accessible(page, "kiosk guide")
    fits_320_px(page, "the kiosk guide")
    shot("a-guide")
    touch(page)
    open_my_sign_ins_here(page, A)
    page.click("#addAuthenticator")
    page.click("#scannedButton")
    expect(page.locator("#addedNotice")).to_be_visible()
    back_to_the_portal(page, stack)
    # Done: the kiosk counts down and signs A out everywhere by itself.
    expect(page.locator("#kiosk-idle-text")).to_contain_text(re.compile(r"\d"), timeout=30000)
    shot("a-done-countdown")
    expect(page.locator("#kiosk-attract")).to_be_visible(timeout=30000)
    expect(page.locator(".notice").first).to_contain_text("All done")
    shot("a-signed-out")

    # Student B at the same browser: a password again, and nothing of A anywhere.
    assert_nothing_of(page, stack, A, "the attract screen after A")
    start_and_sign_in(page, stack, B)
    assert_nothing_of(page, stack, A, "B's diagnosis")
    page.click("#unlock")
    expect(page).to_have_url(re.compile(r"/guide$"), timeout=30000)
    assert_nothing_of(page, stack, A, "B's guide")
    open_my_sign_ins_here(page, B)  # asks who is there: A's Microsoft session is gone
    assert_nothing_of(page, stack, A, "B's My Sign-Ins")
    back_to_the_portal(page, stack)

    # B walks away: a visible countdown with "I'm still here", then sign-out everywhere.
    expect(page.locator("#kiosk-still-here")).to_be_visible(timeout=(IDLE_SECONDS + 5) * 1000)
    expect(page.locator("#kiosk-idle-text")).to_contain_text(re.compile(r"\d"))
    shot("b-idle-countdown")
    accessible(page, "the idle countdown")
    page.click("#kiosk-still-here")
    expect(page.locator("#kiosk-idle")).to_be_hidden()
    expect(page.locator("#kiosk-attract")).to_be_visible(timeout=(IDLE_SECONDS + 10) * 1000)
    expect(page.locator(".notice").first).to_contain_text("Nothing happened")
    shot("b-signed-out-idle")
    # Back shows nothing of B (nor A): every page of theirs is gone, and My Sign-Ins asks who is there.
    for step in range(4):
        page.go_back()
        page.wait_for_load_state()
        for upn in (A, B):
            assert_nothing_of(page, stack, upn, f"Back #{step + 1}")
    page.goto(stack.simulator.base_url + "/security-info")
    page.locator("input[type=email], #userNameInput").first.wait_for()
    assert page.locator("#signedInAs").count() == 0

    # The desk revokes the kiosk: it stops at once.
    page.goto(stack.portal_url + "/kiosk/")
    expect(page.locator("#kiosk-attract")).to_be_visible()
    kiosk = stack.services.kiosks.kiosks()[0]
    stack.services.kiosks.revoke(Actor.staff(DESK, role="helpdesk", reason="end of the event"), kiosk.id)
    page.reload()
    expect(page.locator("h1")).to_have_text("This device is not a kiosk")
    shot("revoked")

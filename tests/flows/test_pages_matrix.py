"""Every page a student can meet, in English and German, at 320, 390 and 1280 px wide (Debian's Chromium).

On each page: no sideways scrolling, none of the administrators' words, the university's name and the
service desk's contact present, axe-core clean (at 390 and 1280 px, where a screenshot is kept under
test-artifacts/). Back and refresh at every step of the journey land on a helpful page and keep the
student signed in; the guide on a phone differs from the guide on a computer.
"""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from playwright.sync_api import expect

from app.demo import DEMO_BRANDING, DemoStack
from app.domain.actors import WORKER
from app.domain.grants import utc_now
from app.domain.sessions import SessionKind
from app.web import SESSION_COOKIE
from tests.fixtures.browser import ARTIFACTS
from tests.flows.conftest import FAST
from tests.flows.test_student_journey import adfs_sign_in, open_my_sign_ins
from tests.support import closing_each

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WIDTHS = (320, 390, 1280)
SHOT_WIDTHS = (390, 1280)
# Words of the machinery that a student must never have to read (any language, any part of the page).
FORBIDDEN = [r"AD ?FS", r"Entra", r"\bMFA\b", r"multi-?factor", r"\bgroups?\b", r"Gruppe", r"sperr",
             r"Active Directory", r"\bbypass\b", r"\bgrant\b", r"\btenant\b", r"\b(un)?lock(ed)?\b",
             r"freischalt", r"verification method"]
PHONE_AGENT = ("Mozilla/5.0 (Linux; Android 14; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) "
               "Chrome/120.0 Mobile Safari/537.36")
HELPFUL = "h1"  # every portal page has exactly one main heading saying where the student stands


@pytest.fixture(params=["en", "de"])
def lang(request):
    return request.param


@pytest.fixture
def stack(tmp_path, lang):
    """A fresh demo per language (the journey changes the students' state); its worker says "done"."""
    stack = DemoStack(tmp_path / f"pages-{lang}", **FAST).start()
    yield stack
    stack.stop()


@pytest.fixture
def open_context(browser, browser_context_args, lang):
    """Open browser contexts in the language under test; close them after the test."""
    def make(**extra):
        return browser.new_context(**{**browser_context_args, "locale": f"{lang}-{lang.upper()}", **extra})

    with closing_each(make, lambda context: context.close()) as factory:
        yield factory


@pytest.fixture
def shots(request):
    """Save full-page screenshots of any page under test-artifacts/<test name>/, numbered in order."""
    folder = ARTIFACTS / request.node.name
    folder.mkdir(parents=True, exist_ok=True)
    counter = iter(range(1, 1000))

    def take(page, name: str) -> None:
        page.screenshot(path=str(folder / f"{next(counter):02d}-{name}.png"), full_page=True)

    return take


class Inspector:
    """Check one page at every width: overflow, jargon, branding, axe; screenshots at two widths."""

    def __init__(self, lang, accessible, shots):
        self.lang, self.accessible, self.screenshot = lang, accessible, shots
        self.seen: list[str] = []

    def __call__(self, page, name: str, *, signed_in: bool | None = None) -> None:
        expect(page.locator(HELPFUL)).to_have_count(1)
        if signed_in is not None:
            expect(page.locator(".account")).to_have_count(1 if signed_in else 0)
        text = page.evaluate("document.body.textContent")
        found = [w for w in FORBIDDEN if re.search(w, text, re.IGNORECASE)]
        assert not found, f"{name} ({self.lang}) uses {found}"
        assert DEMO_BRANDING["university_name"] in page.locator("header").inner_text(), name
        assert DEMO_BRANDING["desk_phone"] in page.locator("footer").inner_text(), name
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": 800})
            overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 0, f"{name} ({self.lang}) scrolls sideways by {overflow} px at {width} px"
            if width in SHOT_WIDTHS:
                self.accessible(page, f"{name} ({self.lang}, {width} px)")
                self.screenshot(page, f"{self.lang}-{name}-{width}")
        page.set_viewport_size({"width": 1280, "height": 800})
        self.seen.append(name)


def back_and_refresh(page, *, signed_in: bool = True, back: bool = True) -> None:
    """Go back, then forward again, then reload: each lands on a portal page with one heading, session kept."""
    here = page.url
    for move in (page.go_back, page.go_forward, page.reload) if back else (page.reload,):
        move()
        page.wait_for_load_state()
        assert not page.locator(".notice-error").count(), f"{move.__name__} from {here}: {page.url}"
        expect(page.locator(HELPFUL)).to_have_count(1)
        expect(page.locator(".account")).to_have_count(1 if signed_in else 0)
        assert page.locator("h1").inner_text() not in ("", "Page not found")
    expect(page).to_have_url(here)


def sign_in(stack, page, upn: str) -> None:
    page.goto(stack.portal_url + "/sign-in")
    adfs_sign_in(page, upn, stack.seed.user(upn).password)
    expect(page).to_have_url(re.compile(r"/diagnosis$"))


def session_token(stack, upn: str, name: str) -> str:
    """A portal session for a student, as if they signed in just before their account was switched off."""
    return stack.services.sessions.start(kind=SessionKind.STUDENT, upn=upn, display_name=name)


def test_every_page_in_every_width_and_language(stack, lang, open_context, accessible, shots):
    inspect = Inspector(lang, accessible, shots)
    page = open_context().new_page()

    # Start, signed out.
    page.goto(stack.portal_url)
    inspect(page, "start", signed_in=False)

    # Stuck -> set up the app (progress, one submit) -> guide on a computer.
    sign_in(stack, page, "ada.lovelace@uni.test")
    expect(page.locator("[data-state]")).to_have_attribute("data-state", "stuck")
    inspect(page, "diagnosis-stuck", signed_in=True)
    page.locator("#desk-details summary").click()
    expect(page.locator("#reference")).to_have_text(re.compile(r"^[A-Z2-7]{4}-[A-Z2-7]{4}$"))
    inspect(page, "diagnosis-stuck-details", signed_in=True)
    back_and_refresh(page, back=False)  # Back to the sign-in: test_back_after_sign_in_lands_on_the_diagnosis
    page.locator("#unlock").click()
    expect(page).to_have_url(re.compile(r"/guide$"))
    expect(page.locator("#device-note")).to_have_attribute("data-device", "computer")
    expect(page.locator("#status-expiry")).to_have_text(re.compile(r"30"))
    inspect(page, "guide-computer", signed_in=True)
    back_and_refresh(page)
    page.go_back()  # the diagnosis again: now it says the time runs and leads back to the steps
    expect(page.locator("[data-state]")).to_have_attribute("data-state", "unlocked")
    inspect(page, "diagnosis-unlocked", signed_in=True)
    page.locator("#continue").click()

    # "Check now" shows that it did something.
    page.locator("#check").click()
    expect(page.locator("#check-feedback")).to_be_visible()
    expect(page.locator("#check-feedback")).not_to_be_empty()

    # Signing out while the time runs: the page says it keeps running, and offers to end it.
    page.locator("#sign-out").click()
    expect(page).to_have_url(re.compile(r"/leave$"))
    expect(page.locator("#end-and-sign-out")).to_be_visible()
    inspect(page, "leave-while-unlocked", signed_in=True)
    back_and_refresh(page)
    page.locator("#back-to-steps").click()

    # The app is set up: the guide notices, moves the focus to the status and says what next.
    stack.register_method("ada.lovelace@uni.test")
    expect(page.locator("#status")).to_have_attribute("data-phase", "done", timeout=30_000)
    expect(page.locator("#status")).to_be_focused()
    expect(page.locator("#next-steps")).to_be_visible()
    expect(page.locator("#mysignins-sign-out")).to_be_visible()
    inspect(page, "guide-done", signed_in=True)
    back_and_refresh(page)
    page.locator("#done-link a").click()
    expect(page.locator("[data-state]")).to_have_attribute("data-state", "completed")
    inspect(page, "diagnosis-completed", signed_in=True)
    back_and_refresh(page)
    page.locator("#sign-out").click()  # nothing runs any more: signs out at once
    expect(page.locator(".notice")).to_be_visible()
    inspect(page, "signed-out", signed_in=False)
    page.context.clear_cookies()

    # Stopped halfway: the diagnosis says so and offers to start again.
    sign_in(stack, page, "grace.hopper@uni.test")
    page.locator("#unlock").click()
    page.locator("#cancel").click()
    expect(page.locator("[data-state]")).to_have_attribute("data-state", "stuck")
    expect(page.locator(".notice")).to_be_focused()  # the news is read first
    inspect(page, "diagnosis-stopped", signed_in=True)
    back_and_refresh(page)
    page.context.clear_cookies()

    # The time ran out.
    sign_in(stack, page, "edsger.dijkstra@uni.test")
    page.locator("#unlock").click()
    expect(page).to_have_url(re.compile(r"/guide$"))
    stack.services.grants.release_open_grant("edsger.dijkstra@uni.test", actor=WORKER, reason="time is up",
                                             outcome="expired")
    page.goto(stack.portal_url + "/diagnosis")
    expect(page.locator("[data-state]")).to_have_attribute("data-state", "expired")
    inspect(page, "diagnosis-expired", signed_in=True)
    page.context.clear_cookies()

    # Every dead end, and the students who need nothing.
    for upn, state in [("barbara.liskov@uni.test", "registered"), ("donald.knuth@uni.test", "registered"),
                       ("margaret.hamilton@uni.test", "not_required"), ("ken.thompson@uni.test", "ineligible"),
                       ("radia.perlman@uni.test", "ineligible")]:
        sign_in(stack, page, upn)
        expect(page.locator("[data-state]")).to_have_attribute("data-state", state)
        if state != "registered" or upn.startswith("barbara"):
            expect(page.locator("#help-heading")).to_be_visible()
        inspect(page, f"diagnosis-{upn.split('.')[0]}", signed_in=True)
        page.context.clear_cookies()
    # A switched-off account cannot pass the university's sign-in page: its session began before.
    page.context.add_cookies([{"name": SESSION_COOKIE, "url": stack.portal_url,
                               "value": session_token(stack, "dennis.ritchie@uni.test", "Dennis Ritchie")}])
    page.goto(stack.portal_url + "/diagnosis")
    expect(page.locator("[data-reason]")).to_have_attribute("data-reason", "disabled")
    inspect(page, "diagnosis-disabled", signed_in=True)
    page.context.clear_cookies()

    # Signed out by the time-out while the set-up time still runs: the session service's clock jumps past
    # the 20-minute idle limit (the grant's clock does not), so the guide sends the student to the start.
    sign_in(stack, page, "alan.turing@uni.test")
    page.locator("#unlock").click()
    expect(page).to_have_url(re.compile(r"/guide$"))
    sessions = stack.services.sessions
    sessions.clock = lambda: utc_now() + timedelta(minutes=21)
    try:
        page.reload()
        expect(page.locator("#timed-out")).to_be_visible()
    finally:
        sessions.clock = utc_now
    expect(page.locator("#timed-out")).to_contain_text(re.compile(r"\b(29|30)\b"))
    expect(page.locator("#timed-out")).to_be_focused()
    inspect(page, "timed-out", signed_in=False)

    # An address that does not exist.
    page.goto(stack.portal_url + "/no-such-page")
    inspect(page, "not-found", signed_in=False)
    assert len(inspect.seen) == 19


def test_the_phone_guide_differs_from_the_computer_guide(stack, lang, open_context, accessible, shots):
    phone = open_context(user_agent=PHONE_AGENT, viewport={"width": 390, "height": 844},
                         is_mobile=True, has_touch=True).new_page()
    sign_in(stack, phone, "alan.turing@uni.test")
    phone.locator("#unlock").click()
    expect(phone.locator("#device-note")).to_have_attribute("data-device", "phone")
    phone_steps = phone.locator("#steps").inner_text()
    Inspector(lang, accessible, shots)(phone, "guide-phone", signed_in=True)
    # The student can switch when the guess is wrong; the choice stays on refresh.
    phone.locator("#switch-device").click()
    expect(phone.locator("#device-note")).to_have_attribute("data-device", "computer")
    computer_steps = phone.locator("#steps").inner_text()
    phone.reload()
    expect(phone.locator("#device-note")).to_have_attribute("data-device", "computer")
    assert phone_steps != computer_steps
    assert ("QR" in computer_steps) and ("QR" not in phone_steps)
    phone.locator("#switch-device").click()
    expect(phone.locator("#device-note")).to_have_attribute("data-device", "phone")
    # On the phone, My Sign-Ins pairs the app by a link on the same device (no QR code to scan).
    mysignins = open_my_sign_ins(phone, "alan.turing@uni.test", stack.seed.user("alan.turing@uni.test").password)
    mysignins.locator("#addAuthenticator").click()
    mysignins.locator("#pairLink").click()
    mysignins.close()
    expect(phone.locator("#status")).to_have_attribute("data-phase", "done", timeout=30_000)


def test_the_language_switch_beside_the_browser_choice(stack, lang, open_context):
    page = open_context().new_page()
    page.goto(stack.portal_url)
    other = "de" if lang == "en" else "en"
    expect(page.locator("html")).to_have_attribute("lang", lang)
    page.locator(f".languages a[hreflang={other}]").click()
    expect(page.locator("html")).to_have_attribute("lang", other)
    page.goto(stack.portal_url)  # remembered without the parameter
    expect(page.locator("html")).to_have_attribute("lang", other)


def test_back_after_sign_in_lands_on_the_diagnosis(stack, open_context):
    page = open_context().new_page()
    page.goto(stack.portal_url)
    page.get_by_role("link").filter(has_text=re.compile("Sign in|Anmelden")).first.click()
    adfs_sign_in(page, "ada.lovelace@uni.test", stack.seed.user("ada.lovelace@uni.test").password)
    expect(page).to_have_url(re.compile(r"/diagnosis$"))
    page.go_back()
    page.wait_for_load_state()
    expect(page).to_have_url(re.compile(r"/diagnosis$"))
    expect(page.locator(".account")).to_have_count(1)


def test_the_pages_work_under_their_own_content_security_policy(stack, lang, open_context):
    """The other tests let axe-core in past the CSP; here the CSP holds, and nothing on the pages breaks it."""
    page = open_context(bypass_csp=False).new_page()
    refused: list[str] = []
    page.on("console", lambda message: refused.append(message.text)
            if "Content Security Policy" in message.text else None)
    sign_in(stack, page, "grace.hopper@uni.test")
    page.locator("#unlock").click()  # the script shows progress and lets the form through once
    expect(page).to_have_url(re.compile(r"/guide$"))
    page.locator("#check").click()
    expect(page.locator("#check-feedback")).not_to_be_empty()  # the script ran and reached /status/check
    page.locator("#cancel").click()
    expect(page.locator("[data-state]")).to_have_attribute("data-state", "stuck")
    assert not refused, refused


def test_the_invite_pages_in_every_width_and_language(stack, lang, open_context, accessible, shots):
    """The page an invite link opens, and the one answer for a dead link (signed out, as from a mail)."""
    from app.adapters.store import Invites
    from app.domain.actors import Actor

    invite = stack.services.invites.invite("grace.hopper@uni.test",
                                           Actor.staff("hedy.lamarr@uni.test", role="helpdesk", reason="t"))
    with stack.services.store._tx() as s:  # noqa: SLF001 - the token, as the worker's mail pass reads it
        token = stack.services.invites.sealer.open(Invites(s).sealed_token(invite.id))
    inspect = Inspector(lang, accessible, shots)
    page = open_context().new_page()
    page.goto(f"{stack.portal_url}/invite/{token}")
    expect(page.locator("#invite-continue")).to_be_visible()
    inspect(page, "invite", signed_in=False)
    page.goto(f"{stack.portal_url}/invite/{'x' * 43}")
    inspect(page, "invite-dead-link", signed_in=False)
